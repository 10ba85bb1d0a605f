"""geodistill.data: dataset layouts, media decoding, view sampling, transforms, synthetic UniV."""

from geodistill.data.check import CheckReport, check_dataset
from geodistill.data.datasets import BuildingBatchSampler, TrainPairDataset, ViewDataset
from geodistill.data.index import (
    DatasetIndex,
    ViewItem,
    detect_layout,
    open_index,
    read_univ,
    read_university1652,
)
from geodistill.data.media import (
    count_video_frames,
    load_image,
    read_video_frames,
    sample_view_indices,
)
from geodistill.data.synth import generate_univ
from geodistill.data.transforms import (
    IMAGENET,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageConfig,
    drone_transform,
    renormalize,
    satellite_transform,
)

__all__ = [
    "IMAGENET",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BuildingBatchSampler",
    "CheckReport",
    "DatasetIndex",
    "ImageConfig",
    "TrainPairDataset",
    "ViewDataset",
    "ViewItem",
    "check_dataset",
    "count_video_frames",
    "detect_layout",
    "drone_transform",
    "generate_univ",
    "load_image",
    "open_index",
    "read_univ",
    "read_university1652",
    "read_video_frames",
    "renormalize",
    "sample_view_indices",
    "satellite_transform",
]

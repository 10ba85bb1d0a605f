"""geodistill.data: dataset layouts, media decoding, view sampling, transforms, synthetic UniV.

Exports load lazily (``geodistill.lazy``): the layouts and choices a config reads come without torch.
"""

from geodistill.lazy import lazy_exports

_HOME = {
    "BuildingBatchSampler": "datasets",
    "CheckReport": "check",
    "DatasetIndex": "index",
    "IMAGENET": "transforms",
    "IMAGENET_MEAN": "transforms",
    "IMAGENET_STD": "transforms",
    "ImageConfig": "transforms",
    "TrainPairDataset": "datasets",
    "ViewDataset": "datasets",
    "ViewItem": "index",
    "check_dataset": "check",
    "count_video_frames": "media",
    "detect_layout": "index",
    "drone_transform": "transforms",
    "generate_univ": "synth",
    "load_image": "media",
    "open_index": "index",
    "read_univ": "index",
    "read_university1652": "index",
    "read_video_frames": "media",
    "renormalize": "transforms",
    "sample_view_indices": "media",
    "satellite_transform": "transforms",
}
__all__ = sorted(_HOME)
__getattr__, __dir__ = lazy_exports(__name__, _HOME)

"""geodistill.train: losses, stage 1 (teacher) and stage 2 (student) steps, the loop, checkpoints."""

from geodistill.train.config import (
    DataConfig,
    DistillConfig,
    RunConfig,
    ScalingConfig,
    TrainConfig,
)
from geodistill.train.context import LocalContext, TrainContext

__all__ = [
    "DataConfig",
    "DistillConfig",
    "LocalContext",
    "RunConfig",
    "ScalingConfig",
    "TrainConfig",
    "TrainContext",
]

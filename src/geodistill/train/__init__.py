"""geodistill.train: losses, stage 1 (teacher) and stage 2 (student) steps, the loop, checkpoints."""

from geodistill.train.checkpoint import load_checkpoint, save_checkpoint
from geodistill.train.config import (
    DataConfig,
    DistillConfig,
    RunConfig,
    ScalingConfig,
    TrainConfig,
)
from geodistill.train.context import InProcessContext, TrainContext
from geodistill.train.loop import TrainingDiverged, TrainResult, fit

__all__ = [
    "DataConfig",
    "DistillConfig",
    "InProcessContext",
    "RunConfig",
    "ScalingConfig",
    "TrainConfig",
    "TrainContext",
    "TrainResult",
    "TrainingDiverged",
    "fit",
    "load_checkpoint",
    "save_checkpoint",
]

"""geodistill.train: losses, stage 1 (teacher) and stage 2 (student) steps, the loop, checkpoints.

Exports load lazily (``geodistill.lazy``): ``train.config`` is read without torch or timm.
"""

from geodistill.lazy import lazy_exports

_HOME = {
    "DataConfig": "config",
    "DistillConfig": "config",
    "InProcessContext": "context",
    "RunConfig": "config",
    "ScalingConfig": "config",
    "TrainConfig": "config",
    "TrainContext": "context",
    "TrainResult": "loop",
    "TrainingDiverged": "loop",
    "fit": "loop",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
}
__all__ = sorted(_HOME)
__getattr__, __dir__ = lazy_exports(__name__, _HOME)

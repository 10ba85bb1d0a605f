"""Typed run configuration: what the training loop reads (Hydra composes it, see platform/).

``RunConfig.from_dict`` is the one door from plain dicts (Hydra, YAML, a leaderboard row) into
these dataclasses: an unknown key or a value of the wrong type or outside its choices raises a
one-line ``ConfigError`` naming the dotted key, so a typo never trains the wrong thing silently.

Image size: ``data.img_size`` is what the loaders produce and ``model.img_size`` what the
backbone is built for; they must agree. ``from_dict`` copies one to the other when only one is
given and refuses two different values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from geodistill.data.index import ELEVATIONS, FPS_CHOICES
from geodistill.errors import ConfigError
from geodistill.models.config import ModelConfig
from geodistill.schema import SEED_MAX, build, check_fields, setting

STAGES = ("teacher", "student")
SCHEDULES = ("cosine", "step")
PRECISIONS = ("fp32", "bf16", "fp16")
STRATEGIES = ("ddp", "accelerate", "deepspeed")
RESUME_MODES = ("auto", "force")
KEEP_CHECKPOINTS = ("last_best", "all")
FEATURE_LOSSES = ("mse", "cosine")
FISD_DIRECTIONS = ("inverse", "forward")  # geodistill.train.losses.fisd_loss reads it here


BIG = 10**9  # steps and counts nobody means to exceed
WEIGHT_MAX = 1e6  # loss weights, clipping norms
# Experiment trackers a run or a search can write to (several at once); geodistill.platform.tracking
# wires them. "none" (or an empty list) writes only the run's own metrics.jsonl.
LOGGERS = ("none", "tensorboard", "mlflow", "wandb")
# Ray placement-group strategies for Ray Train workers (scaling.placement_strategy).
PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


@dataclass
class DataConfig:
    """Where the pairs come from and how they are sampled."""

    root: str | None = setting(None, kind="in_dir")  # None -> fit synthesises a UniV under <output_dir>/data
    synth_buildings: int = setting(24, ge=2, le=100_000)
    synth_seed: int = setting(0, ge=0, le=SEED_MAX)
    elevation: int = setting(45, choices=ELEVATIONS)
    fps: int = setting(2, choices=FPS_CHOICES)
    views: int = setting(1, ge=1, le=1024)  # drone frames per video seen by the model (multi-view)
    img_size: int = setting(64, ge=8, le=4096)
    batch_size: int = setting(16, ge=1, le=65536)  # distinct buildings per batch (global, split across ranks)
    loader_workers: int = setting(0, ge=0, le=256)


@dataclass
class TrainConfig:
    """Optimiser, schedule, precision, strategy and task-loss weights."""

    epochs: int = setting(3, ge=1, le=100_000)
    lr: float = setting(1e-3, gt=0.0, le=10.0)  # heads; the backbone gets lr * backbone_lr_mult
    backbone_lr_mult: float = setting(0.1, ge=0.0, le=100.0)
    weight_decay: float = setting(0.05, ge=0.0, le=10.0)
    warmup_steps: int = setting(10, ge=0, le=BIG)
    schedule: str = setting("cosine", choices=SCHEDULES)
    grad_clip: float = setting(1.0, ge=0.0, le=WEIGHT_MAX)  # 0 switches clipping off
    precision: str = setting("fp32", choices=PRECISIONS)
    strategy: str = setting("ddp", choices=STRATEGIES)
    zero_stage: int = setting(2, choices=(1, 2, 3))  # DeepSpeed ZeRO stage (strategy deepspeed only)
    offload: bool = setting(False)  # DeepSpeed CPU offload (strategy deepspeed only)
    grad_accum: int = setting(1, ge=1, le=4096)
    instance_weight: float = setting(1.0, ge=0.0, le=WEIGHT_MAX)
    infonce_weight: float = setting(1.0, ge=0.0, le=WEIGHT_MAX)
    # PFED / MobileGeo self-supervision (no teacher needed, so both stages use them; 0 = off).
    # stage_ce and fisd need model.stage_heads. See docs/pfed.md.
    stage_ce_weight: float = setting(0.0, ge=0.0, le=WEIGHT_MAX)  # CE on every auxiliary stage head
    fisd_weight: float = setting(0.0, ge=0.0, le=WEIGHT_MAX)  # fine-grained inverse self-distillation
    fisd_temperature: float = setting(4.0, gt=0.0, le=1000.0)
    # "inverse" = shallow stages teach the deepest; "forward" = the reverse
    fisd_direction: str = setting("inverse", choices=FISD_DIRECTIONS)
    triplet_weight: float = setting(0.0, ge=0.0, le=WEIGHT_MAX)  # cross-domain batch-hard triplet loss
    triplet_margin: float = setting(0.3, ge=0.0, le=100.0)
    uapa_weight: float = setting(0.0, ge=0.0, le=WEIGHT_MAX)  # uncertainty-aware prediction alignment
    uapa_temperature: float = setting(1.0, gt=0.0, le=1000.0)
    max_steps_per_epoch: int | None = setting(None, ge=1, le=BIG)
    eval_every: int = setting(1, ge=1, le=100_000)  # epochs between evaluations (the last always is)
    seed: int = setting(0, ge=0, le=SEED_MAX)
    # "auto": an existing run of this name resumes only if its saved config.json matches; "force": anyway.
    resume: str = setting("auto", choices=RESUME_MODES)
    # "last_best": the last epoch (with its train_state.pt, which resuming needs) and the best
    # evaluated one (weights only); "all": every epoch's checkpoint with its training state.
    keep_checkpoints: str = setting("last_best", choices=KEEP_CHECKPOINTS)


@dataclass
class DistillConfig:
    """Stage 2: the frozen teacher and the weight of each distillation level (0 switches it off)."""

    teacher_checkpoint: str | None = setting(None, kind="in_path")
    temperature: float = setting(4.0, gt=0.0, le=1000.0)
    w_task: float = setting(1.0, ge=0.0, le=WEIGHT_MAX)
    w_logit: float = setting(1.0, ge=0.0, le=WEIGHT_MAX)
    w_feature: float = setting(1.0, ge=0.0, le=WEIGHT_MAX)
    w_relation: float = setting(1.0, ge=0.0, le=WEIGHT_MAX)
    # cosine feature matching and a soft relation (tau 0.5) beat mse and tau 0.1 on the synthetic
    # UniV study in docs/evidence.md ("train"); relation KD at tau 0.1 cost the student points
    relation_tau: float = setting(0.5, gt=0.0, le=1000.0)
    feature_loss: str = setting("cosine", choices=FEATURE_LOSSES)
    w_self: float = setting(0.0, ge=0.0, le=WEIGHT_MAX)
    cache_teacher: bool = setting(True)
    # Frames per drone video the teacher sees (None: data.views). More than data.views lets the
    # teacher's multi-view descriptor teach a student that gets only data.views of those frames.
    teacher_views: int | None = setting(None, ge=1, le=1024)


@dataclass
class ScalingConfig:
    """How many Ray Train workers run ``fit``: one meaning wherever a run starts.

    ``num_workers=0``: ``fit`` runs in the calling process (``geodistill train``, or inside a
    search trial), no Ray Train. ``num_workers=N >= 1``: a ``TorchTrainer`` with N workers (a
    search trial then hosts one and stops it by its own rung rule).
    """

    num_workers: int = setting(0, ge=0, le=4096)
    use_gpu: bool = setting(False)
    cpus_per_worker: int = setting(1, ge=0, le=1024)
    # GPUs each worker reserves (a fraction lets small students share one); None: 1 with use_gpu.
    gpus_per_worker: float | None = setting(None, gt=0.0, le=64.0)
    # Ray placement group strategy of the workers: PACK (fewest nodes), SPREAD (one per node when
    # it can), STRICT_PACK / STRICT_SPREAD (must). SPREAD is what makes a 2-node rehearsal use both.
    placement_strategy: str = setting("PACK", choices=PLACEMENT_STRATEGIES)

    @property
    def in_process(self) -> bool:
        """True when ``fit`` runs in the calling process (``num_workers == 0``)."""
        return self.num_workers == 0


@dataclass
class RunConfig:
    """One training run: stage, naming, and the component configs."""

    stage: str = setting("teacher", choices=STAGES)
    run_name: str | None = setting(None, kind="name")  # None -> <stage>_<backbone>
    experiment: str = setting("default", kind="name")
    output_dir: str = setting("runs", kind="out_dir")
    ray_address: str | None = setting(None, kind="text")
    # any of LOGGERS; "a,b" or [a, b] in overrides
    logger: list[str] = setting(default_factory=list)  # checked name by name in validate()
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(img_size=64))
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunConfig:
        """Build and validate a RunConfig; missing keys take defaults, unknown keys are refused."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"run config must be a mapping, got {type(d).__name__}")
        d = dict(d)
        data, model = dict(d.get("data") or {}), dict(d.get("model") or {})
        if "img_size" in data and "img_size" in model and data["img_size"] != model["img_size"]:
            raise ConfigError(
                f"data.img_size ({data['img_size']}) and model.img_size ({model['img_size']}) differ"
            )
        size = data.get("img_size", model.get("img_size", DataConfig.img_size))
        data["img_size"] = model["img_size"] = size
        d["data"], d["model"] = data, model
        cfg = build(cls, d)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON/YAML-safe); ``from_dict(to_dict())`` round-trips."""
        return asdict(self)

    def validate(self) -> None:
        """Every declared range and choice (``geodistill.schema``), then the cross-field rules.

        Only the text of paths is checked here (a config read back from a leaderboard row may
        name a folder that is gone); ``check_paths`` checks them on disk.
        """
        check_fields(self)  # data, train, distill, scaling, and model (ModelConfig declares its own)
        for name in self.logger:
            if name not in LOGGERS:
                raise ConfigError(f"logger must be one of {', '.join(LOGGERS)}; got {name!r}")
        for key in ("stage_ce_weight", "fisd_weight"):
            if getattr(self.train, key) > 0 and not self.model.stage_heads:
                raise ConfigError(f"train.{key} > 0 needs model.stage_heads=true (the per-stage heads)")
        if self.data.img_size != self.model.img_size:
            raise ConfigError(
                f"data.img_size ({self.data.img_size}) and model.img_size ({self.model.img_size}) differ"
            )
        self.model.validate("model.")  # img_size against the backbone's stride, pooling vs family
        t = self.train
        if t.strategy != "deepspeed" and t.offload:
            raise ConfigError(
                f"train.offload=true needs train.strategy=deepspeed (got {t.strategy}); "
                "CPU offload is a DeepSpeed ZeRO feature"
            )
        if self.scaling.num_workers > 1 and self.data.batch_size < self.scaling.num_workers:
            raise ConfigError(
                f"data.batch_size={self.data.batch_size} is split across scaling.num_workers="
                f"{self.scaling.num_workers}: use a batch of at least one building per worker"
            )

    def check_paths(self) -> None:
        """The paths on disk: inputs exist, outputs can be created (one ConfigError naming the key)."""
        check_fields(self, filesystem=True)

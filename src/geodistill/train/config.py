"""Typed run configuration: what the training loop reads (Hydra composes it, see platform/).

``RunConfig.from_dict`` is the one door from plain dicts (Hydra, YAML, a leaderboard row) into
these dataclasses: an unknown key or a value of the wrong type or outside its choices raises a
one-line ``ConfigError`` naming the dotted key, so a typo never trains the wrong thing silently.

Image size: ``data.img_size`` is what the loaders produce and ``model.img_size`` what the
backbone is built for; they must agree. ``from_dict`` copies one to the other when only one is
given and refuses two different values.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from geodistill.errors import ConfigError
from geodistill.models import ModelConfig

STAGES = ("teacher", "student")
SCHEDULES = ("cosine", "step")
PRECISIONS = ("fp32", "bf16", "fp16")
STRATEGIES = ("ddp", "accelerate", "deepspeed")
FEATURE_LOSSES = ("mse", "cosine")


@dataclass
class DataConfig:
    """Where the pairs come from and how they are sampled."""

    root: str | None = None  # None -> fit synthesises a UniV set under <output_dir>/data
    synth_buildings: int = 24
    synth_seed: int = 0
    elevation: int = 45
    fps: int = 2
    views: int = 1  # drone frames per video seen by the model (multi-view refinement)
    img_size: int = 64
    batch_size: int = 16  # distinct buildings per batch (global, split across ranks)
    loader_workers: int = 0


@dataclass
class TrainConfig:
    """Optimiser, schedule, precision, strategy and task-loss weights."""

    epochs: int = 3
    lr: float = 1e-3  # heads; the backbone gets lr * backbone_lr_mult
    backbone_lr_mult: float = 0.1
    weight_decay: float = 0.05
    warmup_steps: int = 10
    schedule: str = "cosine"  # or "step"
    grad_clip: float = 1.0  # 0 switches clipping off
    precision: str = "fp32"  # "bf16" | "fp16"
    strategy: str = "ddp"  # "accelerate" | "deepspeed"
    zero_stage: int = 2
    offload: bool = False
    grad_accum: int = 1
    instance_weight: float = 1.0
    infonce_weight: float = 1.0
    max_steps_per_epoch: int | None = None
    eval_every: int = 1  # epochs between evaluate_fn calls (the last epoch is always evaluated)
    seed: int = 0


@dataclass
class DistillConfig:
    """Stage 2: the frozen teacher and the weight of each distillation level (0 switches it off)."""

    teacher_checkpoint: str | None = None
    temperature: float = 4.0
    w_task: float = 1.0
    w_logit: float = 1.0
    w_feature: float = 1.0
    w_relation: float = 1.0
    # cosine feature matching and a soft relation (tau 0.5) beat mse and tau 0.1 on the synthetic
    # UniV study in benchmarks/RESULTS.md ("train"); relation KD at tau 0.1 cost the student points
    relation_tau: float = 0.5
    feature_loss: str = "cosine"  # or "mse"
    w_self: float = 0.0
    cache_teacher: bool = True
    # Frames per drone video the teacher sees (None: data.views). More than data.views lets the
    # teacher's multi-view descriptor teach a student that gets only data.views of those frames.
    teacher_views: int | None = None


@dataclass
class ScalingConfig:
    """How many Ray Train workers run ``fit``: one meaning wherever a run starts.

    ``num_workers=0``: ``fit`` runs in the calling process (``geodistill train``, or inside a
    search trial), no Ray Train. ``num_workers=N >= 1``: a ``TorchTrainer`` with N workers (a
    search trial then hosts one and stops it by its own rung rule).
    """

    num_workers: int = 0
    use_gpu: bool = False
    cpus_per_worker: int = 1
    # Ray placement group strategy of the workers: PACK (fewest nodes), SPREAD (one per node when
    # it can), STRICT_PACK / STRICT_SPREAD (must). SPREAD is what makes a 2-node rehearsal use both.
    placement_strategy: str = "PACK"

    @property
    def in_process(self) -> bool:
        """True when ``fit`` runs in the calling process (``num_workers == 0``)."""
        return self.num_workers == 0


@dataclass
class RunConfig:
    """One training run: stage, naming, and the component configs."""

    stage: str = "teacher"  # or "student"
    run_name: str | None = None
    experiment: str = "default"
    output_dir: str = "runs"
    ray_address: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(img_size=DataConfig.img_size))
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
        cfg = _build(cls, d, prefix="")
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON/YAML-safe); ``from_dict(to_dict())`` round-trips."""
        return asdict(self)

    def validate(self) -> None:
        """Check choices and ranges; raise ConfigError naming the first bad key."""
        _choice("stage", self.stage, STAGES)
        _choice("train.schedule", self.train.schedule, SCHEDULES)
        _choice("train.precision", self.train.precision, PRECISIONS)
        _choice("train.strategy", self.train.strategy, STRATEGIES)
        _choice("train.zero_stage", self.train.zero_stage, (1, 2, 3))
        _choice("distill.feature_loss", self.distill.feature_loss, FEATURE_LOSSES)
        _choice("data.elevation", self.data.elevation, (30, 45))
        _choice("data.fps", self.data.fps, (2, 5, 10))
        positive = {
            "data.views": self.data.views,
            "data.img_size": self.data.img_size,
            "data.batch_size": self.data.batch_size,
            "data.synth_buildings": self.data.synth_buildings,
            "train.epochs": self.train.epochs,
            "train.lr": self.train.lr,
            "train.grad_accum": self.train.grad_accum,
            "train.eval_every": self.train.eval_every,
            "distill.temperature": self.distill.temperature,
            "distill.relation_tau": self.distill.relation_tau,
        }
        if self.train.max_steps_per_epoch is not None:
            positive["train.max_steps_per_epoch"] = self.train.max_steps_per_epoch
        if self.distill.teacher_views is not None:
            positive["distill.teacher_views"] = self.distill.teacher_views
        for key, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{key} must be > 0, got {value}")
        non_negative = {
            "data.loader_workers": self.data.loader_workers,
            "train.backbone_lr_mult": self.train.backbone_lr_mult,
            "train.weight_decay": self.train.weight_decay,
            "train.warmup_steps": self.train.warmup_steps,
            "train.grad_clip": self.train.grad_clip,
            "train.instance_weight": self.train.instance_weight,
            "train.infonce_weight": self.train.infonce_weight,
            "distill.w_task": self.distill.w_task,
            "distill.w_logit": self.distill.w_logit,
            "distill.w_feature": self.distill.w_feature,
            "distill.w_relation": self.distill.w_relation,
            "distill.w_self": self.distill.w_self,
            "scaling.num_workers": self.scaling.num_workers,
            "scaling.cpus_per_worker": self.scaling.cpus_per_worker,
        }
        for key, value in non_negative.items():
            if value < 0:
                raise ConfigError(f"{key} must be >= 0, got {value}")
        if self.data.img_size != self.model.img_size:
            raise ConfigError(
                f"data.img_size ({self.data.img_size}) and model.img_size ({self.model.img_size}) differ"
            )


def _choice(key: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(map(str, choices))}; got {value!r}")


def _build(cls: type, d: Mapping[str, Any], *, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from ``d``, converting nested dataclasses and checking types."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"unknown config key {prefix}{unknown[0]}")
    kwargs = {}
    for name, value in d.items():
        key = f"{prefix}{name}"
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value or {}, prefix=f"{key}.")
        else:
            kwargs[name] = _coerce(key, value, hint)
    return cls(**kwargs)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Accept ``value`` for a field typed ``hint`` (int for float is fine; bool for int is not)."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{key} must not be null")
    for option in options:
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if option is str and isinstance(value, str):
            return value
    names = " or ".join("null" if o is type(None) else o.__name__ for o in options)
    raise ConfigError(f"{key} must be {names}, got {value!r}")

"""``ModelConfig``: what code reads to build a GeoModel, importable without torch or timm.

A config is composed (and checked) far more often than a model is built: the search driver
composes every trial's, a replayed trial composes its own and builds nothing. Its backbone
checks (the name exists, ``img_size`` is at least its stride, ``pooling: token`` has a class
token) ask timm, so they import it only when they run; ``without_backbone_checks`` turns them
off for a process that builds no model and whose configs were checked elsewhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from geodistill.errors import ConfigError
from geodistill.schema import check_fields, setting

POOLINGS = ("token", "avg", "gem", "lpn")  # models.heads.PartPool
REFINERS = ("mean", "attention", "select", "mi")  # models.refiners.build_refiner

_BACKBONE_CHECKS: ContextVar[bool] = ContextVar("geodistill_backbone_checks", default=True)


@contextlib.contextmanager
def without_backbone_checks() -> Iterator[None]:
    """Configs composed inside skip the checks that ask timm about the backbone (and import it).

    For a replayed search trial only: it builds no model, and the driver composed and checked
    the same config when it placed the trial.
    """
    token = _BACKBONE_CHECKS.set(False)
    try:
        yield
    finally:
        _BACKBONE_CHECKS.reset(token)


def _known_backbone(name: str) -> None:
    if _BACKBONE_CHECKS.get():
        from geodistill.models.backbones import get_spec

        get_spec(name)


@dataclass
class ModelConfig:
    """What code reads to build a GeoModel (Hydra composes it; see docs/INTERFACES.md).

    Each field declares what it accepts (``geodistill.schema.setting``); ``validate`` checks them.
    """

    backbone: str = setting("vit_tiny", validator=_known_backbone)
    img_size: int = setting(128, ge=8, le=4096)  # and >= the backbone's total stride (RunConfig)
    embed_dim: int = setting(512, ge=1, le=65536)
    pooling: str = setting("avg", choices=POOLINGS)  # "token" | "avg" | "gem" | "lpn"
    share: bool = setting(True)  # one encoder for both views
    refiner: str = setting("mean", choices=REFINERS)  # "mean" | "attention" | "select" | "mi"
    refiner_k: int = setting(4, ge=1, le=1024)  # frames kept by the "select" and "mi" refiners
    droprate: float = setting(0.5, ge=0.0, lt=1.0)
    # backbone weights: a local file, a pyarrow.fs URI or hf-hub:ORG/NAME (safetensors / weights-only .pth)
    weights: str | None = setting(None, kind="text")
    pretrained: bool = setting(False)  # the timm tag's weights via timm (Hugging Face Hub cache)
    # None: all trainable; N: only the last N blocks (+ final norm)
    trainable_blocks: int | None = setting(None, ge=1, le=1000)
    stage_heads: bool = setting(False)  # auxiliary bottleneck + classifier on each intermediate stage

    def validate(self, prefix: str = "model.") -> None:
        """Declared ranges and choices, then the input size against the backbone's stride."""
        check_fields(self, prefix)
        if not _BACKBONE_CHECKS.get():
            return
        from geodistill.models.backbones import has_class_token
        from geodistill.models.stride import total_stride

        stride = total_stride(self.backbone)
        if self.img_size < stride:
            raise ConfigError(
                f"{prefix}img_size={self.img_size} is smaller than one cell of {self.backbone} "
                f"(total stride {stride}); use >= {stride}"
            )
        if self.pooling == "token" and not has_class_token(self.backbone):
            raise ConfigError(
                f"{prefix}pooling 'token' needs a ViT backbone ({self.backbone} has no class token); "
                "use avg, gem or lpn"
            )

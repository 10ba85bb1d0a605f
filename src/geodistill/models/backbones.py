"""Any timm model as a backbone, read through timm's generic feature API.

``model.backbone`` is a short alias (``vit_tiny``, ``convnext_atto``, ``resnet18`` ...) or any
name ``timm.list_models()`` knows, optionally with a pretrained tag
(``convnext_tiny.fb_in22k_ft_in1k``, ``vit_small.augreg_in21k``). Nothing here is per-family
code: a ``Backbone`` calls ``forward_intermediates`` once and reads ``feature_info`` for the
widths and strides of its output and of the intermediates that feed feature KD. Weights come
from timm's own machinery (the Hub cache, or a local file loaded without running pickled code).
How outputs and intermediates are read: docs/design.md, "Backbones over timm".
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field
from typing import Any

import timm
import torch
from torch import nn

from geodistill.data.transforms import IMAGENET, ImageConfig
from geodistill.errors import (
    CheckpointError,
    ConfigError,
    UnknownBackboneError,
    UnsupportedBackboneError,
    WeightsUnavailableError,
)
from geodistill.models.weights_io import load_backbone_weights, resolve_weights  # noqa: F401 (public here too)

# How many intermediate depths each backbone exposes (ViT blocks / ConvNet stages).
NUM_INTERMEDIATES = 4


@dataclass(frozen=True)
class BackboneSpec:
    """A resolved backbone name: the timm name (``arch[.tag]``) and extra constructor kwargs."""

    name: str  # as the user wrote it: an alias or a timm name, with an optional tag
    timm_name: str  # "arch" or "arch.tag", what timm.create_model receives
    kwargs: dict[str, Any] = field(default_factory=dict)
    # pretrained_cfg fields that override timm's (e.g. the normalisation a release was trained with)
    cfg_overlay: dict[str, Any] = field(default_factory=dict)

    @property
    def arch(self) -> str:
        return self.timm_name.partition(".")[0]

    @property
    def tag(self) -> str | None:
        return self.timm_name.partition(".")[2] or None


def _alias(name: str, timm_name: str, **kwargs: Any) -> BackboneSpec:
    overlay = kwargs.pop("cfg_overlay", {})
    return BackboneSpec(name=name, timm_name=timm_name, kwargs=kwargs, cfg_overlay=overlay)


# Short names a search varies "backbone size" by; each is just a timm name (plus kwargs).
ALIASES: dict[str, BackboneSpec] = {
    s.name: s
    for s in [
        _alias("vit_tiny", "vit_tiny_patch16_224"),
        _alias("vit_small", "vit_small_patch16_224"),
        _alias("vit_base", "vit_base_patch16_224"),
        # The Video2BEV stage-1 backbone: 768 wide, depth 8, 8 heads, MLP 2304, no qkv bias,
        # trained on ImageNet-normalised inputs.
        _alias(
            "vit_video2bev",
            "vit_base_patch16_224",
            depth=8,
            num_heads=8,
            mlp_ratio=3.0,
            qkv_bias=False,
            cfg_overlay={"mean": IMAGENET.mean, "std": IMAGENET.std},
        ),
        _alias("convnext_atto", "convnext_atto"),
        _alias("convnext_femto", "convnext_femto"),
        _alias("convnext_pico", "convnext_pico"),
        _alias("convnext_nano", "convnext_nano"),
        _alias("convnext_tiny", "convnext_tiny"),
        _alias("convnext_small", "convnext_small"),
        _alias("resnet18", "resnet18"),
        _alias("resnet50", "resnet50"),
        _alias("mobilenetv3", "mobilenetv3_large_100"),
        _alias("mobilenetv3_small", "mobilenetv3_small_100"),
        _alias("efficientnet_b0", "efficientnet_b0"),
        # The PFED-style teachers (config options model=dinov2_small / dinov2_base): one name for
        # the config option and `geodistill profile --backbone` alike.
        _alias("dinov2_small", "vit_small_patch14_dinov2"),
        _alias("dinov2_base", "vit_base_patch14_dinov2"),
    ]
}
BACKBONES = ALIASES  # the registry of short names (profile --all walks it)


@functools.cache
def _timm_names() -> frozenset[str]:
    return frozenset(timm.list_models())


def get_spec(name: str) -> BackboneSpec:
    """Resolve an alias or a timm name (``arch`` or ``arch.tag``); unknown -> one-line error."""
    name = str(name)
    base, _, tag = name.partition(".")
    if base in ALIASES:
        alias = ALIASES[base]
        spec = BackboneSpec(
            name=name,
            timm_name=f"{alias.timm_name}.{tag}" if tag else alias.timm_name,
            kwargs=dict(alias.kwargs),
            cfg_overlay=dict(alias.cfg_overlay),
        )
    elif timm.is_model(base):
        spec = BackboneSpec(name=name, timm_name=name)
    else:
        close = difflib.get_close_matches(base, sorted(_timm_names() | set(ALIASES)), n=4, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownBackboneError(
            f"unknown backbone {name!r}: not in timm.list_models() nor an alias; "
            f"known: {', '.join(ALIASES)} or any timm name{hint}"
        )
    if spec.tag is not None and not timm.list_pretrained(spec.timm_name):
        tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{spec.arch}.*")]
        raise UnknownBackboneError(
            f"backbone {name!r}: timm knows no pretrained tag {spec.tag!r} for {spec.arch}; "
            f"tags: {', '.join(tags) or 'none'}"
        )
    return spec


def pretrained_cfg(spec: BackboneSpec) -> dict[str, Any]:
    """timm's pretrained config of ``spec`` (its default tag when none is given) with the overlay."""
    cfg = timm.get_pretrained_cfg(spec.timm_name, allow_unregistered=True)
    out = cfg.to_dict() if cfg is not None else {}
    out.update(spec.cfg_overlay)
    return out


def image_config(name: str | BackboneSpec) -> ImageConfig:
    """Mean, std and resize interpolation of the backbone's pretrained config (timm's data config)."""
    from timm.data import resolve_data_config

    spec = name if isinstance(name, BackboneSpec) else get_spec(name)
    data = resolve_data_config(pretrained_cfg=pretrained_cfg(spec))
    return ImageConfig.from_timm(data)


# ---------------------------------------------------------------------------- building


def _hub_hint(spec: BackboneSpec, cfg: dict[str, Any]) -> str:
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub import constants

        return (
            f"fetch them where there is network with `hf download {hub_id}` into the "
            f"Hugging Face cache ({constants.HF_HUB_CACHE}; set HF_HOME to move it), set "
            "HF_HUB_OFFLINE=1 to read the cache without network, or pass model.weights=PATH"
        )
    if cfg.get("url"):
        return f"download {cfg['url']} where there is network and pass it as model.weights=PATH"
    return "pass a local file as model.weights=PATH"


def _create(spec: BackboneSpec, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    overlay = {"pretrained_cfg_overlay": dict(spec.cfg_overlay)} if spec.cfg_overlay else {}
    if not pretrained:
        return timm.create_model(spec.timm_name, pretrained=False, num_classes=0, **overlay, **kwargs)
    cfg = pretrained_cfg(spec)
    what = cfg.get("hf_hub_id") or f"{spec.timm_name} ({cfg.get('url') or 'no source'})"
    try:
        return timm.create_model(spec.timm_name, pretrained=True, num_classes=0, **overlay, **kwargs)
    except (OSError, RuntimeError) as err:  # LocalEntryNotFoundError is an OSError
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        if "No pretrained weights exist" in first or not (cfg.get("hf_hub_id") or cfg.get("url")):
            tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{spec.arch}.*")]
            raise WeightsUnavailableError(
                f"timm has no pretrained weights for {spec.timm_name}; pick a tagged name "
                f"({', '.join(f'{spec.arch}.{t}' for t in tags[:4]) or 'none exist'}) or drop model.pretrained"
            ) from None
        if isinstance(err, RuntimeError) and "size mismatch" in first:
            raise CheckpointError(f"pretrained weights {what} do not fit {spec.name}: {first}") from None
        raise WeightsUnavailableError(
            f"pretrained weights {what} are not available here ({type(err).__name__}); {_hub_hint(spec, cfg)}"
        ) from None


def build_timm_model(spec: BackboneSpec, img_size: int, *, pretrained: bool = False) -> nn.Module:
    """The bare timm model of ``spec`` (no classifier head).

    Models whose pretrained config says ``fixed_input_size`` (ViT-like: position embeddings)
    are built for ``img_size``, and, where the family supports it, for any input size at run
    time (embeddings resampled, the input padded to a patch multiple).
    """
    kwargs: dict[str, Any] = dict(spec.kwargs)
    if torch.get_default_device().type == "meta":
        pretrained = False  # a meta-device twin (cost counting) has no weights to load
    if pretrained_cfg(spec).get("fixed_input_size"):
        kwargs["img_size"] = img_size
        try:
            return _create(spec, pretrained, {**kwargs, "dynamic_img_size": True, "dynamic_img_pad": True})
        except TypeError as err:
            if "dynamic_img" not in str(err):
                raise
    return _create(spec, pretrained, kwargs)


def tap_indices(info: list[dict[str, Any]], n: int = NUM_INTERMEDIATES) -> list[int]:
    """Which ``feature_info`` entries feed feature KD, shallow -> deep, ending at the deepest.

    The deepest entry of each stride when there are at least ``n`` strides (ConvNet stages:
    ResNet/EfficientNet -> the last 4 of 5); else ``n`` entries spread over the depth
    (a depth-12 ViT -> blocks 2, 5, 8, 11).
    """
    m = len(info)
    stage_ends = [i for i in range(m) if i == m - 1 or info[i + 1]["reduction"] != info[i]["reduction"]]
    if len(stage_ends) >= n:
        return stage_ends[-n:]
    return sorted({max(0, round(m * (i + 1) / n) - 1) for i in range(n)})


def blocks_after(model: nn.Module) -> tuple[nn.Module, list[nn.Module]]:
    """The model's block sequence (``blocks`` or ``stages``) and the modules registered after it.

    timm registers a model's children in forward order, so what follows the blocks is the
    final norm and the (empty) head.
    """
    for attr in ("blocks", "stages"):
        seq = getattr(model, attr, None)
        if isinstance(seq, (nn.Sequential, nn.ModuleList)) and len(seq) > 0:
            names = list(model._modules)
            return seq, [model._modules[k] for k in names[names.index(attr) + 1 :] if model._modules[k]]
    raise ConfigError(
        f"model.trainable_blocks needs a timm model with a 'blocks' or 'stages' sequence; "
        f"{type(model).__name__} has neither"
    )


def freeze_all_but_last(model: nn.Module, n: int) -> None:
    """Only the last ``n`` blocks (and the final norm after them) stay trainable.

    The frozen front (patch embedding, position embedding, class token, early blocks) gets
    ``requires_grad=False``: the optimizer never sees it (no state), backward never reaches it
    (no gradients), and autograd keeps no activations for it, since nothing before the first
    trainable block needs a gradient.
    """
    blocks, after = blocks_after(model)
    if not 0 <= n <= len(blocks):
        raise ConfigError(f"model.trainable_blocks must be in 0..{len(blocks)}, got {n}")
    model.requires_grad_(False)
    for block in list(blocks)[len(blocks) - n :]:
        block.requires_grad_(True)
    for module in after:
        module.requires_grad_(True)


class Backbone(nn.Module):
    """A timm model that returns its final map and pooled intermediates in one pass.

    ``forward(x)`` follows the contract: ``(pooled [B,C], intermediates [B,C_i] shallow->deep)``,
    pooled being the class token when the model has one, else the spatial mean of the map.
    ``forward_maps(x)`` is what GeoModel's pooling heads read.
    """

    def __init__(
        self,
        spec: BackboneSpec,
        img_size: int,
        *,
        pretrained: bool = False,
        trainable_blocks: int | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.img_size = img_size
        self.model = build_timm_model(spec, img_size, pretrained=pretrained)
        if not callable(getattr(self.model, "forward_intermediates", None)) or not getattr(
            self.model, "feature_info", None
        ):
            raise UnsupportedBackboneError(
                f"backbone {spec.name!r} ({type(self.model).__name__}) has no timm forward_intermediates/"
                "feature_info API, which feature KD and pooling read; pick another timm model"
            )
        info = list(self.model.feature_info)
        self._take = tap_indices(info)
        self.feature_dims = [int(info[i]["num_chs"]) for i in self._take]
        self.num_features = int(self.model.num_features)
        self.num_prefix_tokens = int(getattr(self.model, "num_prefix_tokens", 0) or 0)
        self.has_token = self.num_prefix_tokens > 0 and bool(
            getattr(self.model, "cls_token", None) is not None
        )
        self._nhwc = getattr(self.model, "output_fmt", "NCHW") == "NHWC"
        self.trainable_blocks = trainable_blocks
        if trainable_blocks is not None:
            freeze_all_but_last(self.model, trainable_blocks)

    @property
    def is_vit(self) -> bool:
        """Kept for older callers: the model has a class token (ViT-like)."""
        return self.has_token

    @property
    def image_config(self) -> ImageConfig:
        """The normalisation and interpolation this backbone's inputs need."""
        from timm.data import resolve_data_config

        return ImageConfig.from_timm(resolve_data_config(model=self.model))

    def forward_maps(
        self, x: torch.Tensor, *, intermediates: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor]]:
        """x [B,3,H,W] -> (map [B,C,h,w], cls [B,C] or None, intermediates [B,C_i] pooled).

        ``intermediates=False`` (retrieval: nothing reads them) runs timm's plain
        ``forward_features`` instead, the same blocks without copying the tapped maps to
        NCHW and pooling them, and returns no intermediates.
        """
        if not intermediates:
            final = self.model.forward_features(x)
            if final.dim() == 4:
                return (final.permute(0, 3, 1, 2) if self._nhwc else final), None, []
            # Tokens: the patch grid is the input over the deepest stride (padded to whole cells).
            stride = int(self.model.feature_info[-1]["reduction"])
            h, w = -(-x.shape[-2] // stride), -(-x.shape[-1] // stride)
            if h * w == final.shape[1] - self.num_prefix_tokens:
                return *self._token_grid(final, h, w), []
        final, inter = self.model.forward_intermediates(x, indices=self._take, output_fmt="NCHW")
        pooled_inter = [t.mean(dim=(2, 3)) for t in inter]  # each [B,C_i,h,w] -> [B,C_i]
        if final.dim() == 4:
            grid = final.permute(0, 3, 1, 2) if self._nhwc else final  # [B,C,h,w]
            return grid, None, pooled_inter
        # Tokens laid out as the deepest intermediate map.
        return *self._token_grid(final, *inter[-1].shape[-2:]), pooled_inter

    def _token_grid(self, final: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tokens [B,P+N,C] (final norm applied): prefix (class, registers), then the patch grid
        -> (grid [B,C,h,w], class token [B,C] or None)."""
        cls = final[:, 0] if self.has_token else None
        patches = final[:, self.num_prefix_tokens :]  # [B,N,C]
        return patches.transpose(1, 2).reshape(final.shape[0], -1, h, w), cls

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        grid, cls, inter = self.forward_maps(x)
        pooled = cls if cls is not None else grid.mean(dim=(2, 3))
        return pooled, inter


def create_backbone(
    name: str,
    *,
    img_size: int,
    weights: str | None = None,
    pretrained: bool = False,
    trainable_blocks: int | None = None,
) -> Backbone:
    """Build the named backbone: random init, timm's pretrained weights, or a local file / URI."""
    if weights and pretrained:
        raise ConfigError("model.weights and model.pretrained=true both choose weights; set one")
    backbone = Backbone(get_spec(name), img_size, pretrained=pretrained, trainable_blocks=trainable_blocks)
    if weights:
        load_backbone_weights(backbone, weights)
    return backbone


def has_class_token(name: str) -> bool:
    """Whether ``name`` builds a backbone with a class token (built on the meta device: no weights)."""
    with torch.device("meta"):
        return Backbone(get_spec(name), 224).has_token

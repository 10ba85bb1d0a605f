"""Named backbone sizes over timm, so a search can vary "backbone size" by name.

Every backbone is a timm model built with ``pretrained=False`` (nothing is downloaded);
optional local weights come from a path. A ``Backbone`` runs the timm model once and hands
back the final feature map (plus the class token for ViTs) and a few intermediate features
pooled to vectors, shallow -> deep, for feature distillation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import timm
import torch
from torch import nn

from geodistill.errors import UnknownBackboneError

# How many intermediate depths each backbone exposes (ViT blocks / ConvNet stages).
NUM_INTERMEDIATES = 4


@dataclass(frozen=True)
class BackboneSpec:
    """One named size: which timm architecture, which family, which extra kwargs."""

    name: str
    timm_name: str
    family: str  # "vit" | "convnext" | "resnet" | "mobilenet" | "efficientnet"
    kwargs: dict[str, Any] = field(default_factory=dict)


def _spec(name: str, timm_name: str, family: str, **kwargs: Any) -> BackboneSpec:
    return BackboneSpec(name=name, timm_name=timm_name, family=family, kwargs=kwargs)


BACKBONES: dict[str, BackboneSpec] = {
    s.name: s
    for s in [
        _spec("vit_tiny", "vit_tiny_patch16_224", "vit"),
        _spec("vit_small", "vit_small_patch16_224", "vit"),
        _spec("vit_base", "vit_base_patch16_224", "vit"),
        # The Video2BEV stage-1 backbone: 768 wide, depth 8, 8 heads, MLP 2304, no qkv bias.
        _spec(
            "vit_video2bev",
            "vit_base_patch16_224",
            "vit",
            depth=8,
            num_heads=8,
            mlp_ratio=3.0,
            qkv_bias=False,
        ),
        _spec("convnext_atto", "convnext_atto", "convnext"),
        _spec("convnext_femto", "convnext_femto", "convnext"),
        _spec("convnext_pico", "convnext_pico", "convnext"),
        _spec("convnext_nano", "convnext_nano", "convnext"),
        _spec("convnext_tiny", "convnext_tiny", "convnext"),
        _spec("convnext_small", "convnext_small", "convnext"),
        _spec("resnet18", "resnet18", "resnet"),
        _spec("resnet50", "resnet50", "resnet"),
        _spec("mobilenetv3", "mobilenetv3_large_100", "mobilenet"),
        _spec("mobilenetv3_small", "mobilenetv3_small_100", "mobilenet"),
        _spec("efficientnet_b0", "efficientnet_b0", "efficientnet"),
    ]
}


def get_spec(name: str) -> BackboneSpec:
    """The registry entry for ``name``; an unknown name lists the known ones in one line."""
    if name not in BACKBONES:
        raise UnknownBackboneError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def build_timm_model(spec: BackboneSpec, img_size: int) -> nn.Module:
    """The bare timm model of ``spec`` (no classifier head), randomly initialised."""
    kwargs: dict[str, Any] = dict(spec.kwargs)
    if spec.family == "vit":
        # Any input size: position embeddings built for img_size, resampled (and the input
        # padded to a patch multiple) when another size comes in.
        kwargs.update(img_size=img_size, dynamic_img_size=True, dynamic_img_pad=True)
    return timm.create_model(spec.timm_name, pretrained=False, num_classes=0, **kwargs)


class Backbone(nn.Module):
    """A timm model that returns its final map and pooled intermediates in one pass.

    ``forward(x)`` follows the contract: ``(pooled [B,C], intermediates [B,C_i] shallow->deep)``,
    pooled being the class token for ViTs and the spatial mean for ConvNets.
    ``forward_maps(x)`` is what GeoModel's pooling heads read.
    """

    def __init__(self, spec: BackboneSpec, img_size: int) -> None:
        super().__init__()
        self.spec = spec
        self.img_size = img_size
        self.model = build_timm_model(spec, img_size)
        self.is_vit = spec.family == "vit"
        if self.is_vit:
            depth = len(self.model.blocks)
            # Spread the taps over the depth: e.g. depth 12 -> blocks 2, 5, 8, 11.
            self._take: list[int] | int = sorted(
                {max(0, round(depth * (i + 1) / NUM_INTERMEDIATES) - 1) for i in range(NUM_INTERMEDIATES)}
            )
            self.feature_dims = [self.model.embed_dim] * len(self._take)
        else:
            info = self.model.feature_info
            n = min(NUM_INTERMEDIATES, len(info))
            self._take = n  # the last n stages
            self.feature_dims = [int(d["num_chs"]) for d in info[-n:]]
        self.num_features = self._final_width()

    def _final_width(self) -> int:
        if self.is_vit:
            return int(self.model.embed_dim)
        # forward_features' map is the last stage, except that EfficientNet puts its 1x1
        # conv_head inside it (MobileNetV3 runs conv_head after pooling, outside the map).
        conv_head = getattr(self.model, "conv_head", None)
        if self.spec.family == "efficientnet" and conv_head is not None:
            return int(conv_head.out_channels)
        return int(self.model.feature_info[-1]["num_chs"])

    def forward_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor]]:
        """x [B,3,H,W] -> (map [B,C,h,w], cls [B,C] or None, intermediates [B,C_i] pooled)."""
        final, inter = self.model.forward_intermediates(x, indices=self._take)
        pooled_inter = [t.mean(dim=(2, 3)) for t in inter]  # each [B,C_i,h,w] -> [B,C_i]
        if not self.is_vit:
            return final, None, pooled_inter
        # final: normed tokens [B, P+N, C]; split the prefix (class token) from the patch grid.
        n_prefix = self.model.num_prefix_tokens
        cls = final[:, 0]
        patches = final[:, n_prefix:]  # [B,N,C]
        h, w = self.model.patch_embed.dynamic_feat_size((x.shape[-2], x.shape[-1]))
        grid = patches.transpose(1, 2).reshape(x.shape[0], -1, h, w)  # [B,C,h,w]
        return grid, cls, pooled_inter

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        grid, cls, inter = self.forward_maps(x)
        pooled = cls if cls is not None else grid.mean(dim=(2, 3))
        return pooled, inter


def create_backbone(name: str, *, img_size: int, weights: str | None = None) -> Backbone:
    """Build the named backbone; load local weights (safetensors or weights-only .pth) if given."""
    backbone = Backbone(get_spec(name), img_size)
    if weights:
        load_backbone_weights(backbone, weights)
    return backbone


_HEAD_PREFIXES = ("head.", "fc.", "classifier.", "conv_head.", "head_drop")


def load_backbone_weights(backbone: Backbone, path: str) -> None:
    """Load a timm-layout state_dict into the backbone; classifier-head keys are ignored."""
    from geodistill.models.weights_io import load_state_dict, match_state_dict

    state = load_state_dict(path)
    own = backbone.model.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.startswith(_HEAD_PREFIXES)}
    if backbone.is_vit and "pos_embed" in state and state["pos_embed"].shape != own["pos_embed"].shape:
        from timm.layers import resample_abs_pos_embed

        grid = backbone.model.patch_embed.grid_size
        state["pos_embed"] = resample_abs_pos_embed(
            state["pos_embed"], new_size=list(grid), num_prefix_tokens=backbone.model.num_prefix_tokens
        )
    match_state_dict(own, state, what=f"backbone weights {path}")
    backbone.model.load_state_dict(state, strict=True)

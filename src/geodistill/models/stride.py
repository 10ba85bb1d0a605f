"""The smallest input a backbone accepts: its total stride (ViT patch size, ConvNet downsampling).

A smaller image leaves a zero-sized feature map and PyTorch fails deep inside a forward pass
(or a position embedding of zero patches), so the config refuses it up front. The stride is
read from timm's ``feature_info`` (its last ``reduction``) of the model built on the meta
device: nothing is allocated or initialised, and the answer is cached per backbone.
"""

from __future__ import annotations

from functools import cache


@cache
def total_stride(backbone: str) -> int:
    """Pixels per cell of the backbone's final feature map (16 for a patch-16 ViT, 32 for ResNets)."""
    import torch

    from geodistill.models.backbones import build_timm_model, get_spec

    spec = get_spec(backbone)
    with torch.device("meta"):
        model = build_timm_model(spec, 224)
    info = model.feature_info
    reduction = info[-1]["reduction"] if isinstance(info, list) else info.reduction()[-1]
    return int(reduction)

"""Pooling heads and the ClassBlock bottleneck.

Pooling turns a backbone's final map into one or more part vectors:
- ``token``: the ViT class token;        - ``avg``: mean over the spatial grid;
- ``gem``: generalised mean (learnable p); - ``lpn``: LPN square rings (class token first for ViTs).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from geodistill.errors import ConfigError
from geodistill.models.config import POOLINGS

LPN_RINGS = 4


def ring_weights(h: int, w: int, rings: int = LPN_RINGS, *, device=None) -> torch.Tensor:
    """[rings, h*w] averaging weights of the LPN square rings around the grid centre.

    Ring k (1-based) holds the cells of the centred square of side k/rings of the grid that
    are outside the square of side (k-1)/rings; its sum is divided by the cell count of the
    WHOLE square of side k/rings (16, 64, 144, 256 on a 16x16 grid with 4 rings).
    """
    ys = (torch.arange(h, dtype=torch.float64) + 0.5 - h / 2).abs() / (h / 2)  # (0, 1]
    xs = (torch.arange(w, dtype=torch.float64) + 0.5 - w / 2).abs() / (w / 2)
    dist = torch.maximum(ys[:, None], xs[None, :])  # [h,w] Chebyshev distance from centre
    ring = torch.ceil(dist * rings - 1e-9).clamp(1, rings).long().flatten()  # [h*w] in 1..rings
    weights = torch.zeros(rings, h * w, dtype=torch.float64)
    for k in range(1, rings + 1):
        inside = ring <= k  # the whole square of ring k
        weights[k - 1, ring == k] = 1.0 / inside.sum()
    return weights.to(device=device, dtype=torch.float32)


class GeM(nn.Module):
    """Generalised mean pooling: (mean x^p)^(1/p), p learnable (p=1 avg, p->inf max)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B,C,h,w] -> [B,C]
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)


class PartPool(nn.Module):
    """Final map (+ class token) -> parts [B,P,C] according to the pooling name."""

    def __init__(self, pooling: str, *, has_token: bool) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {pooling!r}; known: {', '.join(POOLINGS)}")
        if pooling == "token" and not has_token:
            raise ConfigError("pooling 'token' needs a ViT backbone (ConvNets have no class token)")
        self.pooling = pooling
        self.has_token = has_token
        self.gem = GeM() if pooling == "gem" else None
        self.num_parts = (LPN_RINGS + int(has_token)) if pooling == "lpn" else 1
        self._rings: dict[tuple, torch.Tensor] = {}  # cache, not a buffer: keeps state_dict plain

    def _ring_weights(self, h: int, w: int, x: torch.Tensor) -> torch.Tensor:
        key = (h, w, x.device, x.dtype)
        if key not in self._rings:
            self._rings[key] = ring_weights(h, w, device=x.device).to(x.dtype)
        return self._rings[key]

    def forward(self, grid: torch.Tensor, cls: torch.Tensor | None) -> torch.Tensor:
        """grid [B,C,h,w], cls [B,C] or None -> parts [B,P,C]."""
        if self.pooling == "token":
            return cls[:, None]
        if self.pooling == "avg":
            return grid.mean(dim=(2, 3))[:, None]
        if self.pooling == "gem":
            return self.gem(grid)[:, None]
        b, c, h, w = grid.shape
        rings = torch.einsum("rn,bcn->brc", self._ring_weights(h, w, grid), grid.reshape(b, c, h * w))
        if cls is not None:
            rings = torch.cat([cls[:, None], rings], dim=1)  # [B,1+R,C]
        return rings


class ClassBlock(nn.Module):
    """Bottleneck Linear->BN (the embedding) and Dropout->Linear classifier over building ids.

    Parameter names follow the University-1652 / Video2BEV layout (``add_block.0/1``,
    ``classifier.0``) so released heads load without renaming inside the block.
    """

    def __init__(self, in_dim: int, embed_dim: int, num_classes: int, droprate: float) -> None:
        super().__init__()
        self.add_block = nn.Sequential(nn.Linear(in_dim, embed_dim), nn.BatchNorm1d(embed_dim))
        self.dropout = nn.Dropout(droprate)
        self.classifier = nn.Sequential(nn.Linear(embed_dim, num_classes))
        nn.init.kaiming_normal_(self.add_block[0].weight, a=0, mode="fan_out")
        nn.init.zeros_(self.add_block[0].bias)
        nn.init.normal_(self.add_block[1].weight, 1.0, 0.02)
        nn.init.zeros_(self.add_block[1].bias)
        nn.init.normal_(self.classifier[0].weight, std=0.001)
        nn.init.zeros_(self.classifier[0].bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B,C] -> (bottleneck [B,E], logits [B,K])."""
        z = self.add_block(x)
        return z, self.classifier(self.dropout(z))


class StageHeads(nn.Module):
    """Auxiliary ClassBlocks on the backbone's intermediate stages (the PFED/MobileGeo student).

    One bottleneck + classifier per intermediate feature EXCEPT the deepest, whose depth is the
    final map that the main head(s) already read: e.g. ConvNeXt stages 1-3 get a head each and
    stage 4 is the main head. Training-only: retrieval never runs them, so they cost nothing at
    inference (``cost.descriptor_params`` leaves them out).
    """

    def __init__(self, dims: list[int], embed_dim: int, num_classes: int, droprate: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ClassBlock(d, embed_dim, num_classes, droprate) for d in dims[:-1])

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """features [B,C_i] shallow -> deep (all of them) -> logits [B,K] per auxiliary head."""
        return [block(f)[1] for block, f in zip(self.blocks, features)]


def lpn_descriptor(parts: torch.Tensor) -> torch.Tensor:
    """parts [B,P,C] -> [B,P*C]: each part L2-normalised and divided by sqrt(P), concatenated."""
    p = parts.shape[1]
    return (F.normalize(parts, dim=-1) / math.sqrt(p)).flatten(1)

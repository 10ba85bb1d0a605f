"""Multi-view refiners: fuse V frame descriptors [B,V,D] into one video descriptor [B,D].

V is a run-time argument: the same refiner fuses 1, 2, 4, 8 or 16 frames. Frame descriptors
come in unit-norm; every refiner returns a convex combination of them and does NOT
re-normalise, as the published protocol averages frames ("a video is the mean of its frames'
unit vectors").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geodistill.errors import ConfigError
from geodistill.models.config import REFINERS

MI_MAX_R2 = 1.0 - 1e-6  # |r| is capped so the Gaussian MI of identical frames stays finite (~6.9 nats)


class MeanRefiner(nn.Module):
    """The published protocol: the plain mean of the frame descriptors."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:  # [B,V,D] -> [B,D]
        return frames.mean(dim=1)


class AttentionRefiner(nn.Module):
    """A learned attention pool: softmax weights over frames from a small MLP scorer.

    The last layer starts at zero, so an untrained refiner equals the mean.
    """

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or max(16, dim // 4)
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.score[2].weight)
        nn.init.zeros_(self.score[2].bias)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:  # [B,V,D] -> [B,D]
        weights = self.score(frames).softmax(dim=1)  # [B,V,1]
        return (weights * frames).sum(dim=1)


def select_frames(frames: torch.Tensor, k: int) -> torch.Tensor:
    """Indices [B,k] of k informative, non-redundant frames, chosen greedily.

    The first pick is the frame most similar to the video mean (the most representative);
    each next pick is the frame whose highest similarity to the frames already picked is the
    lowest (the least redundant).
    """
    b, v, _ = frames.shape
    sim = frames @ frames.transpose(1, 2)  # [B,V,V] cosine similarities
    first = (frames @ frames.mean(dim=1, keepdim=True).transpose(1, 2)).squeeze(-1).argmax(dim=1)  # [B]
    picked = [first]
    max_sim = sim[torch.arange(b), first].clone()  # [B,V] similarity to the closest picked frame
    taken = torch.zeros(b, v, dtype=torch.bool, device=frames.device)
    taken[torch.arange(b), first] = True
    for _ in range(1, k):
        nxt = max_sim.masked_fill(taken, float("inf")).argmin(dim=1)  # [B]
        picked.append(nxt)
        taken[torch.arange(b), nxt] = True
        max_sim = torch.maximum(max_sim, sim[torch.arange(b), nxt])
    return torch.stack(picked, dim=1)


class SelectRefiner(nn.Module):
    """Keep the k most informative, least redundant frames, then average them."""

    def __init__(self, k: int) -> None:
        super().__init__()
        if k < 1:
            raise ConfigError(f"refiner_k must be >= 1, got {k}")
        self.k = k

    def forward(self, frames: torch.Tensor) -> torch.Tensor:  # [B,V,D] -> [B,D]
        if frames.shape[1] <= self.k:
            return frames.mean(dim=1)
        idx = select_frames(frames, self.k)  # [B,k]
        chosen = torch.gather(frames, 1, idx[..., None].expand(-1, -1, frames.shape[-1]))  # [B,k,D]
        return chosen.mean(dim=1)


def gaussian_mi(r: torch.Tensor) -> torch.Tensor:
    """Mutual information (nats) of two jointly Gaussian variables with correlation ``r``: -1/2 ln(1 - r^2)."""
    return -0.5 * torch.log1p(-(r * r).clamp(max=MI_MAX_R2))


def _standardise(x: torch.Tensor) -> torch.Tensor:
    """[...,D] -> centred over D and unit-norm, so a dot product is a Pearson correlation."""
    return F.normalize(x - x.mean(dim=-1, keepdim=True), dim=-1)


def mi_select_frames(frames: torch.Tensor, k: int) -> torch.Tensor:
    """Indices [B,k] of k frames chosen greedily for high relevance and low redundancy (mRMR).

    The MI estimate is Gaussian: the D coordinates of two descriptors are read as D paired samples
    of a bivariate Gaussian whose correlation r is the Pearson correlation of the two vectors, so
    I = -1/2 ln(1 - r^2) (0 for unrelated frames, large for near-duplicates).
    - relevance of frame i: I(frame_i; video mean), the information it shares with the whole video;
    - redundancy of frame i: max over already chosen frames s of I(frame_i; frame_s).
    The first pick maximises relevance; each next pick maximises relevance - redundancy. A duplicate
    of a chosen frame has the largest redundancy there is (r = 1), so duplicates are dropped first.
    """
    b, v, _ = frames.shape
    rows = torch.arange(b, device=frames.device)
    z = _standardise(frames.float())  # [B,V,D]
    video = _standardise(frames.float().mean(dim=1, keepdim=True))  # [B,1,D]
    pair_mi = gaussian_mi(z @ z.transpose(1, 2))  # [B,V,V]
    relevance = gaussian_mi((z @ video.transpose(1, 2)).squeeze(-1))  # [B,V]
    first = relevance.argmax(dim=1)  # [B]
    picked = [first]
    redundancy = pair_mi[rows, first].clone()  # [B,V] largest MI with a chosen frame
    taken = torch.zeros(b, v, dtype=torch.bool, device=frames.device)
    taken[rows, first] = True
    for _ in range(1, k):
        nxt = (relevance - redundancy).masked_fill(taken, float("-inf")).argmax(dim=1)  # [B]
        picked.append(nxt)
        taken[rows, nxt] = True
        redundancy = torch.maximum(redundancy, pair_mi[rows, nxt])
    return torch.stack(picked, dim=1)


class MIRefiner(nn.Module):
    """MSRM-style multi-view selection: keep k frames by mutual information (``mi_select_frames``),
    then average them. ``k`` is a run-time choice: ``forward(frames, k=...)`` overrides the default.

    Cost per query: two matmuls, [V,D]x[D,V] and [V,D]x[D,1] = 2 (V^2 + V) D FLOPs, whatever k is
    (the greedy loop is element-wise, which FlopCounterMode does not count).
    """

    def __init__(self, k: int) -> None:
        super().__init__()
        if k < 1:
            raise ConfigError(f"refiner_k must be >= 1, got {k}")
        self.k = k

    def forward(self, frames: torch.Tensor, k: int | None = None) -> torch.Tensor:  # [B,V,D] -> [B,D]
        k = self.k if k is None else k
        if k < 1:
            raise ConfigError(f"refiner k must be >= 1, got {k}")
        if frames.shape[1] <= k:
            return frames.mean(dim=1)
        idx = mi_select_frames(frames, k)  # [B,k]
        chosen = torch.gather(frames, 1, idx[..., None].expand(-1, -1, frames.shape[-1]))  # [B,k,D]
        return chosen.mean(dim=1)


def build_refiner(name: str, *, dim: int, k: int = 4) -> nn.Module:
    """The refiner called ``name`` for descriptors of width ``dim``."""
    if name == "mean":
        return MeanRefiner()
    if name == "attention":
        return AttentionRefiner(dim)
    if name == "select":
        return SelectRefiner(k)
    if name == "mi":
        return MIRefiner(k)
    raise ConfigError(f"unknown refiner {name!r}; known: {', '.join(REFINERS)}")

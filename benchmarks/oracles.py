"""Slow, obviously right re-implementations: the anchors two benchmarks time against, and test oracles.

``reference_metrics``: the University-1652 evaluation loop as published (Zheng et al., 2020,
``evaluate_gpu.py``), one query at a time: one matmul per query, a full descending argsort
(ties keep gallery order, ``kind="stable"``), junk (label -1) dropped with ``isin``, the CMC 1
from the first good item, AP the trapezoid sum over the good items, a query with no good item
skipped but counted; sums in float64 so ``geodistill.eval.retrieval_metrics`` can be compared
bit for bit (the protocol: docs/INTERFACES.md). ``pareto_mask_naive``: every pair of points
compared, O(N^2 M). ``bench_metrics.py`` and ``bench_leaderboard.py`` time the package against
them; tests/eval/test_metrics.py and tests/leaderboard/test_pareto.py check it against them.
They live here, not in the package: nothing the package runs needs them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from geodistill.eval.metrics import JUNK, RECALL_KS, top1_index


def compute_map(
    index: np.ndarray, good_index: np.ndarray, junk_index: np.ndarray
) -> tuple[float, np.ndarray]:
    """AP and CMC [G] of one ranking ``index`` (gallery indices, best first); CMC[0] = -1 if no good item."""
    ap = 0.0
    cmc = np.zeros(len(index), dtype=np.int64)
    if good_index.size == 0:
        cmc[0] = -1
        return ap, cmc
    mask = np.isin(index, junk_index, invert=True)  # remove junk
    index = index[mask]
    ngood = len(good_index)
    mask = np.isin(index, good_index)
    rows_good = np.argwhere(mask).flatten()
    cmc[rows_good[0] :] = 1
    for i in range(ngood):
        d_recall = 1.0 / ngood
        precision = (i + 1) * 1.0 / (rows_good[i] + 1)
        old_precision = i * 1.0 / rows_good[i] if rows_good[i] != 0 else 1.0
        ap = ap + d_recall * (old_precision + precision) / 2
    return ap, cmc


def evaluate_query(qf: torch.Tensor, ql: int, gf: torch.Tensor, gl: np.ndarray) -> tuple[float, np.ndarray]:
    """One query: qf [D], gf [G,D] float32 -> (AP in [0,1], CMC [G])."""
    score = torch.mm(gf, qf.view(-1, 1)).squeeze(1).numpy()  # [G]
    index = np.argsort(-score, kind="stable")  # descending; ties keep gallery order
    good_index = np.argwhere((gl == ql) & (gl != JUNK)).flatten()
    junk_index = np.argwhere(gl == JUNK).flatten()
    return compute_map(index, good_index, junk_index)


def reference_metrics(
    query_features: np.ndarray,
    query_labels: np.ndarray,
    gallery_features: np.ndarray,
    gallery_labels: np.ndarray,
) -> dict[str, float]:
    """The per-query loop over float32 scores; same keys (percent) as ``retrieval_metrics``."""
    q = torch.as_tensor(np.asarray(query_features, dtype=np.float32))
    g = torch.as_tensor(np.asarray(gallery_features, dtype=np.float32))
    ql = np.asarray(query_labels).astype(np.int64)
    gl = np.asarray(gallery_labels).astype(np.int64)
    n_gallery = len(gl)
    cmc_sum = np.zeros(n_gallery, dtype=np.int64)
    aps = []
    for i in range(len(ql)):
        ap, cmc = evaluate_query(q[i], int(ql[i]), g, gl)
        aps.append(ap)  # 0.0 for a skipped query: one entry per query keeps np.sum's grouping
        if cmc[0] == -1:
            continue
        cmc_sum += cmc
    n = max(len(ql), 1)
    cmc_mean = 100.0 * cmc_sum / n
    last = n_gallery - 1
    out = {f"recall@{k}": float(cmc_mean[min(k - 1, last)]) for k in RECALL_KS}
    out["recall@top1"] = float(cmc_mean[top1_index(n_gallery)])
    out["ap"] = float(100.0 * np.sum(np.asarray(aps, dtype=np.float64)) / n)
    return out


def pareto_mask_naive(points, maximize: Sequence[bool]) -> np.ndarray:
    """bool[N]: the non-dominated rows of ``points`` [N,M] (non-finite rows never are); all pairs compared."""
    pts = np.asarray(points, dtype=np.float64) * np.where(np.asarray(maximize, dtype=bool), -1.0, 1.0)
    finite = np.isfinite(pts).all(axis=1)
    mask = finite.copy()
    for i in range(len(pts)):
        if not finite[i]:
            continue
        others = pts[finite]
        dominated = np.all(others <= pts[i], axis=1) & np.any(others < pts[i], axis=1)
        mask[i] = not dominated.any()
    return mask

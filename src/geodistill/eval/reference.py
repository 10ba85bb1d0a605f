"""The retrieval protocol written literally, one query at a time: the oracle for the fast path.

Slow on purpose (a full argsort per query); tests and benchmarks/bench_metrics.py compare
``geodistill.eval.retrieval_metrics`` against it, ties included (stable descending sort).
"""

from __future__ import annotations

import numpy as np

from geodistill.eval.metrics import JUNK, top1_index


def reference_query(
    scores: np.ndarray, query_label: int, gallery_labels: np.ndarray
) -> tuple[float, np.ndarray]:
    """One query: scores [G] -> (AP in [0,1], CMC [G] of 0/1); the University-1652 evaluation code."""
    cmc = np.zeros(len(gallery_labels), dtype=np.int64)
    order = np.argsort(-scores, kind="stable")  # descending; equal scores keep gallery order
    good = np.flatnonzero((gallery_labels == query_label) & (gallery_labels != JUNK))
    if good.size == 0:
        return 0.0, cmc
    order = order[gallery_labels[order] != JUNK]  # junk leaves the ranking
    rows_good = np.flatnonzero(np.isin(order, good))
    cmc[rows_good[0] :] = 1
    ap = 0.0
    n = len(rows_good)
    for i, r in enumerate(rows_good):
        precision = (i + 1) / (r + 1)
        old_precision = i / r if r != 0 else 1.0
        ap += (old_precision + precision) / 2 / n
    return ap, cmc


def reference_metrics(
    query_features: np.ndarray,
    query_labels: np.ndarray,
    gallery_features: np.ndarray,
    gallery_labels: np.ndarray,
) -> dict[str, float]:
    """Per-query loop over the float32 scores gallery . q; same keys as retrieval_metrics."""
    q = np.asarray(query_features, dtype=np.float32)
    g = np.asarray(gallery_features, dtype=np.float32)
    ql = np.asarray(query_labels).astype(np.int64)
    gl = np.asarray(gallery_labels).astype(np.int64)
    n_gallery = len(gl)
    cmc_sum = np.zeros(n_gallery, dtype=np.int64)
    aps = []
    for qf, label in zip(q, ql, strict=True):
        ap, cmc = reference_query(g @ qf, int(label), gl)
        aps.append(ap)
        cmc_sum += cmc
    cmc_mean = 100.0 * cmc_sum / max(len(ql), 1)
    last = n_gallery - 1
    out = {f"recall@{k}": float(cmc_mean[min(k - 1, last)]) for k in (1, 5, 10)}
    out["recall@top1"] = float(cmc_mean[top1_index(n_gallery)])
    out["ap"] = float(100.0 * np.sum(np.asarray(aps, dtype=np.float64)) / max(len(ql), 1))
    return out

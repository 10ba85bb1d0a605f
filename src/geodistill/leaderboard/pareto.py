"""Pareto front and hypervolume for any number of objectives, each maximised or minimised.

Everything is turned into minimisation first (maximised columns are negated). Point p
dominates q when p is no worse in every objective and strictly better in one; equal points
do not dominate each other (both stay on the front). Rows with a NaN are never on the front.

Optuna 5 has no public hypervolume (``optuna._hypervolume`` is private), so it is computed
here: 2-D exactly by a sweep, N-D by slicing along the last objective (HSO: the volume is a
sum of slabs, each the (M-1)-D hypervolume of the points below it), which is exact and fast
enough for fronts of a few hundred points in 3-4 objectives.

``pareto_rows`` is the one place leaderboard rows become a front (metric up, GFLOPs down):
the search's result, the report and the regression gate all call it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_minimisation(points, maximize: Sequence[bool]) -> np.ndarray:
    """points [N,M] -> float64 [N,M] where smaller is better in every column."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2:
        raise ValueError(f"points must be [N, M], got shape {pts.shape}")
    if len(maximize) != pts.shape[1]:
        raise ValueError(f"maximize has {len(maximize)} entries for {pts.shape[1]} objectives")
    sign = np.where(np.asarray(maximize, dtype=bool), -1.0, 1.0)
    return pts * sign


def _front_2d(pts: np.ndarray) -> np.ndarray:
    """Sort-and-sweep, O(N log N): [N,2] (minimise both, finite) -> bool[N]."""
    n = len(pts)
    x, y = pts[:, 0], pts[:, 1]
    order = np.lexsort((y, x))  # by x, then y
    xs, ys = x[order], y[order]
    # Best y among the points before each one, and the x where that best was first reached.
    prev_min = np.concatenate([[np.inf], np.minimum.accumulate(ys)[:-1]])
    new_min = np.concatenate([[True], ys[1:] < prev_min[1:]])
    first_at = np.maximum.accumulate(np.where(new_min, np.arange(n), 0))  # index reaching the min
    x_of_prev_min = np.concatenate([[np.inf], xs[first_at[:-1]]])
    dominated = (ys > prev_min) | ((ys == prev_min) & (x_of_prev_min < xs))
    mask = np.empty(n, dtype=bool)
    mask[order] = ~dominated
    return mask


def _front_nd(pts: np.ndarray) -> np.ndarray:
    """Simple cull in lexicographic order, O(N * F * M): [N,M] (minimise, finite) -> bool[N].

    The lexicographically smallest remaining point is never dominated by a remaining one
    (a dominating point would come first), so take it and drop everything it dominates.
    """
    order = np.lexsort(pts.T[::-1])  # by column 0, then 1, ...
    remaining = pts[order]
    index = order
    keep = []
    while len(remaining):
        head = remaining[0]
        keep.append(index[0])
        rest, rest_idx = remaining[1:], index[1:]
        dominated = np.all(head <= rest, axis=1) & np.any(head < rest, axis=1)
        remaining, index = rest[~dominated], rest_idx[~dominated]
    mask = np.zeros(len(pts), dtype=bool)
    mask[keep] = True
    return mask


def pareto_mask(points, maximize: Sequence[bool]) -> np.ndarray:
    """bool[N]: True for the non-dominated rows of ``points`` [N,M] (NaN rows are False)."""
    pts = _as_minimisation(points, maximize)
    finite = np.isfinite(pts).all(axis=1) if len(pts) else np.zeros(0, dtype=bool)
    mask = np.zeros(len(pts), dtype=bool)
    if not finite.any():
        return mask
    sub = pts[finite]
    if sub.shape[1] == 1:
        mask[finite] = sub[:, 0] == sub[:, 0].min()
    elif sub.shape[1] == 2:
        mask[finite] = _front_2d(sub)
    else:
        mask[finite] = _front_nd(sub)
    return mask


def pareto_rows(frame, metric: str = "d2s_recall1", *, cost: str = "gflops"):
    """The leaderboard rows on the (``metric`` max, ``cost`` min) front, cheapest first.

    Only finished rows take part: status "ok", with both values present. ``frame`` is a
    ``polars.DataFrame`` of leaderboard rows; the result has the same columns.
    """
    import polars as pl

    usable = frame.filter(
        (pl.col("status") == "ok") & pl.col(metric).is_not_null() & pl.col(cost).is_not_null()
    )
    if usable.is_empty():
        return usable
    points = usable.select(metric, cost).to_numpy().astype(np.float64)  # [N,2]
    return usable.filter(pl.Series(pareto_mask(points, [True, False]))).sort(cost, metric)


def _hv_2d(pts: np.ndarray, ref: np.ndarray) -> float:
    """Exact 2-D hypervolume of points strictly better than ``ref`` (minimisation)."""
    front = pts[_front_2d(pts)]
    front = np.unique(front, axis=0)  # sorted by x then y; on a front y then falls with x
    xs = np.append(front[:, 0], ref[0])
    return float(np.sum((xs[1:] - xs[:-1]) * (ref[1] - front[:, 1])))


def _hv(pts: np.ndarray, ref: np.ndarray) -> float:
    """HSO: slabs along the last objective, each an (M-1)-D hypervolume."""
    m = pts.shape[1]
    if len(pts) == 0:
        return 0.0
    if m == 1:
        return float(ref[0] - pts[:, 0].min())
    if m == 2:
        return _hv_2d(pts, ref)
    pts = pts[_front_nd(pts)]
    pts = pts[np.argsort(pts[:, -1], kind="stable")]
    cuts = np.append(pts[:, -1], ref[-1])
    total = 0.0
    for i in range(len(pts)):
        depth = cuts[i + 1] - cuts[i]
        if depth > 0:  # points sharing a last coordinate are summed in the last slab they open
            total += depth * _hv(pts[: i + 1, :-1], ref[:-1])
    return total


def hypervolume(points, reference, maximize: Sequence[bool]) -> float:
    """Volume dominated by ``points`` [N,M] and bounded by the ``reference`` point [M].

    The reference must be worse than the points that count (e.g. recall 0 and a GFLOPs
    budget); points not strictly better than it in every objective add nothing.
    """
    pts = _as_minimisation(points, maximize)
    ref = _as_minimisation(np.asarray(reference, dtype=np.float64)[None, :], maximize)[0]
    if not np.isfinite(ref).all():
        raise ValueError(f"reference point must be finite, got {list(reference)}")
    if len(pts) == 0:
        return 0.0
    inside = np.isfinite(pts).all(axis=1) & (pts < ref).all(axis=1)
    return _hv(pts[inside], ref)

"""Pareto front and hypervolume for any number of objectives, each maximised or minimised.

Everything is turned into minimisation first (maximised columns are negated); equal points do not
dominate each other and rows with a NaN are never on the front. Optuna's hypervolume is private,
so it is computed here: 2-D exactly by a sweep, N-D by slicing along the last objective (HSO).
``pareto_rows`` is the one place leaderboard rows become a front (metric up, GFLOPs down; a trial
stopped early counts at its values then): the search, the report, the regression gate and the
search benchmark all call it. A front is measured over log10 GFLOPs (``front_hypervolume``: each
decade of cost weighs the same, as efficiency charts are drawn) and by ``front_regret``, per
GFLOPs budget of a reference front.
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


FRONT_STATUSES = ("ok", "stopped")  # a stopped row with a metric holds its checkpoint at that epoch


def pareto_rows(frame, metric: str = "d2s_recall1", *, cost: str = "gflops"):
    """The leaderboard rows on the (``metric`` max, ``cost`` min) front, cheapest first.

    Rows with both values take part: finished ("ok") and stopped early ("stopped", at the
    epoch in their ``epochs`` column; a trial refused over the budget has no metric). ``frame``
    is a ``polars.DataFrame`` of leaderboard rows; the result has the same columns.
    """
    import polars as pl

    usable = frame.filter(
        pl.col("status").is_in(FRONT_STATUSES) & pl.col(metric).is_not_null() & pl.col(cost).is_not_null()
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


def nondominated_ranks(points, maximize: Sequence[bool]) -> np.ndarray:
    """int[N]: 0 for the front of ``points`` [N,M], 1 for the front of the rest, ... (NaN rows: -1)."""
    pts = np.asarray(points, dtype=np.float64)
    ranks = np.full(len(pts), -1, dtype=np.int64)
    left = np.flatnonzero(np.isfinite(pts).all(axis=1)) if len(pts) else np.zeros(0, dtype=np.int64)
    rank = 0
    while len(left):
        on_front = pareto_mask(pts[left], maximize)
        ranks[left[on_front]] = rank
        left, rank = left[~on_front], rank + 1
    return ranks


def front_reference(metric_values, gflops) -> tuple[float, float]:
    """(metric, GFLOPs) reference for a front's hypervolume: the lowest metric, 1.1x the largest cost."""
    return float(np.min(metric_values)), 1.1 * float(np.max(gflops))


def front_hypervolume(metric_values, gflops, reference: tuple[float, float]) -> float:
    """Hypervolume of (metric up, log10 GFLOPs down) points against ``reference`` (metric, GFLOPs).

    Over log10 GFLOPs a front spanning decades of cost is weighed as it is drawn; over linear
    GFLOPs the most precise point alone holds nearly all of it.
    """
    values = np.asarray(metric_values, dtype=np.float64).reshape(-1)
    costs = np.asarray(gflops, dtype=np.float64).reshape(-1)
    if len(values) == 0:
        return 0.0
    if (costs <= 0).any() or reference[1] <= 0:
        raise ValueError("GFLOPs must be > 0 on a log scale")
    points = np.c_[values, np.log10(costs)]
    return hypervolume(points, (reference[0], float(np.log10(reference[1]))), maximize=[True, False])


def front_regret(metric_values, gflops, target_values, target_gflops) -> tuple[np.ndarray, np.ndarray]:
    """At every GFLOPs budget of the target's front: (budgets, how far below the target's best the
    found best within that budget is), in the metric's units; inf where nothing was found within it.

    A negative regret means a found point beats the target there (an early-stopped trial's value
    can exceed a final one).
    """
    found = np.c_[np.asarray(metric_values, dtype=np.float64), np.asarray(gflops, dtype=np.float64)]
    target = np.c_[np.asarray(target_values, dtype=np.float64), np.asarray(target_gflops, dtype=np.float64)]
    front = target[pareto_mask(target, [True, False])]
    budgets = np.unique(front[:, 1])
    regret = np.empty(len(budgets))
    for i, budget in enumerate(budgets):
        best = target[target[:, 1] <= budget, 0].max()
        within = found[found[:, 1] <= budget, 0]
        regret[i] = best - within.max() if len(within) else np.inf
    return budgets, regret


def capped_to_front(metric_values, gflops, target_values, target_gflops) -> np.ndarray:
    """Each found value capped at the target's best within its GFLOPs (the lowest target value where
    no target point is that cheap): a hypervolume of these counts no credit for beating the target.

    Why: an early-stopped trial reports its value at the epoch it stopped, which can exceed every
    final value at its cost (a cheap model that peaks at epoch 1); uncapped, such points can stand
    in for a missing part of the target's front (docs/evidence.md, issue 28).
    """
    values = np.asarray(metric_values, dtype=np.float64).reshape(-1)
    costs = np.asarray(gflops, dtype=np.float64).reshape(-1)
    target = np.asarray(target_values, dtype=np.float64).reshape(-1)
    order = np.argsort(np.asarray(target_gflops, dtype=np.float64), kind="stable")
    target_costs = np.asarray(target_gflops, dtype=np.float64)[order]
    best_within = np.maximum.accumulate(target[order])
    at = np.searchsorted(target_costs, costs, side="right") - 1  # the last target point as cheap
    cap = np.where(at >= 0, best_within[np.clip(at, 0, None)], target.min(initial=np.inf))
    return np.minimum(values, cap)


def anytime_hypervolume(metric_values, gflops, spent, reference: tuple[float, float]) -> np.ndarray:
    """[N,2]: (cumulative compute, log-GFLOPs front hypervolume) after each point, in the order
    the points arrived (``spent`` is the cumulative compute when each arrived)."""
    values = np.asarray(metric_values, dtype=np.float64)
    costs = np.asarray(gflops, dtype=np.float64)
    out = np.empty((len(values), 2))
    for i in range(len(values)):
        out[i] = spent[i], front_hypervolume(values[: i + 1], costs[: i + 1], reference)
    return out


def counted_compute(rows):
    """``rows`` (a polars frame) with ``compute`` counted where a row lacks it, by its rule: epochs
    trained x ``gflops``. Rows written before compute was recorded (a resumed older search's) then
    count like the rest; a frame where no row recorded compute is returned as it is."""
    import polars as pl

    from geodistill.leaderboard.rows import compute_expr

    if not {"compute", "epochs", "gflops"} <= set(rows.columns) or rows["compute"].is_null().all():
        return rows
    return rows.with_columns(pl.coalesce(pl.col("compute"), compute_expr()).alias("compute"))


def anytime_front(rows, metric: str):
    """The front as compute was spent: one row per trial in the order trials ended (``created_at``
    of its last row), with the cumulative ``compute`` (epochs x GFLOPs per query) and the
    log-GFLOPs hypervolume of the front so far (``front_hypervolume``; reference: the lowest metric
    found, 1.1x the largest GFLOPs tried). ``rows``: leaderboard rows (a polars frame); an empty
    frame when none has compute, the metric and GFLOPs."""
    import polars as pl

    if "compute" not in rows.columns:
        return pl.DataFrame()
    rows = counted_compute(rows)
    ended = rows.filter(pl.col("compute").is_not_null()).sort("created_at")
    usable = ended.filter(pl.col(metric).is_not_null() & (pl.col("gflops") > 0))
    if usable.is_empty():
        return pl.DataFrame()
    spent = usable.join(
        ended.select("row_key", pl.col("compute").cum_sum().alias("compute_spent")), on="row_key"
    ).sort("created_at")
    reference = front_reference(usable[metric].to_numpy(), usable["gflops"].to_numpy())
    curve = anytime_hypervolume(
        spent[metric].to_numpy(), spent["gflops"].to_numpy(), spent["compute_spent"].to_numpy(), reference
    )
    return spent.select("trial_id", "status", "epochs", metric, "gflops", "compute_spent").with_columns(
        pl.Series("front_hypervolume", curve[:, 1])
    )

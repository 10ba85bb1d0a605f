"""Regression gates: measured values against a baseline's expected ones, or a front against a front.

``tol_check`` compares one measurement with its ``Tolerance`` (metrics may only fall by ``tol``
points; cost must match both ways, exactly unless ``rel_tol``); ``compare_fronts`` checks an
experiment's Pareto front (metric up, GFLOPs down) against a reference experiment's, point by
point and by hypervolume; ``gate`` turns failed checks into exit status 1. The baseline file
itself (``conf/baseline/<name>.yaml``, or a path) is read and measured by
``geodistill.platform.baseline``, which needs data, models and training; this module imports
eval names only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from geodistill.errors import ConfigError, RegressionFailure
from geodistill.eval.names import METRIC_KEYS
from geodistill.leaderboard.pareto import hypervolume, pareto_rows
from geodistill.schema import setting

DEFAULT_METRIC_TOL = 0.3  # points
EXACT_REL_TOL = 1e-9  # "exact" for floats that went through YAML
GOLDEN_RTOL, GOLDEN_ATOL = 1e-3, 1e-4
TO_CONFIRM = "to be confirmed"


@dataclass
class Check:
    """One line of the expected-vs-measured table. ``ok`` None: measured only, not gating."""

    subject: str  # checkpoint name (or experiment point)
    what: str  # metric / cost / golden / front
    expected: str
    measured: str
    tolerance: str
    ok: bool | None

    @property
    def verdict(self) -> str:
        return {True: "ok", False: "REGRESSED", None: "info"}[self.ok]


@dataclass
class GateResult:
    checks: list[Check] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.ok is False]


def format_checks(checks: list[Check]) -> str:
    """The expected-vs-measured table as aligned text."""
    header = ("subject", "check", "expected", "measured", "tolerance", "result")
    rows = [header] + [(c.subject, c.what, c.expected, c.measured, c.tolerance, c.verdict) for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---- what a comparison allows ------------------------------------------------------------------
@dataclass
class Tolerance:
    """One expected value of a baseline and how far a measurement may be from it."""

    value: float | None = setting(None)  # None: to be confirmed (measured, not gating)
    tol: float | None = setting(None, ge=0.0, le=100.0)  # metrics: points below value still ok
    rel_tol: float | None = setting(None, ge=0.0, le=1.0)  # cost: relative, both ways (default exact)


def tol_check(subject: str, what: str, exp: Tolerance, measured: float | None, *, absolute: bool) -> Check:
    """One expected-vs-measured line: metrics regress only downwards, cost must match both ways."""
    value = exp.value
    if absolute:
        tol = exp.tol if exp.tol is not None else DEFAULT_METRIC_TOL
        tol_text = f"±{tol:g}"
    else:
        rel = exp.rel_tol if exp.rel_tol is not None else EXACT_REL_TOL
        tol = rel * abs(value) if value is not None else 0.0
        tol_text = "exact" if exp.rel_tol is None else f"rel {rel:g}"
    shown = "–" if measured is None else exact(measured)
    if value is None:
        return Check(subject, what, TO_CONFIRM, shown, tol_text, None)
    if measured is None or not math.isfinite(measured):
        return Check(subject, what, exact(value), shown, tol_text, False)
    # Metrics regress only downwards (better is fine); cost must match both ways.
    ok = measured >= value - tol if absolute else abs(measured - value) <= tol
    return Check(subject, what, exact(value), shown, tol_text, bool(ok))


def exact(value: float) -> str:
    """A number as Python's shortest round-trip text: pasted into a baseline YAML it reads back
    as the same float, so a value pinned from the table passes the exact cost check."""
    return repr(float(value))


# ---- experiment against experiment -----------------------------------------------------------
def compare_fronts(
    frame: pl.DataFrame,
    experiment: str,
    against: str,
    *,
    metric: str = "d2s_recall1",
    tol: float = DEFAULT_METRIC_TOL,
    cost_slack: float = 1e-6,
) -> list[Check]:
    """Does ``experiment``'s (metric up, GFLOPs down) front fall below ``against``'s anywhere?

    Point by point: every reference front point needs a new point at most its cost (times
    1 + ``cost_slack``) and at least its metric minus ``tol``. Overall: the new hypervolume must
    not be smaller than the reference's minus ``tol`` x the cost range (reference point:
    metric 0, 2 x the largest cost of either front).
    """
    if metric not in METRIC_KEYS:
        raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(METRIC_KEYS)}")

    def front(name: str) -> np.ndarray:
        rows = pareto_rows(frame.filter(pl.col("experiment") == name), metric)
        if rows.is_empty():
            raise ConfigError(f"experiment {name!r} has no finished rows with {metric} and gflops")
        return rows.select(metric, "gflops").to_numpy().astype(np.float64)  # [N,2], cheapest first

    new, ref = front(experiment), front(against)
    checks = []
    for r_metric, r_cost in ref:
        affordable = new[new[:, 1] <= r_cost * (1 + cost_slack)]
        best = float(affordable[:, 0].max()) if len(affordable) else None
        ok = best is not None and best >= r_metric - tol
        checks.append(
            Check(
                f"@{r_cost:.4g} GFLOPs",
                f"best {metric}",
                f"{r_metric:.4f}",
                "none this cheap" if best is None else f"{best:.4f}",
                f"±{tol:g}",
                bool(ok),
            )
        )
    reference = [0.0, 2.0 * float(max(new[:, 1].max(), ref[:, 1].max()))]
    hv_new = hypervolume(new, reference, [True, False])
    hv_ref = hypervolume(ref, reference, [True, False])
    slack = tol * reference[1]
    checks.append(
        Check(
            "front",
            "hypervolume",
            f"{hv_ref:.4g}",
            f"{hv_new:.4g}",
            f"-{slack:g}",
            bool(hv_new >= hv_ref - slack),
        )
    )
    return checks


def gate(checks: list[Check]) -> None:
    """Raise RegressionFailure (exit 1) naming what regressed, if anything did."""
    failed = [c for c in checks if c.ok is False]
    if failed:
        names = ", ".join(f"{c.subject} {c.what}" for c in failed[:5]) + (" …" if len(failed) > 5 else "")
        raise RegressionFailure(f"{len(failed)} of {len(checks)} checks regressed: {names}")


def checks_json(checks: list[Check]) -> str:
    return json.dumps([c.__dict__ | {"result": c.verdict} for c in checks], indent=2)

"""Which searched knobs moved the metric, and the distillation story in two numbers.

``knob_effects`` ranks the searched knobs by effect size: the finished runs are grouped by the
knob's value (a continuous knob such as the KD temperature is split at its median), and the
effect is the spread of the group means, in metric points. Beside it stands the noise it must
beat: the pooled standard deviation of the runs inside those groups. A knob whose effect is
below that spread is reported as not visible at this scale, not as mattering.

``student_share`` states what distillation bought: the best student's metric as a share of the
teacher's, at what share of the teacher's GFLOPs per query. The demo prints both at its end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from geodistill.leaderboard.report_plots import KNOBS

# The knobs the demo and the searches vary (the report's effect plots) plus the student backbone.
EFFECT_KNOBS = (("backbone", "backbone", "discrete"), *KNOBS)


@dataclass(frozen=True)
class KnobEffect:
    knob: str
    effect: float  # spread of the group means (metric points)
    noise: float  # pooled within-group standard deviation (metric points)
    groups: int

    @property
    def visible(self) -> bool:
        """Larger than the spread of runs that share the knob's value (NaN noise: unknown, not visible)."""
        return self.effect > self.noise


def knob_effects(frame: pl.DataFrame, metric: str = "d2s_recall1") -> list[KnobEffect]:
    """Effect size of every knob with two or more values among ``frame``'s rows, largest first."""
    rows = frame.filter(pl.col(metric).is_not_null())
    out = []
    for knob, _label, scale in EFFECT_KNOBS:
        if knob not in rows.columns or rows[knob].drop_nulls().n_unique() < 2:
            continue
        sub = rows.filter(pl.col(knob).is_not_null())
        key = pl.col(knob)
        if scale != "discrete" and sub[knob].n_unique() > 3:
            key = pl.col(knob) > sub[knob].median()
        groups = sub.group_by(key.alias("_group")).agg(
            pl.col(metric).mean().alias("mean"),
            pl.col(metric).var(ddof=1).alias("var"),
            pl.len().alias("n"),
        )
        means = groups["mean"].to_list()
        pooled = groups.filter(pl.col("n") > 1)
        dof = int((pooled["n"] - 1).sum()) if pooled.height else 0
        noise = math.sqrt(float((pooled["var"] * (pooled["n"] - 1)).sum()) / dof) if dof else math.nan
        out.append(KnobEffect(knob, max(means) - min(means), noise, groups.height))
    return sorted(out, key=lambda e: -e.effect)


def format_effects(effects: list[KnobEffect]) -> str:
    """``views 12.5, backbone 8.3 points; within the trial-to-trial spread (4.1 points):
    temperature 1.2; one trial per value, cannot tell: fps``."""
    if not effects:
        return "n/a (no knob took two values among finished trials)"
    shown = [f"{e.knob} {e.effect:.1f}" for e in effects if e.visible]
    hidden = [f"{e.knob} {e.effect:.1f}" for e in effects if not e.visible and not math.isnan(e.noise)]
    untold = [e.knob for e in effects if math.isnan(e.noise)]
    parts = [(", ".join(shown) + " points") if shown else "none above the trial-to-trial spread"]
    if hidden:
        noise = max(e.noise for e in effects if not math.isnan(e.noise))
        parts.append(f"within the trial-to-trial spread ({noise:.1f} points): {', '.join(hidden)}")
    if untold:
        parts.append(f"one trial per value, cannot tell: {', '.join(untold)}")
    return "; ".join(parts)


def student_share(
    students: pl.DataFrame, teacher_metric: float, teacher_gflops: float, metric: str = "d2s_recall1"
) -> dict | None:
    """The best student (highest ``metric``; the cheaper on a tie) against the teacher: its share
    of the teacher's metric and of its GFLOPs per query. None without a finished student."""
    done = students.filter(pl.col(metric).is_not_null() & pl.col("gflops").is_not_null())
    if not done.height or not teacher_metric or not teacher_gflops:
        return None
    best = done.sort([metric, "gflops"], descending=[True, False]).row(0, named=True)
    return {
        "backbone": best.get("backbone"),
        "views": best.get("views"),
        "metric": float(best[metric]),
        "gflops": float(best["gflops"]),
        "metric_share": float(best[metric]) / teacher_metric,
        "gflops_share": float(best["gflops"]) / teacher_gflops,
        "checkpoint_uri": best.get("checkpoint_uri"),
    }


def format_share(d: dict | None) -> str:
    """``best student convnext_atto at 4 view(s): 91% of the teacher's Recall@1 (41.7%) at 35% of
    its GFLOPs per query`` (``student_share``'s result)."""
    if d is None:
        return "n/a (no finished student)"
    if d["metric_share"] <= 1:
        share = f"{d['metric_share']:.0%} of the teacher's Recall@1"
    else:
        share = f"{d['metric_share']:.2f}x the teacher's Recall@1"
    teacher = f" at {d['teacher_views']} view(s)" if d.get("teacher_views") is not None else ""
    return (
        f"best student {d['backbone']} at {d['views']} view(s): {share}{teacher} ({d['metric']:.1f}%) "
        f"at {d['gflops_share']:.0%} of its GFLOPs per query"
    )

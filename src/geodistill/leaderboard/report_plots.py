"""The report's figures (matplotlib, Agg): the Pareto plot with per-point tooltips, effect plots.

Every run and reference point of the Pareto plot is its own artist with a gid (``pt-N``,
``ref-N``); ``save_figure`` writes the SVG with an SVG ``<title>`` inside each such group, which
browsers show on hover with no script.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from geodistill.eval.names import metric_label
from geodistill.leaderboard.report_rows import COST, ReportRows

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h")
TEACHER_COLOUR, BASELINE_COLOUR = "crimson", "0.25"
# The knobs a search turns, their labels, and whether their effect is read per value (discrete,
# a line of the best run per value) or as a scatter (continuous, log-scaled when "log").
KNOBS = (
    ("views", "views (frames per drone query)", "discrete"),
    ("dataset_fps", "fps (video frames per second)", "discrete"),
    ("temperature", "KD temperature", "log"),
    ("w_logit", "KD weight: logits", "linear"),
    ("w_feature", "KD weight: features", "linear"),
    ("w_relation", "KD weight: relations", "linear"),
    ("teacher_views", "teacher views (frames the teacher sees)", "discrete"),
)


def save_figure(
    fig, out_dir: Path, stem: str, hover: Mapping[str, str] | None = None
) -> tuple[Path, Path, bytes, str]:
    """PNG and SVG files of ``fig``; ``hover`` = {artist gid: text} becomes an SVG <title> each."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    png = out_dir / f"{stem}.png"
    png.write_bytes(buf.getvalue())
    text = io.StringIO()
    fig.savefig(text, format="svg", bbox_inches="tight")
    svg_text = _with_titles(text.getvalue(), hover or {})
    svg = out_dir / f"{stem}.svg"
    svg.write_text(svg_text)
    return png, svg, buf.getvalue(), svg_text


def _with_titles(svg: str, hover: Mapping[str, str]) -> str:
    """Matplotlib writes an artist with a gid as ``<g id="GID">``: give each its hover <title>."""

    def titled(match: re.Match) -> str:
        text = hover.get(match.group(1))
        return match.group(0) if text is None else f"{match.group(0)}<title>{html.escape(text)}</title>"

    return re.sub(r'<g id="((?:pt|ref)-\d+)">', titled, svg)


def pareto_figure(
    rows: ReportRows, metric: str, anchors: dict, title: str, hover_of
) -> tuple[Any, dict[str, str]]:
    """The front plot; every run and reference point is its own artist with a gid for its tooltip."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 5.2))
    colours = plt.get_cmap("tab10")
    hover: dict[str, str] = {}
    plotted, stopped, front = rows.plotted, rows.stopped, rows.front
    backbones = sorted(
        set(plotted["backbone"].fill_null("?").to_list() + stopped["backbone"].fill_null("?").to_list())
    )
    for i, backbone in enumerate(backbones):
        style = {"marker": MARKERS[i % len(MARKERS)], "zorder": 3}
        early = stopped.filter(pl.col("backbone").fill_null("?") == backbone)
        # trials stopped early (ASHA, budget): measured, but not fully trained
        for row in early.iter_rows(named=True):
            sc = ax.scatter([row[COST]], [row[metric]], facecolors="none", edgecolors=[colours(i % 10)],
                            s=30, alpha=0.5, **{**style, "zorder": 2})  # fmt: skip
            sc.set_gid(f"pt-{len(hover)}")
            hover[sc.get_gid()] = "stopped early: " + hover_of(row)
        sub = plotted.filter(pl.col("backbone").fill_null("?") == backbone)
        for j, row in enumerate(sub.iter_rows(named=True)):
            sc = ax.scatter([row[COST]], [row[metric]], color=colours(i % 10), s=42, alpha=0.85,
                            label=backbone if j == 0 else None, **style)  # fmt: skip
            sc.set_gid(f"pt-{len(hover)}")
            hover[sc.get_gid()] = hover_of(row)
    if front.height:
        xs, ys = front[COST].to_numpy(), front[metric].to_numpy()
        # The staircase: each front point holds its recall until a costlier one beats it.
        ax.step(xs, ys, where="post", color="black", lw=1.2, zorder=2, label="Pareto front")
        ax.scatter(xs, ys, facecolors="none", edgecolors="black", s=110, lw=1.0, zorder=4)
    _reference_points(ax, rows.references, metric, hover, hover_of)
    shown = _anchor_points(ax, anchors, metric)
    if stopped.height:
        ax.scatter(
            [], [], marker="o", facecolors="none", edgecolors="0.4", s=30, label="stopped early (hollow)"
        )
    if plotted.height or stopped.height or shown or rows.references.height:
        ax.set_xscale("log")
    ax.set_xlabel("GFLOPs per drone query (log scale)")
    ax.set_ylabel(metric_label(metric))
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="lower right")
    return fig, hover


def _reference_points(ax, references: pl.DataFrame, metric: str, hover: dict[str, str], hover_of) -> None:
    """Teacher (stage 1) points as large stars, measured baselines as plus signs, each labelled."""
    labelled: set[str] = set()
    for k, row in enumerate(references.iter_rows(named=True)):
        teacher = row["stage"] == "teacher"
        kind = "teacher (stage 1, reference)" if teacher else "measured baseline (reference)"
        sc = ax.scatter(
            [row[COST]],
            [row[metric]],
            marker="*" if teacher else "P",
            s=260 if teacher else 90,
            color=TEACHER_COLOUR if teacher else BASELINE_COLOUR,
            edgecolors="black",
            linewidths=0.6,
            zorder=5,
            label=None if kind in labelled else kind,
        )
        labelled.add(kind)
        sc.set_gid(f"ref-{k}")
        hover[sc.get_gid()] = hover_of(row)
        views = f", {row['views']} views" if row.get("views") is not None else ""
        ax.annotate(
            f"{'teacher' if teacher else 'baseline'} {row.get('backbone') or '?'}{views}",
            (row[COST], row[metric]),
            fontsize=7,
            color=TEACHER_COLOUR if teacher else BASELINE_COLOUR,
            xytext=(6, -10),
            textcoords="offset points",
        )


def _anchor_points(ax, anchors: dict, metric: str) -> list[dict]:
    shown = [a for a in anchors["anchors"] if a.get(COST) and a.get(metric) is not None]
    if shown:
        ax.scatter(
            [a[COST] for a in shown],
            [a[metric] for a in shown],
            marker="x",
            color="0.6",
            s=36,
            zorder=1,
            label=f"published ({anchors['label']})",
        )
        for a in shown:
            approx = "≈" if a.get("gflops_approx") else ""
            ax.annotate(
                f"{a.get('method', '?')} {approx}",
                (a[COST], a[metric]),
                fontsize=7,
                color="0.55",
                xytext=(4, 3),
                textcoords="offset points",
            )
    return shown


def effect_figure(
    frame: pl.DataFrame, knob: str, metric: str, label: str, scale: str, references: pl.DataFrame
):
    """The metric and the cost against one knob, one colour per backbone.

    Discrete knobs (views, fps, teacher views): the best run and the median cost per value, as
    lines. Continuous knobs (temperature, KD weights): every configuration as a point. Teacher
    points are drawn at their own views on the views plots.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.4))
    colours = plt.get_cmap("tab10")
    data = frame.filter(pl.col(knob).is_not_null())
    for i, backbone in enumerate(sorted(data["backbone"].fill_null("?").unique().to_list())):
        sub = data.filter(pl.col("backbone").fill_null("?") == backbone)
        style = {"marker": MARKERS[i % len(MARKERS)], "color": colours(i % 10), "label": backbone}
        if scale == "discrete":
            sub = (
                sub.group_by(knob)
                .agg(pl.col(metric).max().alias("best"), pl.col(COST).median().alias("cost"))
                .sort(knob)
            )
            left.plot(sub[knob].to_numpy(), sub["best"].to_numpy(), **style)
            right.plot(sub[knob].to_numpy(), sub["cost"].to_numpy(), **style)
        else:
            left.scatter(sub[knob].to_numpy(), sub[metric].to_numpy(), s=30, alpha=0.85, **style)
            right.scatter(sub[knob].to_numpy(), sub[COST].to_numpy(), s=30, alpha=0.85, **style)
    teachers = references.filter((pl.col("stage") == "teacher") & pl.col("views").is_not_null())
    if knob in ("views", "teacher_views") and teachers.height:
        star = {"marker": "*", "s": 200, "color": TEACHER_COLOUR, "edgecolors": "black", "zorder": 5}
        left.scatter(teachers["views"].to_numpy(), teachers[metric].to_numpy(), label="teacher", **star)
        right.scatter(teachers["views"].to_numpy(), teachers[COST].to_numpy(), **star)
    best = "best " if scale == "discrete" else ""
    left.set_xlabel(label)
    left.set_ylabel(f"{best}{metric_label(metric)}")
    right.set_xlabel(label)
    right.set_ylabel("median GFLOPs per query" if scale == "discrete" else "GFLOPs per query")
    if data[COST].drop_nulls().len():
        right.set_yscale("log")
        right.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        right.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        right.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for ax in (left, right):
        ax.grid(True, alpha=0.25)
        if scale == "discrete":
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        elif scale == "log":
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    left.legend(fontsize=7)
    fig.tight_layout()
    return fig


def effect_knobs(ok: pl.DataFrame, metric: str) -> list[tuple[str, str, str]]:
    """The knobs worth a plot: at least two values among finished runs (teacher views only when
    they differ from the student's views somewhere, else the plot repeats the views one)."""
    measured = ok.filter(pl.col(metric).is_not_null())
    knobs = []
    for knob, label, scale in KNOBS:
        if knob not in measured.columns or measured[knob].drop_nulls().n_unique() < 2:
            continue
        if knob == "teacher_views" and not measured.filter(pl.col("teacher_views") != pl.col("views")).height:
            continue
        knobs.append((knob, label, scale))
    return knobs

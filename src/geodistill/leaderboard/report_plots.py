"""The report's figures (matplotlib, Agg): the Pareto plot with per-point tooltips, effect plots.

Every run and reference point of the Pareto plot is its own artist with a gid (``pt-N@backbone``,
``ref-N``); ``save_figure`` writes the SVG with an SVG ``<title>`` inside each such group, which
browsers show on hover with no script.

One look per backbone: ``backbone_styles`` gives each backbone of the report one marker and one
colour, used by every plot, and every plot's legend lists every backbone (those with no finished
trial say so). Legends sit outside the axes; point labels are placed by ``report_labels``; log
axes read as plain numbers (0.01, 0.1, 1). Series and legend entries carry gids
(``series-N@backbone``, ``legend-N@backbone``) so a browser can check all of this.
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from geodistill.eval.names import metric_label
from geodistill.leaderboard.report_labels import Label, place_labels
from geodistill.leaderboard.report_rows import COST, ReportRows

# Backbone looks: tab10 without its red and grey (the teacher is crimson, references grey), and
# markers other than the references' (teacher *, baseline P, published pentagon).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
MARKERS = ("o", "s", "^", "D", "v", "<", ">", "h", "X", "d")
TEACHER_COLOUR, BASELINE_COLOUR, PUBLISHED_COLOUR = "crimson", "0.25", "0.55"
NO_FINISHED = " (no finished trial)"
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

    return re.sub(r'<g id="((?:pt|ref)-\d+(?:@[^"]*)?)">', titled, svg)


def backbone_styles(backbones: list[str | None]) -> dict[str, dict[str, str]]:
    """{backbone: {"marker", "color"}} for every backbone of a report, from the sorted names:
    computed once per report and passed to every plot, so a backbone looks the same in all of
    them; distinct colours and markers up to 8 backbones, distinct pairs up to 40."""
    names = sorted({b or "?" for b in backbones})
    return {
        n: {"marker": MARKERS[i % len(MARKERS)], "color": PALETTE[i % len(PALETTE)]}
        for i, n in enumerate(names)
    }


def plain_log_axis(axis) -> None:
    """Log-axis ticks as plain numbers (0.01, 0.2, 5), never 2x10^0: call once the limits are final."""
    import matplotlib.ticker as ticker

    lo, hi = sorted(axis.get_view_interval())
    decades = math.log10(hi / lo) if lo > 0 else 10.0
    subs = tuple(range(1, 10)) if decades < 1 else (1.0, 2.0, 5.0) if decades <= 3 else (1.0,)
    axis.set_major_locator(ticker.LogLocator(base=10, subs=subs, numticks=15))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


def _legend(owner, styles: dict[str, dict[str, str]], finished: set[str], extra: list, **kwargs):
    """A legend of every backbone (proxy markers, gid ``legend-N@backbone``) and ``extra`` handles."""
    from matplotlib.lines import Line2D

    handles = []
    for i, (name, style) in enumerate(styles.items()):
        handle = Line2D([], [], linestyle="none", markersize=6, **style)
        handle.set_label(name + ("" if name in finished else NO_FINISHED))
        handles.append((f"legend-{i}@{name}", handle))
    legend = owner.legend(
        [h for _, h in handles] + extra, [h.get_label() for _, h in handles] + [e.get_label() for e in extra],
        fontsize=7, **kwargs,
    )  # fmt: skip
    for (gid, _), drawn in zip(handles, legend.legend_handles, strict=False):
        drawn.set_gid(gid)
    return legend


def pareto_figure(
    rows: ReportRows, metric: str, anchors: dict, title: str, hover_of, styles: dict[str, dict[str, str]]
) -> tuple[Any, dict[str, str], list[str]]:
    """The front plot, its tooltips by gid, and the labels no free place was found for.

    Every run and reference point is its own artist with a gid for its tooltip.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(9.6, 5.2))
    fig.subplots_adjust(left=0.08, right=0.68, top=0.92, bottom=0.11)
    hover: dict[str, str] = {}
    markers: list[tuple[float, float, float]] = []  # every marker drawn: labels keep clear of them
    plotted, stopped, front = rows.plotted, rows.stopped, rows.front

    def point(row: dict, backbone: str, prefix: str = "", **style) -> None:
        sc = ax.scatter([row[COST]], [row[metric]], **styles[backbone], **style)
        sc.set_gid(f"pt-{len(hover)}@{backbone}")
        hover[sc.get_gid()] = prefix + hover_of(row)
        markers.append((row[COST], row[metric], style["s"]))

    for row in stopped.iter_rows(named=True):  # stopped early (ASHA, budget): not fully trained
        backbone = row["backbone"] or "?"
        colour = styles[backbone]["color"]
        sc_style = {"facecolors": "none", "edgecolors": [colour], "s": 30, "alpha": 0.6, "zorder": 2}
        sc = ax.scatter([row[COST]], [row[metric]], marker=styles[backbone]["marker"], **sc_style)
        sc.set_gid(f"pt-{len(hover)}@{backbone}")
        hover[sc.get_gid()] = "stopped early: " + hover_of(row)
        markers.append((row[COST], row[metric], 30))
    for row in plotted.iter_rows(named=True):
        point(row, row["backbone"] or "?", s=42, alpha=0.85, zorder=3)
    extra = []
    staircase = None
    if front.height:
        xs, ys = front[COST].to_list(), front[metric].to_list()
        # The staircase: each front point holds its recall until a costlier one beats it.
        (line,) = ax.step(xs, ys, where="post", color="black", lw=1.2, zorder=2, label="Pareto front")
        line.set_gid("front-line")
        rings = ax.scatter(xs, ys, facecolors="none", edgecolors="black", s=110, lw=1.0, zorder=4)
        rings.set_gid("front-rings")
        markers += [(x, y, 110) for x, y in zip(xs, ys, strict=True)]
        staircase = (xs, ys)
        extra.append(line)
    if stopped.height:
        extra.append(Line2D([], [], linestyle="none", marker="o", markerfacecolor="none",
                            markeredgecolor="0.4", label="stopped early (hollow)"))  # fmt: skip
    labels = _reference_points(ax, rows.references, metric, hover, hover_of, markers, extra)
    labels += _anchor_points(ax, anchors, metric, markers, extra)
    if markers:
        ax.set_xscale("log")
        ax.autoscale_view()
        ax.margins(x=0.08, y=0.08)
        ax.set_xlim(ax.get_xlim())
        ax.set_ylim(ax.get_ylim())
        plain_log_axis(ax.xaxis)
    ax.set_xlabel("GFLOPs per drone query (log scale; 2 x MACs, see the counting rule)")
    ax.set_ylabel(metric_label(metric))
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    finished = set(plotted["backbone"].fill_null("?").to_list())
    _legend(ax, styles, finished, extra, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    left_out = place_labels(ax, labels, markers=markers, staircase=staircase)
    return fig, hover, [f"{label.text} ({label.x:g} GFLOPs)" for label in left_out]


def _reference_points(
    ax, references: pl.DataFrame, metric: str, hover: dict[str, str], hover_of, markers: list, extra: list
) -> list[Label]:
    """Teacher (stage 1) points as large stars, measured baselines as plus signs; their labels."""
    labels: list[Label] = []
    kinds: set[str] = set()
    several = references["backbone"].n_unique() > 1 if references.height else False
    for k, row in enumerate(references.iter_rows(named=True)):
        teacher = row["stage"] == "teacher"
        kind = "teacher (stage 1, reference)" if teacher else "measured baseline (reference)"
        colour = TEACHER_COLOUR if teacher else BASELINE_COLOUR
        size = 260 if teacher else 90
        sc = ax.scatter([row[COST]], [row[metric]], marker="*" if teacher else "P", s=size, color=colour,
                        edgecolors="black", linewidths=0.6, zorder=5, label=kind)  # fmt: skip
        if kind not in kinds:
            extra.append(sc)
            kinds.add(kind)
        sc.set_gid(f"ref-{k}")
        hover[sc.get_gid()] = hover_of(row)
        markers.append((row[COST], row[metric], size))
        name = f"{row.get('backbone') or '?'}, " if several or not teacher else ""
        views = (
            f"{row['views']} view{'s' if row['views'] != 1 else ''}" if row.get("views") is not None else ""
        )
        text = f"{'teacher' if teacher else 'baseline'} {name}{views}".strip().rstrip(",")
        labels.append(Label(row[COST], row[metric], text, colour, size))
    return labels


def _anchor_points(ax, anchors: dict, metric: str, markers: list, extra: list) -> list[Label]:
    """Published points: filled where converted to this project's counting rule, hollow (at the
    number the source prints) where its convention is unknown; each labelled with its method."""
    labels: list[Label] = []
    for converted in (True, False):
        shown = [a for a in anchors["anchors"] if a.get(metric) is not None and anchor_x(a, converted)]
        if not shown:
            continue
        face = PUBLISHED_COLOUR if converted else "none"
        name = "published, converted" if converted else "published, own counting (hollow)"
        sc = ax.scatter([anchor_x(a, converted) for a in shown], [a[metric] for a in shown], marker="p",
                        s=44, facecolors=face, edgecolors=PUBLISHED_COLOUR, zorder=1,
                        label=f"{name}\n({anchors['label']})")  # fmt: skip
        sc.set_gid("published-converted" if converted else "published-unconverted")
        extra.append(sc)
        for a in shown:
            x = anchor_x(a, converted)
            markers.append((x, a[metric], 44))
            approx = "≈" if a.get("gflops_approx") else ""
            suffix = "" if converted else " (unconverted)"
            labels.append(Label(x, a[metric], f"{a.get('method', '?')} {approx}{suffix}".strip(), "0.4"))
    return labels


def anchor_x(anchor: dict, converted: bool) -> float | None:
    """Where a published point sits: its converted GFLOPs, or (unconverted) the printed number."""
    if converted:
        return anchor.get(COST) or None
    return None if anchor.get(COST) else anchor.get("reported_gflops") or None


def effect_figure(
    frame: pl.DataFrame,
    knob: str,
    metric: str,
    label: str,
    scale: str,
    references: pl.DataFrame,
    styles: dict[str, dict[str, str]],
    finished: set[str],
):
    """The metric and the cost against one knob, one look per backbone (``styles``).

    Discrete knobs (views, fps, teacher views): the best run and the median cost per value, as
    lines. Continuous knobs (temperature, KD weights): every configuration as a point. Teacher
    points are drawn at their own views on the views plots.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, 3.4))
    fig.subplots_adjust(left=0.07, right=0.76, wspace=0.32, bottom=0.16, top=0.95)
    data = frame.filter(pl.col(knob).is_not_null())
    for i, backbone in enumerate(sorted(data["backbone"].fill_null("?").unique().to_list())):
        sub = data.filter(pl.col("backbone").fill_null("?") == backbone)
        if scale == "discrete":
            sub = (
                sub.group_by(knob)
                .agg(pl.col(metric).max().alias("best"), pl.col(COST).median().alias("cost"))
                .sort(knob)
            )
            drawn = [left.plot(sub[knob].to_numpy(), sub["best"].to_numpy(), **styles[backbone])[0],
                     right.plot(sub[knob].to_numpy(), sub["cost"].to_numpy(), **styles[backbone])[0]]  # fmt: skip
        else:
            drawn = [left.scatter(sub[knob].to_numpy(), sub[metric].to_numpy(), s=30, alpha=0.85, **styles[backbone]),
                     right.scatter(sub[knob].to_numpy(), sub[COST].to_numpy(), s=30, alpha=0.85, **styles[backbone])]  # fmt: skip
        for side, artist in enumerate(drawn):
            artist.set_gid(f"series-{2 * i + side}@{backbone}")
    extra = []
    teachers = references.filter((pl.col("stage") == "teacher") & pl.col("views").is_not_null())
    if knob in ("views", "teacher_views") and teachers.height:
        star = {"marker": "*", "s": 200, "color": TEACHER_COLOUR, "edgecolors": "black", "zorder": 5}
        extra.append(
            left.scatter(teachers["views"].to_numpy(), teachers[metric].to_numpy(), label="teacher", **star)
        )
        right.scatter(teachers["views"].to_numpy(), teachers[COST].to_numpy(), **star)
    best = "best " if scale == "discrete" else ""
    left.set_xlabel(label)
    left.set_ylabel(f"{best}{metric_label(metric)}")
    right.set_xlabel(label)
    right.set_ylabel("median GFLOPs per query" if scale == "discrete" else "GFLOPs per query")
    for ax in (left, right):
        ax.grid(True, alpha=0.25)
        if scale == "discrete":
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        elif scale == "log":
            ax.set_xscale("log")
            ax.autoscale_view()
            plain_log_axis(ax.xaxis)
    if data[COST].drop_nulls().len():
        right.set_yscale("log")
        right.autoscale_view()
        plain_log_axis(right.yaxis)
    _legend(fig, styles, finished, extra, loc="upper left", bbox_to_anchor=(0.775, 0.95))
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


def anytime_figure(curve: pl.DataFrame, metric: str):
    """The anytime front: log10-GFLOPs hypervolume of the front so far against the cumulative
    compute (epochs x GFLOPs per query), a step after each trial that ended, in finishing order."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 3.6))
    ax.step(curve["compute_spent"].to_list(), curve["front_hypervolume"].to_list(), where="post", color="0.2")
    ax.plot(curve["compute_spent"].to_list(), curve["front_hypervolume"].to_list(), "o", ms=3, color="0.2")
    ax.set_xlabel("compute spent (epochs x GFLOPs per query, cumulative, trials in finishing order)")
    ax.set_ylabel(f"hypervolume\n({metric_label(metric)} x log10 GFLOPs)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig

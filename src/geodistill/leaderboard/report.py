"""Precision-versus-efficiency reports: a self-contained HTML page, a Markdown summary, plots.

What a reader wants from a search: which runs are worth their cost (the Pareto front of a metric
against GFLOPs per drone query), what each searched knob buys, where the teacher stands, and the
best run of each backbone. The HTML opens offline (every plot inline SVG, hover titles, no
script); tables put the objectives first and fit 1,280 px. Rows are prepared by ``report_rows``,
drawn by ``report_plots`` and labelled by ``report_labels``; published points
(``leaderboard.anchors``) are context only, converted to ``columns.GFLOPS_RULE``.
``write_report`` reads as its steps: ``_report_input``, ``prepare_rows``, ``_plots``,
``_summary``, ``_sections``, ``_documents``, ``_write``.
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from geodistill.errors import ConfigError
from geodistill.eval.names import METRIC_KEYS, metric_label
from geodistill.leaderboard.anchors import DEFAULT as DEFAULT_ANCHORS
from geodistill.leaderboard.anchors import load_anchors
from geodistill.leaderboard.columns import COMPUTE_RULE, GFLOPS_RULE
from geodistill.leaderboard.pareto import anytime_front, counted_compute, hypervolume
from geodistill.leaderboard.report_plots import (
    KNOBS,
    anytime_figure,
    backbone_styles,
    effect_figure,
    effect_knobs,
    pareto_figure,
    save_figure,
)
from geodistill.leaderboard.report_rows import COST, ReportRows, fmt, hover_text, prepare_rows, varying_keys
from geodistill.leaderboard.store import Leaderboard, LeaderboardError

TABLE_COLUMNS = (  # the objectives first, then what was searched, then the rest
    "{metric}",
    "gflops",
    "backbone",
    "views",
    "dataset_fps",
    "img_size",
    "refiner",
    "teacher",
    "teacher_views",
    "temperature",
    "w_logit",
    "w_feature",
    "w_relation",
    "params_m",
    "latency_ms",
    "runs",
    "experiment",
    "trial_id",
)
ALWAYS_SHOWN = ("{metric}", "gflops", "backbone", "runs", "trial_id")  # other columns only when set
OBJECTIVES = ("{metric}", "gflops")  # kept in a table even when constant across it
WRAPPED = {"backbone", "teacher", "trial_id", "experiment", "method", "check", "convention"}  # text, left


def _frames(
    source: Leaderboard | pl.DataFrame | pl.LazyFrame, experiment: str | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the rows of ``experiment``, every row): the second is where other experiments' teachers are."""
    if isinstance(source, Leaderboard):
        everything = source.read()
    else:
        everything = source.collect() if isinstance(source, pl.LazyFrame) else source
    frame = everything if experiment is None else everything.filter(pl.col("experiment") == experiment)
    return frame, everything


def _inline_svg(svg: str) -> str:
    """The SVG as an element of the HTML page: no XML prologue, no metadata (its URLs are names)."""
    svg = svg[svg.index("<svg") :]
    return re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)


def _plots(
    rows: ReportRows, metric: str, anchor_set: dict[str, Any], out: Path
) -> tuple[dict[str, Path], dict[str, str], list[str]]:
    """The Pareto plot and one effect plot per searched knob as files (PNG + SVG).

    Returns the paths by key, the SVG of each plot by stem (inlined in the page), and the point
    labels no free place was found for in the front plot.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    title = f"{metric_label(metric)} vs GFLOPs per query — {', '.join(rows.experiments)}"
    varying = varying_keys([rows.frame])
    styles = backbone_styles(rows.frame["backbone"].to_list())
    finished = set(rows.plotted["backbone"].fill_null("?").to_list())
    fig, hover, left_out = pareto_figure(
        rows, metric, anchor_set, title, lambda row: hover_text(row, metric, varying), styles
    )
    paths: dict[str, Path] = {}
    svgs: dict[str, str] = {}
    paths["pareto_png"], paths["pareto_svg"], _, svgs["pareto"] = save_figure(fig, out, "pareto", hover)
    plt.close(fig)
    for knob, label, scale in effect_knobs(rows.ok, metric):
        measured = rows.ok.filter(pl.col(metric).is_not_null())
        fig = effect_figure(measured, knob, metric, label, scale, rows.references, styles, finished)
        stem = f"effect_{knob.removeprefix('dataset_')}"
        paths[f"{stem}_png"], paths[f"{stem}_svg"], _, svgs[stem] = save_figure(fig, out, stem)
        plt.close(fig)
    curve = anytime_front(rows.frame, metric)
    if not curve.is_empty():
        fig = anytime_figure(curve, metric)
        paths["anytime_png"], paths["anytime_svg"], _, svgs["anytime"] = save_figure(fig, out, "anytime")
        plt.close(fig)
    return paths, svgs, left_out


# ---- tables and documents ------------------------------------------------------------------


@dataclasses.dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    constant: str = ""  # "img_size = 64, refiner = mean": columns equal in every row, said once


@dataclasses.dataclass
class Section:
    """One part of the report: a heading, optionally a plot (by stem), notes and a table."""

    heading: str
    image: str | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    table: Table | None = None


def _table(frame: pl.DataFrame, columns: list[str], metric: str) -> Table:
    """Headers and cells; the metric of merged repeats reads "mean ± sd". Columns equal in every
    row (of two or more) leave the table and are named once in ``constant``; empty ones leave it
    too; the objectives stay."""

    def cell(row: dict[str, Any], column: str) -> str:
        if column == metric and (row.get("runs") or 1) > 1 and row.get(f"{metric}_sd") is not None:
            return f"{fmt(row[column])} ± {fmt(row[f'{metric}_sd'])}"
        return fmt(row[column])

    present = [c for c in columns if c in frame.columns]
    cells = {c: [cell(r, c) for r in frame.iter_rows(named=True)] for c in present}
    keep = {c.format(metric=metric) for c in OBJECTIVES}
    constant = [  # one value in every row: of two or more rows, or empty ("–") in all
        c
        for c in present
        if c not in keep and len(set(cells[c])) == 1 and (frame.height > 1 or cells[c][0] == "–")
    ]
    headers = [c for c in present if c not in constant]
    said = ", ".join(f"{c} = {cells[c][0]}" for c in constant if cells[c][0] != "–")
    return Table(headers, [list(r) for r in zip(*(cells[c] for c in headers), strict=True)], said)


def _markdown_table(table: Table) -> str:
    if not table.rows:
        return "_none_\n"
    lines = [f"In every row: {table.constant}.", ""] if table.constant else []
    lines += ["| " + " | ".join(table.headers) + " |", "|" + "---|" * len(table.headers)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in table.rows]
    return "\n".join(lines) + "\n"


def _html_table(table: Table) -> str:
    if not table.rows:
        return "<p><em>none</em></p>"
    wrap = [" class='w'" if h in WRAPPED else "" for h in table.headers]
    head = "".join(f"<th{w}>{html.escape(h)}</th>" for w, h in zip(wrap, table.headers, strict=True))
    body = "".join(
        "<tr>" + "".join(f"<td{w}>{html.escape(c)}</td>" for w, c in zip(wrap, r, strict=True)) + "</tr>"
        for r in table.rows
    )
    said = f"<p class='note'>In every row: {html.escape(table.constant)}.</p>" if table.constant else ""
    return f"{said}<div class='wide'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.3em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#f3f3f3;white-space:normal}.w{white-space:normal;overflow-wrap:anywhere;text-align:left}
.wide{overflow-x:auto}.note{color:#666;font-size:13px}
figure{margin:0}figure svg{width:100%;height:auto;border:1px solid #eee}
"""


def _columns(rows: ReportRows, metric: str) -> list[str]:
    """The table columns: the always-shown ones, and every other one set in some reported row."""
    always = {c.format(metric=metric) for c in ALWAYS_SHOWN}
    everything = pl.concat([rows.ok, rows.references], how="diagonal_relaxed")
    columns = []
    for c in (c.format(metric=metric) for c in TABLE_COLUMNS):
        if c in always or (c in everything.columns and everything[c].drop_nulls().len()):
            columns.append(c)
    if len(rows.experiments) < 2 and "experiment" in columns:
        columns.remove("experiment")  # one experiment: named in the title
    return columns


def _summary(rows: ReportRows, metric: str, hv: float, reference: tuple[float, float]) -> str:
    counts = rows.frame.group_by("status").len().sort("status")
    status_line = ", ".join(f"{s}: {n}" for s, n in counts.iter_rows())
    repeats = int(rows.plotted["runs"].sum()) - rows.plotted.height if rows.plotted.height else 0
    merged = f" (identical configurations counted once: {repeats} repeat(s) merged)" if repeats else ""
    teachers = (
        f"; {rows.references.height} teacher/baseline reference point(s)" if rows.references.height else ""
    )
    return (
        f"{rows.frame.height} runs ({status_line}); {rows.plotted.height} finished with "
        f"{metric} and GFLOPs{merged} (trials stopped early are drawn hollow, never on the front); "
        f"{rows.front.height} on the Pareto front; hypervolume {hv:.4g} "
        f"(reference {metric} = {reference[0]:g}, GFLOPs = {reference[1]:g}){teachers}. "
        "Hover a point of the front plot for its configuration."
    )


def _front_notes(anchor_set: dict[str, Any], left_out: list[str]) -> list[str]:
    """The lines under the front plot: the counting rule, and any point left unlabelled."""
    notes = [f"Counting rule: {GFLOPS_RULE}."]
    if anchor_set["anchors"]:
        notes.append(
            "Published points are converted to this rule (filled); where no convention reproduces "
            "the printed number they are drawn hollow at it, labelled (unconverted)."
        )
    if left_out:
        notes.append("Not labelled in the plot (no free space; see the tables): " + "; ".join(left_out) + ".")
    return notes


def _sections(
    rows: ReportRows, metric: str, svgs: Mapping[str, str], anchor_set: dict[str, Any], left_out: list[str]
) -> list[Section]:
    columns = _columns(rows, metric)
    best = (
        rows.ok.filter(pl.col(metric).is_not_null())
        .sort(metric, descending=True)
        .unique(subset=["backbone"], keep="first", maintain_order=True)
    )
    sections = [
        Section(
            "Pareto front", "pareto", _front_notes(anchor_set, left_out), _table(rows.front, columns, metric)
        ),
        Section("Best run per backbone", table=_table(best, columns, metric)),
    ]
    if rows.references.height:
        sections.append(
            Section("Teacher and baseline reference points", table=_table(rows.references, columns, metric))
        )
    for knob, label, _ in KNOBS:
        stem = f"effect_{knob.removeprefix('dataset_')}"
        if stem in svgs:
            sections.append(Section(f"Effect of {label.split(' (')[0]}", stem))
    spent = _compute_section(rows.frame, metric)
    if spent is not None:
        sections.append(spent)
    anchors = _anchor_section(anchor_set, metric)
    if anchors is not None:
        sections.append(anchors)
    return sections


def _compute_section(frame: pl.DataFrame, metric: str) -> Section | None:
    """Compute spent and the anytime front (``pareto.anytime_front``): the totals, and the trials
    that moved the front's hypervolume; None when no row counted its compute."""
    curve = anytime_front(frame, metric)
    if curve.is_empty():
        return None
    frame = counted_compute(frame)  # rows of an older search count by the rule, as the curve does

    def total(column: str) -> float:
        return float(frame[column].fill_null(0).sum()) if column in frame.columns else 0.0

    notes = [
        f"Compute spent: {fmt(total('compute'))} GFLOPs x epochs over {frame['compute'].drop_nulls().len()} "
        f"trial(s), {fmt(total('wall_seconds'))} trial-seconds of training"
        + (f"; training spent {fmt(total('train_gflops'))} GFLOPs." if total("train_gflops") else "."),
        f"compute = {COMPUTE_RULE}. The curve is the front's hypervolume over log10 GFLOPs after each "
        "trial ended; the table lists the trials that raised it.",
    ]
    hv = curve["front_hypervolume"].to_list()
    raised = curve.filter(pl.Series([i == 0 or hv[i] > hv[i - 1] for i in range(len(hv))]))
    headers = [metric, "gflops", "trial_id", "status", "epochs", "compute_spent", "front_hypervolume"]
    cells = [[fmt(r[h]) for h in headers] for r in raised.iter_rows(named=True)]
    return Section("Compute spent and the anytime front", "anytime", notes, Table(headers, cells))


def _anchor_section(anchor_set: dict[str, Any], metric: str) -> Section | None:
    """The published reference points, with each one's counting convention, or None without."""
    headers = [metric, "gflops", "method", "backbone", "reported", "convention", "input_px", "check"]
    rows = [
        [
            fmt(a.get(metric)),
            fmt(a.get(COST)),
            str(a.get("method", "?")),
            str(a.get("backbone", "?")),
            ("≈" if a.get("gflops_approx") else "") + fmt(a.get("reported_gflops")),
            str(a.get("convention") or "unknown"),
            fmt(a.get("input_px")),
            str(a.get("check") or ""),
        ]
        for a in anchor_set["anchors"]
    ]
    if not rows:
        return None
    note = (
        f"Published reference points ({anchor_set['label']}): shown greyed for context only. "
        "gflops: under this report's counting rule; reported: as the source prints it "
        "(≈ read off a published chart)."
    )
    return Section("Published reference points", notes=[note], table=Table(headers, rows))


def _documents(experiments: list[str], summary: str, sections: list[Section], svgs: Mapping[str, str]):
    """The Markdown and the self-contained HTML report, as lines."""
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    md = [f"# geodistill report — {', '.join(experiments)}", "", f"_Generated {generated}._ {summary}", ""]
    page = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>geodistill report — {html.escape(', '.join(experiments))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>geodistill report — {html.escape(', '.join(experiments))}</h1>",
        f"<p class='note'>Generated {generated}. {html.escape(summary)}</p>",
    ]
    for section in sections:
        if section.image is not None and section.image not in svgs:
            continue
        md += [f"## {section.heading}", ""]
        page.append(f"<h2>{html.escape(section.heading)}</h2>")
        if section.image is not None:  # inline: the front plot's points show their <title> on hover
            md += [f"![{section.heading}]({section.image}.png)", ""]
            page.append(
                f"<figure id='{section.image}' aria-label='{html.escape(section.heading)}'>"
                f"{_inline_svg(svgs[section.image])}</figure>"
            )
        for note in section.notes:
            md += [note, ""]
            page.append(f"<p class='note'>{html.escape(note)}</p>")
        if section.table is not None:
            md.append(_markdown_table(section.table))
            page.append(_html_table(section.table))
    page.append("</body></html>")
    return md, page


def write_report(
    source: Leaderboard | pl.DataFrame | pl.LazyFrame,
    out_dir: str | Path,
    *,
    experiment: str | None = None,
    metric: str = "d2s_recall1",
    anchors: str | Path | None = "default",
    reference: tuple[float, float] | None = None,
) -> dict[str, Path]:
    """Write report.html (self-contained), report.md and the plots (PNG + SVG) into ``out_dir``.

    ``source`` is a Leaderboard or a frame of leaderboard rows; only rows with status "ok",
    the metric and GFLOPs take part in the front, identical configurations merged. Teacher rows
    (of this experiment, or named by its students) are drawn for reference. ``anchors`` is a
    name or YAML path of published points (greyed, never on the front); "default" = the packaged ones,
    None = no anchors. ``reference`` = (metric, GFLOPs) for the hypervolume; default (0, 2 x the
    largest GFLOPs). Returns {"html", "md", "pareto_png", ...: path}.
    """
    frame, everything, out, base = _report_input(source, out_dir, experiment=experiment, metric=metric)
    anchor_set = load_anchors(DEFAULT_ANCHORS if anchors == "default" else anchors).as_report()
    rows = prepare_rows(frame, everything, metric, base)
    if reference is None:
        reference = (0.0, 2.0 * float(rows.plotted[COST].max())) if rows.plotted.height else (0.0, 1.0)
    hv = hypervolume(rows.plotted.select(metric, COST).to_numpy(), list(reference), [True, False])
    paths, svgs, left_out = _plots(rows, metric, anchor_set, out)
    sections = _sections(rows, metric, svgs, anchor_set, left_out)
    md, page = _documents(rows.experiments, _summary(rows, metric, hv, reference), sections, svgs)
    return _write(out, md, page, paths)


def _report_input(
    source: Leaderboard | pl.DataFrame | pl.LazyFrame,
    out_dir: str | Path,
    *,
    experiment: str | None,
    metric: str,
) -> tuple[pl.DataFrame, pl.DataFrame, Path, Path | None]:
    """The rows to report, every row, the output folder (created) and the folder paths are shown
    relative to (the one holding a local leaderboard, else the working directory); one-line errors."""
    if metric not in METRIC_KEYS:
        raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(METRIC_KEYS)}")
    frame, everything = _frames(source, experiment)
    board = f"leaderboard {source.root}" if isinstance(source, Leaderboard) else "the rows given"
    where = f"experiment {experiment!r} of {board}" if experiment else board
    if frame.is_empty():
        raise LeaderboardError(f"no rows in {where}: nothing to report")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise LeaderboardError(f"cannot create report directory {out}: {err.strerror or err}") from None
    if isinstance(source, Leaderboard):
        base = Path(source.base).parent if source.local else None
    else:
        base = Path.cwd()
    return frame, everything, out, base


def _write(out: Path, md: list[str], page: list[str], paths: dict[str, Path]) -> dict[str, Path]:
    paths["md"] = out / "report.md"
    paths["md"].write_text("\n".join(md))
    paths["html"] = out / "report.html"
    paths["html"].write_text("\n".join(page))
    return paths

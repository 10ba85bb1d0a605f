"""Precision-versus-efficiency reports: a self-contained HTML page, a Markdown summary, plots.

What a reader wants from a search: which runs are worth their cost (the Pareto front of a
metric against GFLOPs per drone query), what each searched knob buys (views, fps, and the
distillation knobs: KD temperature, KD weights, teacher views), where the teacher itself
stands, and the best run of each backbone. Plots are matplotlib (Agg, no display) saved as PNG
and SVG. The HTML page opens from disk, mailed or archived, with no server and no network:
the Pareto plot is inlined as SVG in which every point carries an SVG ``<title>`` with its
trial's configuration (the browser shows it on hover, no script), the other plots are PNG
data URIs.

Rows are prepared before anything is drawn (``report_rows``: the searched rows as the subject,
teacher and baseline rows as reference points, identical configurations merged, machine paths
made relative); the figures are ``report_plots``.

Published reference points (``leaderboard.anchors``: ``conf/anchors/``) are drawn greyed for
context only: they come from University-1652, not from the data the runs were measured on.

``write_report`` reads as its steps: ``_report_input``, ``prepare_rows``, ``_plots``,
``_summary``, ``_sections``, ``_documents``, ``_write``.
"""

from __future__ import annotations

import base64
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
from geodistill.leaderboard.pareto import hypervolume
from geodistill.leaderboard.report_plots import KNOBS, effect_figure, effect_knobs, pareto_figure, save_figure
from geodistill.leaderboard.report_rows import COST, ReportRows, fmt, hover_text, prepare_rows, varying_keys
from geodistill.leaderboard.store import Leaderboard, LeaderboardError

TABLE_COLUMNS = (
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
    "{metric}",
    "gflops",
    "params_m",
    "latency_ms",
    "runs",
    "experiment",
    "trial_id",
)
ALWAYS_SHOWN = ("backbone", "{metric}", "gflops", "runs", "trial_id")  # other columns only when set


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
) -> tuple[dict[str, Path], dict[str, bytes], dict[str, str]]:
    """The Pareto plot and one effect plot per searched knob as files.

    Returns the paths by key, the PNG bytes by stem, and the Pareto SVG (with tooltips) by stem.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    title = f"{metric_label(metric)} vs GFLOPs per query — {', '.join(rows.experiments)}"
    varying = varying_keys([rows.frame])
    fig, hover = pareto_figure(rows, metric, anchor_set, title, lambda row: hover_text(row, metric, varying))
    paths: dict[str, Path] = {}
    images: dict[str, bytes] = {}
    paths["pareto_png"], paths["pareto_svg"], images["pareto"], svg = save_figure(fig, out, "pareto", hover)
    plt.close(fig)
    for knob, label, scale in effect_knobs(rows.ok, metric):
        fig = effect_figure(
            rows.ok.filter(pl.col(metric).is_not_null()), knob, metric, label, scale, rows.references
        )
        stem = f"effect_{knob.removeprefix('dataset_')}"
        paths[f"{stem}_png"], paths[f"{stem}_svg"], images[stem], _ = save_figure(fig, out, stem)
        plt.close(fig)
    return paths, images, {"pareto": svg}


# ---- tables and documents ------------------------------------------------------------------


def _table(frame: pl.DataFrame, columns: list[str], metric: str) -> tuple[list[str], list[list[str]]]:
    """Headers and cells; the metric of merged repeats reads "mean ± sd"."""
    present = [c for c in columns if c in frame.columns]

    def cell(row: dict[str, Any], column: str) -> str:
        if column == metric and (row.get("runs") or 1) > 1 and row.get(f"{metric}_sd") is not None:
            return f"{fmt(row[column])} ± {fmt(row[f'{metric}_sd'])}"
        return fmt(row[column])

    return present, [[cell(r, c) for c in present] for r in frame.iter_rows(named=True)]


def _markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "_none_\n"
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<div class='wide'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right;white-space:nowrap}th{background:#f3f3f3}
.wide{overflow-x:auto}
img{max-width:100%;border:1px solid #eee}.note{color:#666;font-size:13px}
figure{margin:0}figure svg{max-width:100%;height:auto;border:1px solid #eee}
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


Section = tuple[str, str | None, tuple[list[str], list[list[str]]] | None]


def _sections(rows: ReportRows, metric: str, images: Mapping[str, bytes]) -> list[Section]:
    columns = _columns(rows, metric)
    best = (
        rows.ok.filter(pl.col(metric).is_not_null())
        .sort(metric, descending=True)
        .unique(subset=["backbone"], keep="first", maintain_order=True)
    )
    sections: list[Section] = [
        ("Pareto front", "pareto", _table(rows.front, columns, metric)),
        ("Best run per backbone", None, _table(best, columns, metric)),
    ]
    if rows.references.height:
        sections.append(
            ("Teacher and baseline reference points", None, _table(rows.references, columns, metric))
        )
    for knob, label, _ in KNOBS:
        stem = f"effect_{knob.removeprefix('dataset_')}"
        if stem in images:
            sections.append((f"Effect of {label.split(' (')[0]}", stem, None))
    return sections


def _anchor_section(anchor_set: dict[str, Any], metric: str) -> tuple[str, list[str], list[list[str]]] | None:
    """(note, headers, rows) of the published reference points, or None without anchors."""
    rows = [
        [
            str(a.get("method", "?")),
            str(a.get("backbone", "?")),
            ("≈" if a.get("gflops_approx") else "") + fmt(a.get(COST)),
            fmt(a.get(metric)),
        ]
        for a in anchor_set["anchors"]
    ]
    if not rows:
        return None
    note = (
        f"Published reference points ({anchor_set['label']}): shown greyed for context only; "
        "≈ marks GFLOPs read off a published chart."
    )
    return note, ["method", "backbone", "GFLOPs", metric], rows


def _documents(
    experiments: list[str],
    summary: str,
    sections: list[Section],
    images: Mapping[str, bytes],
    svgs: Mapping[str, str],
    anchors: tuple[str, list[str], list[list[str]]] | None,
) -> tuple[list[str], list[str]]:
    """The Markdown and the self-contained HTML report, as lines."""
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    md = [f"# geodistill report — {', '.join(experiments)}", "", f"_Generated {generated}._ {summary}", ""]
    page = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>geodistill report — {html.escape(', '.join(experiments))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>geodistill report — {html.escape(', '.join(experiments))}</h1>",
        f"<p class='note'>Generated {generated}. {html.escape(summary)}</p>",
    ]
    for heading, image, table in sections:
        if image is not None and image not in images:
            continue
        md += [f"## {heading}", ""]
        page.append(f"<h2>{html.escape(heading)}</h2>")
        if image is not None:
            md += [f"![{heading}]({image}.png)", ""]
            if image in svgs:  # inline: its points' <title>s show on hover
                page.append(
                    f"<figure id='{image}' aria-label='{html.escape(heading)}'>{_inline_svg(svgs[image])}</figure>"
                )
            else:
                data = base64.b64encode(images[image]).decode("ascii")
                page.append(
                    f"<img id='{image}' alt='{html.escape(heading)}' src='data:image/png;base64,{data}'>"
                )
        if table is not None:
            md.append(_markdown_table(*table))
            page.append(_html_table(*table))
    if anchors is not None:
        note, headers, rows = anchors
        md += ["## Published reference points", "", note, "", _markdown_table(headers, rows)]
        page += [
            "<h2>Published reference points</h2>",
            f"<p class='note'>{html.escape(note)}</p>",
            _html_table(headers, rows),
        ]
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
    paths, images, svgs = _plots(rows, metric, anchor_set, out)
    md, page = _documents(
        rows.experiments,
        _summary(rows, metric, hv, reference),
        _sections(rows, metric, images),
        images,
        svgs,
        _anchor_section(anchor_set, metric),
    )
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

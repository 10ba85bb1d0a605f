"""Precision-versus-efficiency reports: a self-contained HTML page, a Markdown summary, plots.

What a reader wants from a search: which runs are worth their cost (the Pareto front of a
metric against GFLOPs per drone query), what the views and fps knobs buy, and the best run
of each backbone. Plots are matplotlib (Agg, no display) saved as PNG and SVG; the HTML page
embeds the PNGs as data URIs so it opens from disk, mailed or archived, with no server.

Published reference points (``baselines/anchors.yaml``) are drawn greyed for context only:
they come from University-1652, not from the data the runs were measured on.

Why one file over 400 lines: ``write_report`` reads as its steps (``_report_input``,
``_plots``, the tables, ``_documents``) and every helper here serves that one report.
"""

from __future__ import annotations

import base64
import html
import io
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from geodistill.errors import ConfigError, one_line
from geodistill.eval.names import METRIC_KEYS, metric_label
from geodistill.leaderboard.pareto import hypervolume, pareto_rows
from geodistill.leaderboard.store import Leaderboard, LeaderboardError

COST = "gflops"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h")
ANCHORS_FILE = Path("baselines") / "anchors.yaml"
TABLE_COLUMNS = (
    "backbone",
    "views",
    "dataset_fps",
    "img_size",
    "refiner",
    "teacher",
    "{metric}",
    "gflops",
    "params_m",
    "latency_ms",
    "experiment",
    "trial_id",
)


def default_anchors_path() -> Path | None:
    """``baselines/anchors.yaml`` under the working directory, else beside this source tree."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (base / ANCHORS_FILE).is_file():
            return base / ANCHORS_FILE
    return None


def load_anchors(path: str | Path | None) -> dict[str, Any]:
    """The anchors YAML as {"label": str, "anchors": [{method, backbone, gflops, d2s_*}, ...]}."""
    if path is None:
        return {"label": "", "anchors": []}
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read anchors file {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot parse anchors file {path}: {one_line(err)}") from None
    if not isinstance(data, dict) or not isinstance(data.get("anchors"), list):
        raise ConfigError(f"anchors file {path} needs a list under 'anchors'")
    label = str(data.get("label") or f"{data.get('dataset', 'published')}, not comparable")
    return {"label": label, "anchors": [a for a in data["anchors"] if isinstance(a, dict)]}


def _frame(source: Leaderboard | pl.DataFrame | pl.LazyFrame, experiment: str | None) -> pl.DataFrame:
    if isinstance(source, Leaderboard):
        return source.read(experiment)
    frame = source.collect() if isinstance(source, pl.LazyFrame) else source
    if experiment is not None:
        frame = frame.filter(pl.col("experiment") == experiment)
    return frame


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def _save(fig, out_dir: Path, stem: str) -> tuple[Path, Path, bytes]:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    png = out_dir / f"{stem}.png"
    png.write_bytes(buf.getvalue())
    svg = out_dir / f"{stem}.svg"
    fig.savefig(svg, format="svg", bbox_inches="tight")
    return png, svg, buf.getvalue()


def _pareto_figure(
    plotted: pl.DataFrame,
    front: pl.DataFrame,
    metric: str,
    anchors: dict,
    title: str,
    stopped: pl.DataFrame | None = None,
):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 5.2))
    colours = plt.get_cmap("tab10")
    stopped = stopped if stopped is not None else plotted.clear()
    backbones = sorted(
        set(plotted["backbone"].fill_null("?").to_list() + stopped["backbone"].fill_null("?").to_list())
    )
    for i, backbone in enumerate(backbones):
        early = stopped.filter(pl.col("backbone").fill_null("?") == backbone)
        if early.height:  # trials stopped early (ASHA, budget): measured, but not fully trained
            ax.scatter(
                early[COST].to_numpy(),
                early[metric].to_numpy(),
                marker=MARKERS[i % len(MARKERS)],
                facecolors="none",
                edgecolors=[colours(i % 10)],
                s=30,
                alpha=0.5,
                zorder=2,
            )
        sub = plotted.filter(pl.col("backbone").fill_null("?") == backbone)
        if not sub.height:
            continue
        ax.scatter(
            sub[COST].to_numpy(),
            sub[metric].to_numpy(),
            marker=MARKERS[i % len(MARKERS)],
            color=colours(i % 10),
            s=42,
            alpha=0.85,
            label=backbone,
            zorder=3,
        )
    if front.height:
        xs, ys = front[COST].to_numpy(), front[metric].to_numpy()
        # The staircase: each front point holds its recall until a costlier one beats it.
        ax.step(xs, ys, where="post", color="black", lw=1.2, zorder=2, label="Pareto front")
        ax.scatter(xs, ys, facecolors="none", edgecolors="black", s=110, lw=1.0, zorder=4)
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
    if stopped.height:
        ax.scatter(
            [], [], marker="o", facecolors="none", edgecolors="0.4", s=30, label="stopped early (hollow)"
        )
    if plotted.height or stopped.height or shown:
        ax.set_xscale("log")
    ax.set_xlabel("GFLOPs per drone query (log scale)")
    ax.set_ylabel(metric_label(metric))
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def _effect_figure(frame: pl.DataFrame, knob: str, metric: str, knob_label: str):
    """Best metric and median cost against one knob (views, fps), one line per backbone."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.4))
    colours = plt.get_cmap("tab10")
    data = frame.filter(pl.col(knob).is_not_null())
    for i, backbone in enumerate(sorted(data["backbone"].fill_null("?").unique().to_list())):
        sub = (
            data.filter(pl.col("backbone").fill_null("?") == backbone)
            .group_by(knob)
            .agg(pl.col(metric).max().alias("best"), pl.col(COST).median().alias("cost"))
            .sort(knob)
        )
        style = {"marker": MARKERS[i % len(MARKERS)], "color": colours(i % 10), "label": backbone}
        left.plot(sub[knob].to_numpy(), sub["best"].to_numpy(), **style)
        right.plot(sub[knob].to_numpy(), sub["cost"].to_numpy(), **style)
    left.set_xlabel(knob_label)
    left.set_ylabel(f"best {metric_label(metric)}")
    right.set_xlabel(knob_label)
    right.set_ylabel("median GFLOPs per query")
    if data[COST].drop_nulls().len():
        right.set_yscale("log")
        right.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        right.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        right.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for ax in (left, right):
        ax.grid(True, alpha=0.25)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    left.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _table(frame: pl.DataFrame, columns: list[str]) -> tuple[list[str], list[list[str]]]:
    present = [c for c in columns if c in frame.columns]
    return present, [[_fmt(r[c]) for c in present] for r in frame.iter_rows(named=True)]


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
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}
img{max-width:100%;border:1px solid #eee}.note{color:#666;font-size:13px}
"""


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
    the metric and GFLOPs take part in the front. ``anchors`` is a YAML of published points
    (greyed, never on the front); "default" = ``default_anchors_path()``, None = no anchors. ``reference`` = (metric, GFLOPs) for the hypervolume;
    default (0, 2 x the largest GFLOPs). Returns {"html", "md", "pareto_png", ...: path}.
    """
    frame, out = _report_input(source, out_dir, experiment=experiment, metric=metric)
    anchor_set = load_anchors(default_anchors_path() if anchors == "default" else anchors)
    ok = frame.filter(pl.col("status") == "ok")
    plotted = ok.filter(pl.col(metric).is_not_null() & pl.col(COST).is_not_null() & (pl.col(COST) > 0))
    front = pareto_rows(plotted, metric, cost=COST)
    if reference is None:
        reference = (0.0, 2.0 * float(plotted[COST].max())) if plotted.height else (0.0, 1.0)
    hv = hypervolume(plotted.select(metric, COST).to_numpy(), list(reference), [True, False])
    experiments = sorted({e for e in frame["experiment"].to_list() if e})
    paths, images = _plots(frame, ok, plotted, front, metric, anchor_set, experiments, out)

    columns = [c.format(metric=metric) for c in TABLE_COLUMNS]
    best = (
        ok.filter(pl.col(metric).is_not_null())
        .sort(metric, descending=True)
        .unique(subset=["backbone"], keep="first", maintain_order=True)
    )
    counts = frame.group_by("status").len().sort("status")
    status_line = ", ".join(f"{s}: {n}" for s, n in counts.iter_rows())
    summary = (
        f"{frame.height} runs ({status_line}); {plotted.height} finished with {metric} and GFLOPs "
        f"(trials stopped early are drawn hollow, never on the front); "
        f"{front.height} on the Pareto front; hypervolume {hv:.4g} "
        f"(reference {metric} = {reference[0]:g}, GFLOPs = {reference[1]:g})."
    )
    sections = [
        ("Pareto front", "pareto", _table(front, columns)),
        ("Best run per backbone", None, _table(best, columns)),
        ("Effect of views", "effect_views", None),
        ("Effect of fps", "effect_fps", None),
    ]
    md, page = _documents(experiments, summary, sections, images, _anchor_section(anchor_set, metric))
    paths["md"] = out / "report.md"
    paths["md"].write_text("\n".join(md))
    paths["html"] = out / "report.html"
    paths["html"].write_text("\n".join(page))
    return paths


def _report_input(
    source: Leaderboard | pl.DataFrame | pl.LazyFrame,
    out_dir: str | Path,
    *,
    experiment: str | None,
    metric: str,
) -> tuple[pl.DataFrame, Path]:
    """The rows to report and the output folder (created), or one-line errors."""
    if metric not in METRIC_KEYS:
        raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(METRIC_KEYS)}")
    frame = _frame(source, experiment)
    board = f"leaderboard {source.root}" if isinstance(source, Leaderboard) else "the rows given"
    where = f"experiment {experiment!r} of {board}" if experiment else board
    if frame.is_empty():
        raise LeaderboardError(f"no rows in {where}: nothing to report")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise LeaderboardError(f"cannot create report directory {out}: {err.strerror or err}") from None
    return frame, out


def _plots(
    frame: pl.DataFrame,
    ok: pl.DataFrame,
    plotted: pl.DataFrame,
    front: pl.DataFrame,
    metric: str,
    anchor_set: dict[str, Any],
    experiments: list[str],
    out: Path,
) -> tuple[dict[str, Path], dict[str, bytes]]:
    """The Pareto plot and the effect plots (views, fps) as files; their PNG bytes by stem."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    title = f"{metric_label(metric)} vs GFLOPs per query — {', '.join(experiments)}"
    paths: dict[str, Path] = {}
    images: dict[str, bytes] = {}
    stopped = frame.filter(
        (pl.col("status") == "stopped")
        & pl.col(metric).is_not_null()
        & pl.col(COST).is_not_null()
        & (pl.col(COST) > 0)
    )
    fig = _pareto_figure(plotted, front, metric, anchor_set, title, stopped)
    paths["pareto_png"], paths["pareto_svg"], images["pareto"] = _save(fig, out, "pareto")
    plt.close(fig)
    for knob, label in (("views", "views (frames per drone query)"), ("dataset_fps", "video fps")):
        if ok.filter(pl.col(knob).is_not_null() & pl.col(metric).is_not_null()).height:
            fig = _effect_figure(ok.filter(pl.col(metric).is_not_null()), knob, metric, label)
            stem = f"effect_{knob.removeprefix('dataset_')}"
            paths[f"{stem}_png"], paths[f"{stem}_svg"], images[stem] = _save(fig, out, stem)
            plt.close(fig)
    return paths, images


def _anchor_section(anchor_set: dict[str, Any], metric: str) -> tuple[str, list[str], list[list[str]]] | None:
    """(note, headers, rows) of the published reference points, or None without anchors."""
    rows = [
        [
            str(a.get("method", "?")),
            str(a.get("backbone", "?")),
            ("≈" if a.get("gflops_approx") else "") + _fmt(a.get(COST)),
            _fmt(a.get(metric)),
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
    sections: list[tuple[str, str | None, tuple[list[str], list[list[str]]] | None]],
    images: dict[str, bytes],
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
            data = base64.b64encode(images[image]).decode("ascii")
            page.append(f"<img id='{image}' alt='{html.escape(heading)}' src='data:image/png;base64,{data}'>")
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

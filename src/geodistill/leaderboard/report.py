"""Precision-versus-efficiency reports: a self-contained HTML page, a Markdown summary, plots.

What a reader wants from a search: which runs are worth their cost (the Pareto front of a
metric against GFLOPs per drone query), what each searched knob buys (views, fps, and the
distillation knobs: KD temperature, KD weights, teacher views), where the teacher itself
stands, and the best run of each backbone. Plots are matplotlib (Agg, no display) saved as PNG
and SVG. The HTML page opens from disk, mailed or archived, with no server and no network:
the Pareto plot is inlined as SVG in which every point carries an SVG ``<title>`` with its
trial's configuration (the browser shows it on hover, no script), the other plots are PNG
data URIs.

Rows are prepared before anything is drawn:
- the subject is the searched rows (stage "student"); teacher (stage 1) and baseline rows, and
  the teacher rows of other experiments that the students name as their teacher, are drawn as
  reference points (stars), never on the front;
- identical configurations (same settings up to the run name, seed and resources) are merged
  into one row / point with ``runs`` and the metric's mean ± sd;
- machine paths are shown relative to the folder holding the leaderboard (or as ``…/`` plus
  their last parts), and a teacher is shown by its run name when its row is found.

Published reference points (``baselines/anchors.yaml``) are drawn greyed for context only:
they come from University-1652, not from the data the runs were measured on.

Why one file over 400 lines: ``write_report`` reads as its steps (``_report_input``,
``_prepare``, ``_plots``, ``_summary``, ``_sections``, ``_documents``, ``_write``) and every
helper here serves that one report.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
import re
from collections.abc import Mapping
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
REFERENCE_STAGES = ("teacher", "baseline")  # drawn for reference when students are reported
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
# Settings that say how or where a run ran, not what it trained: identical configurations that
# differ only in these are repeats, merged into one row.
RUN_ONLY_KEYS = (
    "run_name",
    "experiment",
    "output_dir",
    "ray_address",
    "logger",
    "train.seed",
    "train.resume",
    "data.loader_workers",
    "scaling.",
)
# Row columns that identify a configuration (with the config JSON, when present).
CONFIG_COLUMNS = (
    "stage",
    "dataset_name",
    "dataset_elevation",
    "dataset_fps",
    "teacher",
    "backbone",
    "img_size",
    "views",
    "refiner",
    "temperature",
    "w_task",
    "w_logit",
    "w_feature",
    "w_relation",
    "lr",
    "epochs",
)
# Config keys already shown through a row column in a point's hover text.
CONFIG_KEY_COLUMNS = {
    "model.backbone": "backbone",
    "data.views": "views",
    "data.fps": "dataset_fps",
    "data.img_size": "img_size",
    "model.refiner": "refiner",
    "distill.teacher_checkpoint": "teacher",
    "distill.teacher_views": "teacher_views",
    "distill.temperature": "temperature",
    "distill.w_task": "w_task",
    "distill.w_logit": "w_logit",
    "distill.w_feature": "w_feature",
    "distill.w_relation": "w_relation",
    "train.lr": "lr",
}
MEAN_COLUMNS = (*METRIC_KEYS, "gflops", "gmacs", "params_m", "latency_ms", "throughput_qps")


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


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def display_path(value: str, base: Path | None) -> str:
    """A machine path as a reader may see it: relative to ``base``, else ``…/`` + its last 2 parts.

    URIs (``s3://…``) and relative paths are returned as they are.
    """
    if "://" in value or not value.startswith("/"):
        return value
    path = Path(value)
    if base is not None:
        try:
            return path.relative_to(base).as_posix() or "."
        except ValueError:
            pass
    return "…/" + "/".join(path.parts[-2:])


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _run_only(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RUN_ONLY_KEYS)


def _config_of(config_json: str | None, base: Path | None) -> dict[str, Any]:
    """A row's configuration, flattened, without run-only keys, machine paths made displayable."""
    if not config_json:
        return {}
    try:
        config = json.loads(config_json)
    except ValueError:
        return {}
    if not isinstance(config, Mapping):
        return {}
    flat = {}
    for key, value in _flatten(config).items():
        if _run_only(key):
            continue
        if isinstance(value, str):
            value = display_path(value, base)
        elif isinstance(value, list):
            value = [display_path(v, base) if isinstance(v, str) else v for v in value]
        flat[key] = value
    return flat


def _save(
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


def _inline_svg(svg: str) -> str:
    """The SVG as an element of the HTML page: no XML prologue, no metadata (its URLs are names)."""
    svg = svg[svg.index("<svg") :]
    return re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)


# ---- rows ----------------------------------------------------------------------------------


@dataclasses.dataclass
class _Rows:
    """What one report shows, prepared once: each frame has identical configurations merged."""

    frame: pl.DataFrame  # the subject rows as read, every status (one per run)
    ok: pl.DataFrame  # merged, status ok
    plotted: pl.DataFrame  # merged, ok, with the metric and GFLOPs > 0
    stopped: pl.DataFrame  # merged, stopped early, with the metric and GFLOPs > 0: drawn hollow
    front: pl.DataFrame  # the Pareto front of ``plotted``
    references: pl.DataFrame  # merged teacher / baseline rows with the metric and GFLOPs
    experiments: list[str]


def _prepare(frame: pl.DataFrame, everything: pl.DataFrame, metric: str, base: Path | None) -> _Rows:
    """Split subject and reference rows, add the derived columns, merge repeats, find the front."""
    stage = pl.col("stage").fill_null("")
    students = frame.filter(~stage.is_in(REFERENCE_STAGES))
    if students.is_empty():  # a report of teachers (or baselines) alone: they are the subject
        subject, references = frame, frame.clear()
    else:
        subject = students
        references = pl.concat(
            [frame.filter(stage.is_in(REFERENCE_STAGES)), _teachers_named(students, everything)]
        )
        references = references.unique(subset=["row_key"], keep="first", maintain_order=True)
    teacher_names = _teacher_names(subject, everything, frame["experiment"].unique().to_list())
    subject = _derive(subject, metric, base, teacher_names)
    references = _derive(references, metric, base, teacher_names)
    usable = pl.col(metric).is_not_null() & pl.col(COST).is_not_null() & (pl.col(COST) > 0)
    merged = _merge_repeats(subject, metric)
    ok = merged.filter(pl.col("status") == "ok")
    plotted = ok.filter(usable)
    return _Rows(
        frame=subject,
        ok=ok,
        plotted=plotted,
        stopped=merged.filter((pl.col("status") == "stopped") & usable),
        front=pareto_rows(plotted, metric, cost=COST),
        references=_merge_repeats(references, metric).filter((pl.col("status") == "ok") & usable),
        experiments=sorted({e for e in frame["experiment"].to_list() if e}),
    )


def _same_or_inside(a: str, b: str) -> bool:
    """Whether path ``a`` is ``b`` or lies inside it (a checkpoint file inside a run folder)."""
    pa_, pb = Path(a), Path(b)
    return pa_ == pb or pb in pa_.parents


def _teachers_named(students: pl.DataFrame, everything: pl.DataFrame) -> pl.DataFrame:
    """Teacher rows (any experiment) whose checkpoint is, or lies in, a teacher the students name."""
    named = {t for t in students["teacher"].drop_nulls().unique().to_list() if t}
    teachers = everything.filter(pl.col("stage") == "teacher")
    if not named or teachers.is_empty():
        return teachers.clear()
    keep = [
        bool(ckpt) and any(_same_or_inside(ckpt, t) or _same_or_inside(t, ckpt) for t in named)
        for ckpt in teachers["checkpoint_uri"].to_list()
    ]
    return teachers.filter(pl.Series(keep, dtype=pl.Boolean))


def _teacher_names(subject: pl.DataFrame, everything: pl.DataFrame, experiments: list[str]) -> dict[str, str]:
    """{teacher path a student names: the teacher's run name} for teachers whose row is found."""
    names: dict[str, str] = {}
    teachers = everything.filter((pl.col("stage") == "teacher") & pl.col("checkpoint_uri").is_not_null())
    for t in {t for t in subject["teacher"].drop_nulls().to_list() if t}:
        for row in teachers.iter_rows(named=True):
            ckpt = row["checkpoint_uri"]
            if _same_or_inside(ckpt, t) or _same_or_inside(t, ckpt):
                run = row["trial_id"] or row["run_id"] or "teacher"
                names[t] = run if row["experiment"] in experiments else f"{row['experiment']}/{run}"
                break
    return names


def _derive(
    frame: pl.DataFrame, metric: str, base: Path | None, teacher_names: dict[str, str]
) -> pl.DataFrame:
    """Add ``teacher_views``, ``_config`` (identity), ``_flat`` (displayable config); teacher shown by name."""
    flats = [_config_of(c, base) for c in frame["config_json"].to_list()]
    teacher_views = []
    for flat, views, stage in zip(flats, frame["views"].to_list(), frame["stage"].to_list(), strict=True):
        # null distill.teacher_views: the teacher saw the student's frames (data.views)
        tv = flat.get("distill.teacher_views") if stage == "student" else None
        teacher_views.append(tv if tv is not None else (views if stage == "student" and flat else None))
    shown_teacher = [
        None if t is None else teacher_names.get(t) or display_path(t, base)
        for t in frame["teacher"].to_list()
    ]
    identity = [
        json.dumps(
            [[row.get(c) for c in CONFIG_COLUMNS], row.get("status"), flat], sort_keys=True, default=str
        )
        for row, flat in zip(frame.iter_rows(named=True), flats, strict=True)
    ]
    return frame.with_columns(
        pl.Series("teacher_views", teacher_views, dtype=pl.Int64),
        pl.Series("teacher", shown_teacher, dtype=pl.String),
        pl.Series("_config", identity, dtype=pl.String),
        pl.Series("_flat", [json.dumps(f, sort_keys=True, default=str) for f in flats], dtype=pl.String),
    )


def _merge_repeats(frame: pl.DataFrame, metric: str) -> pl.DataFrame:
    """One row per identical configuration: ``runs``, means of the measurements, ``{metric}_sd``.

    ``trial_id`` lists the merged trials; other columns are the first run's.
    """
    means = [c for c in MEAN_COLUMNS if c in frame.columns]
    firsts = [c for c in frame.columns if c not in means and c not in ("_config", "trial_id")]
    merged = frame.group_by("_config", maintain_order=True).agg(
        *[pl.col(c).mean() for c in means],
        pl.col(metric).std().alias(f"{metric}_sd"),
        pl.len().alias("runs"),
        pl.col("trial_id").drop_nulls().sort().str.join(", ").alias("trial_id"),
        *[pl.col(c).first() for c in firsts],
    )
    return merged.select(*frame.columns, f"{metric}_sd", "runs")


def _varying_keys(frames: list[pl.DataFrame]) -> list[str]:
    """Config keys whose value differs between the rows: what was searched."""
    seen: dict[str, set[str]] = {}
    for frame in frames:
        for flat in frame["_flat"].to_list():
            for key, value in json.loads(flat).items():
                seen.setdefault(key, set()).add(json.dumps(value, default=str))
    return sorted(k for k, values in seen.items() if len(values) > 1)


def _hover(row: Mapping[str, Any], metric: str, varying: list[str]) -> str:
    """A point's tooltip: its trial(s), result, and configuration."""
    runs = row.get("runs") or 1
    who = f"trial {row['trial_id']}" if runs == 1 else f"{runs} runs: {row['trial_id']}"
    if row.get("stage") in REFERENCE_STAGES:
        who = f"{row['stage']} {row.get('trial_id') or ''}".strip()
    value = _fmt(row.get(metric))
    if runs > 1 and row.get(f"{metric}_sd") is not None:
        value += f" ± {_fmt(row[f'{metric}_sd'])}"
    lines = [
        f"{who} ({row.get('experiment') or '?'})",
        f"{metric_label(metric)} {value}; {_fmt(row.get(COST))} GFLOPs; {_fmt(row.get('params_m'))} M params",
    ]
    shown = ("backbone", "views", "dataset_fps", "img_size", "refiner", "teacher", "teacher_views")
    shown += ("temperature", "w_task", "w_logit", "w_feature", "w_relation", "lr", "epochs")
    lines.append(", ".join(f"{c}={_fmt(row.get(c))}" for c in shown if row.get(c) is not None))
    flat = json.loads(row.get("_flat") or "{}")
    extra = [f"{k}={flat[k]}" for k in varying if k in flat and k not in CONFIG_KEY_COLUMNS]
    if extra:
        lines.append("searched: " + ", ".join(extra))
    return "\n".join(line for line in lines if line)


# ---- plots ---------------------------------------------------------------------------------


def _pareto_figure(
    rows: _Rows, metric: str, anchors: dict, title: str, hover_of
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


def _effect_figure(
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


def _effect_knobs(ok: pl.DataFrame, metric: str) -> list[tuple[str, str, str]]:
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


def _plots(
    rows: _Rows, metric: str, anchor_set: dict[str, Any], out: Path
) -> tuple[dict[str, Path], dict[str, bytes], dict[str, str]]:
    """The Pareto plot and one effect plot per searched knob as files.

    Returns the paths by key, the PNG bytes by stem, and the Pareto SVG (with tooltips) by stem.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    title = f"{metric_label(metric)} vs GFLOPs per query — {', '.join(rows.experiments)}"
    varying = _varying_keys([rows.frame])
    fig, hover = _pareto_figure(rows, metric, anchor_set, title, lambda row: _hover(row, metric, varying))
    paths: dict[str, Path] = {}
    images: dict[str, bytes] = {}
    paths["pareto_png"], paths["pareto_svg"], images["pareto"], svg = _save(fig, out, "pareto", hover)
    plt.close(fig)
    for knob, label, scale in _effect_knobs(rows.ok, metric):
        fig = _effect_figure(
            rows.ok.filter(pl.col(metric).is_not_null()), knob, metric, label, scale, rows.references
        )
        stem = f"effect_{knob.removeprefix('dataset_')}"
        paths[f"{stem}_png"], paths[f"{stem}_svg"], images[stem], _ = _save(fig, out, stem)
        plt.close(fig)
    return paths, images, {"pareto": svg}


# ---- tables and documents ------------------------------------------------------------------


def _table(frame: pl.DataFrame, columns: list[str], metric: str) -> tuple[list[str], list[list[str]]]:
    """Headers and cells; the metric of merged repeats reads "mean ± sd"."""
    present = [c for c in columns if c in frame.columns]

    def cell(row: dict[str, Any], column: str) -> str:
        if column == metric and (row.get("runs") or 1) > 1 and row.get(f"{metric}_sd") is not None:
            return f"{_fmt(row[column])} ± {_fmt(row[f'{metric}_sd'])}"
        return _fmt(row[column])

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


def _columns(rows: _Rows, metric: str) -> list[str]:
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


def _summary(rows: _Rows, metric: str, hv: float, reference: tuple[float, float]) -> str:
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


def _sections(rows: _Rows, metric: str, images: Mapping[str, bytes]) -> list[Section]:
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
    YAML of published points (greyed, never on the front); "default" = ``default_anchors_path()``,
    None = no anchors. ``reference`` = (metric, GFLOPs) for the hypervolume; default (0, 2 x the
    largest GFLOPs). Returns {"html", "md", "pareto_png", ...: path}.
    """
    frame, everything, out, base = _report_input(source, out_dir, experiment=experiment, metric=metric)
    anchor_set = load_anchors(default_anchors_path() if anchors == "default" else anchors)
    rows = _prepare(frame, everything, metric, base)
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

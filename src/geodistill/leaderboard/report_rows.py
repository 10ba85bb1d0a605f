"""The rows a report shows, prepared before anything is drawn (``prepare_rows``).

- The subject is the searched rows (stage "student"); teacher (stage 1) and baseline rows, and
  the teacher rows of other experiments that the students name as their teacher, are reference
  points, never on the front. A report of teachers alone has them as its subject.
- Identical configurations (equal up to the run name, seed and resources: ``RUN_ONLY_KEYS``) are
  merged into one row with ``runs`` and the metric's mean and ``{metric}_sd``: a search that
  re-ran a configuration shows it once, with its spread, not as duplicates.
- Machine paths are shown relative to a base folder (the one holding the leaderboard) or as
  ``…/`` plus their last parts; a teacher is shown by its run name when its row is found.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from geodistill.eval.names import METRIC_KEYS, metric_label
from geodistill.leaderboard.pareto import pareto_rows
from geodistill.schema import dotted

COST = "gflops"
REFERENCE_STAGES = ("teacher", "baseline")  # drawn for reference when students are reported
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
DISTILL_COLUMNS = ("temperature", "w_task", "w_logit", "w_feature", "w_relation")
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


def fmt(value: Any) -> str:
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
    for key, value in dotted(config).items():
        if _run_only(key):
            continue
        if isinstance(value, str):
            value = display_path(value, base)
        elif isinstance(value, list):
            value = [display_path(v, base) if isinstance(v, str) else v for v in value]
        flat[key] = value
    return flat


@dataclasses.dataclass
class ReportRows:
    """What one report shows, prepared once: each frame has identical configurations merged."""

    frame: pl.DataFrame  # the subject rows as read, every status (one per run)
    ok: pl.DataFrame  # merged, status ok
    plotted: pl.DataFrame  # merged, ok, with the metric and GFLOPs > 0
    stopped: pl.DataFrame  # merged, stopped early, with the metric and GFLOPs > 0: drawn hollow
    front: pl.DataFrame  # the Pareto front of ``plotted``
    references: pl.DataFrame  # merged teacher / baseline rows with the metric and GFLOPs
    experiments: list[str]


def prepare_rows(frame: pl.DataFrame, everything: pl.DataFrame, metric: str, base: Path | None) -> ReportRows:
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
    merged = merge_repeats(subject, metric)
    ok = merged.filter(pl.col("status") == "ok")
    plotted = ok.filter(usable)
    return ReportRows(
        frame=subject,
        ok=ok,
        plotted=plotted,
        stopped=merged.filter((pl.col("status") == "stopped") & usable),
        # One rule with the search and its benchmark: a stopped trial at its values then.
        front=pareto_rows(merged.filter(usable), metric, cost=COST),
        references=merge_repeats(references, metric).filter((pl.col("status") == "ok") & usable),
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
    stage1 = pl.col("stage") == "teacher"
    return frame.with_columns(
        # a stage-1 row carries the config's distillation defaults, which it never used
        *[pl.when(stage1).then(None).otherwise(pl.col(c)).alias(c) for c in DISTILL_COLUMNS],
        pl.Series("teacher_views", teacher_views, dtype=pl.Int64),
        pl.Series("teacher", shown_teacher, dtype=pl.String),
        pl.Series("_config", identity, dtype=pl.String),
        pl.Series("_flat", [json.dumps(f, sort_keys=True, default=str) for f in flats], dtype=pl.String),
    )


def merge_repeats(frame: pl.DataFrame, metric: str) -> pl.DataFrame:
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


def varying_keys(frames: list[pl.DataFrame]) -> list[str]:
    """Config keys whose value differs between the rows: what was searched."""
    seen: dict[str, set[str]] = {}
    for frame in frames:
        for flat in frame["_flat"].to_list():
            for key, value in json.loads(flat).items():
                seen.setdefault(key, set()).add(json.dumps(value, default=str))
    return sorted(k for k, values in seen.items() if len(values) > 1)


def hover_text(row: Mapping[str, Any], metric: str, varying: list[str]) -> str:
    """A point's tooltip: its trial(s), result, and configuration."""
    runs = row.get("runs") or 1
    who = f"trial {row['trial_id']}" if runs == 1 else f"{runs} runs: {row['trial_id']}"
    if row.get("stage") in REFERENCE_STAGES:
        who = f"{row['stage']} {row.get('trial_id') or ''}".strip()
    value = fmt(row.get(metric))
    if runs > 1 and row.get(f"{metric}_sd") is not None:
        value += f" ± {fmt(row[f'{metric}_sd'])}"
    lines = [
        f"{who} ({row.get('experiment') or '?'})",
        f"{metric_label(metric)} {value}; {fmt(row.get(COST))} GFLOPs"
        + (f"; {fmt(row['params_m'])} M params" if row.get("params_m") is not None else ""),
    ]
    shown = ("backbone", "views", "dataset_fps", "img_size", "refiner", "teacher", "teacher_views")
    shown += ("temperature", "w_task", "w_logit", "w_feature", "w_relation", "lr", "epochs")
    lines.append(", ".join(f"{c}={fmt(row.get(c))}" for c in shown if row.get(c) is not None))
    flat = json.loads(row.get("_flat") or "{}")
    extra = [f"{k}={flat[k]}" for k in varying if k in flat and k not in CONFIG_KEY_COLUMNS]
    if extra and row.get("stage") not in REFERENCE_STAGES:  # what the search varied: students only
        lines.append("searched: " + ", ".join(extra))
    return "\n".join(line for line in lines if line)

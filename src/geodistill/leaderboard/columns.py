"""The leaderboard's columns: one explicit Arrow schema and ``make_row``, which fills and checks a row.

Every writer (a search trial, ``geodistill train``, a baseline measurement) builds its row with
``make_row``, so a row on disk always has every column with its declared type. New columns are
added to ``SCHEMA`` as nullable: files written before them read back with nulls. ``experiment``
is the hive partition key, so files store ``FILE_SCHEMA`` (``SCHEMA`` without it) and the folder
name carries it (generic readers would otherwise disagree on its type).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from geodistill.eval.names import METRIC_KEYS, flatten_metrics
from geodistill.redact import scrub_secrets, scrub_uri

SCHEMA_VERSION = 1
STAGES = ("teacher", "student", "baseline")
STATUSES = ("ok", "failed", "stopped", "running")

_STR, _INT, _F64 = pa.string(), pa.int32(), pa.float64()
# The one counting rule for the cost columns (also the ``gflops`` field's description, and the
# report's line under its plot); published points are converted to it (conf/anchors/).
GFLOPS_RULE = (
    "GFLOPs per drone query: 1e9 floating-point operations counted by "
    "torch.utils.flop_counter.FlopCounterMode (matmuls and convolutions, attention included; "
    "one multiply-accumulate = 2 FLOPs, so GFLOPs = 2 x GMACs) at the run's own input size "
    "(img_size x img_size px), for all V views of the query (V x one frame) plus the refiner"
)
# The two compute columns. ``compute`` is the search's unit (the replay and the benchmark count
# it so, whatever the data set's size; ``rows.compute_units`` counts it); ``train_gflops`` is what
# training really spent (``rows.train_gflops``).
COMPUTE_RULE = (
    "epochs trained x gflops (GFLOPs per drone query): the search's compute unit, as the replay "
    "and the benchmark count it; independent of the training set's size (see train_gflops)"
)
TRAIN_GFLOPS_RULE = (
    "training GFLOPs spent: epochs trained x training samples per epoch x GFLOPs per sample; a "
    "sample costs 3 x the student's forward (forward + backward) plus, in stage 2, the teacher's "
    "forward, zero when its outputs come from the teacher cache (distill.cache_teacher); a "
    "sample's forward is its drone query plus its satellite image (one frame), each as gflops counts: "
    + GFLOPS_RULE
)
SCHEMA = pa.schema(
    [
        pa.field("row_key", _STR, nullable=False),  # f"{experiment}/{trial_id}/{stage}"
        pa.field("run_id", _STR),
        pa.field("trial_id", _STR),
        pa.field("experiment", _STR, nullable=False),
        pa.field("stage", _STR),  # teacher | student | baseline
        pa.field("status", _STR),  # ok | failed | stopped | running
        pa.field("error", _STR),
        pa.field("dataset_name", _STR),
        pa.field("dataset_elevation", _INT),
        pa.field("dataset_fps", _INT),
        pa.field("dataset_hash", _STR),
        pa.field("teacher", _STR),  # backbone name or checkpoint of the stage-1 model
        pa.field("backbone", _STR),
        pa.field("img_size", _INT),
        pa.field("views", _INT),
        pa.field("refiner", _STR),
        pa.field("temperature", _F64),
        pa.field("w_task", _F64),
        pa.field("w_logit", _F64),
        pa.field("w_feature", _F64),
        pa.field("w_relation", _F64),
        pa.field("lr", _F64),
        pa.field("epochs", _INT),
        *[pa.field(name, _F64) for name in METRIC_KEYS],  # percent
        pa.field("params_m", _F64),
        pa.field("gflops", _F64, metadata={"description": GFLOPS_RULE}),
        pa.field("gmacs", _F64, metadata={"description": "multiply-accumulates per drone query: gflops / 2"}),
        pa.field("flop_counter", _STR),
        pa.field("latency_ms", _F64),
        pa.field("throughput_qps", _F64),
        pa.field("device", _STR),
        pa.field("checkpoint_uri", _STR),
        pa.field("config_json", _STR),  # scrubbed of anything that looks like a secret
        pa.field("git_sha", _STR),
        pa.field("host", _STR),
        pa.field("node_id", _STR),  # the Ray node a search trial last ran on (null outside Ray)
        pa.field("compute", _F64, metadata={"description": COMPUTE_RULE}),
        pa.field("train_gflops", _F64, metadata={"description": TRAIN_GFLOPS_RULE}),
        pa.field("wall_seconds", _F64),  # seconds the trial's epochs took (recorded ones in a replay)
        pa.field("history", _STR),  # JSON [{epoch, metrics..., epoch_seconds}]: a replay table's rows
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("schema_version", _INT),
    ],
    metadata={"geodistill.schema_version": str(SCHEMA_VERSION)},
)
COLUMNS = tuple(SCHEMA.names)
# What each file holds: the partition key ``experiment`` lives in the folder name only.
FILE_SCHEMA = SCHEMA.remove(SCHEMA.get_field_index("experiment"))


def _polars_type(type_: pa.DataType) -> pl.DataType:
    """The polars dtype of one SCHEMA column (pl.from_arrow would import pandas at start-up)."""
    if pa.types.is_timestamp(type_):
        return pl.Datetime(type_.unit, type_.tz)
    return {pa.string(): pl.String(), pa.int32(): pl.Int32(), pa.float64(): pl.Float64()}[type_]


POLARS_SCHEMA = pl.Schema({f.name: _polars_type(f.type) for f in SCHEMA})
POLARS_FILE_SCHEMA = pl.Schema({f.name: _polars_type(f.type) for f in FILE_SCHEMA})


@cache
def _git_sha() -> str | None:
    """HEAD of the git checkout this package runs from (None outside a checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", sha) else None


def _coerce(name: str, value: Any, type_: pa.DataType) -> Any:
    """Check one value against its column type; ints widen to floats, numpy scalars unwrap."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy / torch scalar
        value = value.item()
    if pa.types.is_floating(type_):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"leaderboard column {name!r} takes a number, got {value!r}")
        return float(value)
    if pa.types.is_integer(type_):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"leaderboard column {name!r} takes an integer, got {value!r}")
        return value
    if pa.types.is_timestamp(type_):
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if not isinstance(value, datetime):
            raise ValueError(f"leaderboard column {name!r} takes a datetime, got {value!r}")
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        raise ValueError(f"leaderboard column {name!r} takes a string, got {type(value).__name__}")
    return value


def make_row(**fields: Any) -> dict[str, Any]:
    """One leaderboard row with every column: given fields checked, the rest null or defaulted.

    Defaults: ``status`` "ok", ``created_at`` now (UTC), ``host``, ``git_sha``, ``schema_version``,
    ``row_key`` = f"{experiment}/{trial_id}/{stage}". ``config_json`` may be a dict or a JSON
    string; it is stored scrubbed of secrets, and the URIs in ``teacher`` and ``checkpoint_uri``
    without credential parameters. An unknown field raises ValueError naming it.
    """
    unknown = sorted(set(fields) - set(COLUMNS))
    if unknown:
        raise ValueError(f"unknown leaderboard field(s): {', '.join(unknown)}")
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(status="ok", host=socket.gethostname(), git_sha=_git_sha(), schema_version=SCHEMA_VERSION)
    row["created_at"] = datetime.now(UTC)
    row.update({k: v for k, v in fields.items() if v is not None or k in ("git_sha", "host")})
    cfg = row["config_json"]
    if cfg is not None:
        if isinstance(cfg, str):
            try:
                cfg = json.loads(cfg)
            except json.JSONDecodeError as err:
                raise ValueError(f"leaderboard field 'config_json' is not valid JSON: {err}") from None
        row["config_json"] = json.dumps(scrub_secrets(cfg), sort_keys=True, default=str)
    for name in ("teacher", "checkpoint_uri"):  # a store's URI: its options kept, its credentials not
        row[name] = scrub_uri(row[name])
    for name in ("experiment", "stage"):
        if not row[name]:
            raise ValueError(f"leaderboard row needs {name!r}")
    if row["stage"] not in STAGES:
        raise ValueError(f"leaderboard stage must be one of {', '.join(STAGES)}, got {row['stage']!r}")
    if row["status"] not in STATUSES:
        raise ValueError(f"leaderboard status must be one of {', '.join(STATUSES)}, got {row['status']!r}")
    if row["row_key"] is None:
        if row["trial_id"] is None:
            raise ValueError("leaderboard row needs 'trial_id' (or an explicit 'row_key')")
        row["row_key"] = f"{row['experiment']}/{row['trial_id']}/{row['stage']}"
    return {f.name: _coerce(f.name, row[f.name], f.type) for f in SCHEMA}


def complete_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A full row (from ``make_row``) re-checked, or a partial one completed by ``make_row``."""
    if set(row) != set(COLUMNS):
        return make_row(**row)
    return {f.name: _coerce(f.name, row[f.name], f.type) for f in SCHEMA}


def metrics_to_columns(evaluate_result: Mapping[str, Any]) -> dict[str, float]:
    """``evaluate()``'s {"drone->satellite": {"recall@1": ..}, ..} -> {"d2s_recall1": .., ...}.

    Already-flat dicts (``d2s_*`` keys, as training reports them) pass through, filtered to the
    metric columns.
    """
    if any(k in METRIC_KEYS for k in evaluate_result):
        return {k: float(v) for k, v in evaluate_result.items() if k in METRIC_KEYS}
    return {k: float(v) for k, v in flatten_metrics(evaluate_result).items() if k in METRIC_KEYS}

"""A replay backend: every trial of a real search answered from a recorded table, on a simulated clock.

``geodistill search ... --replay TABLE.parquet`` runs the search itself (driver, sampler,
scheduler or rung rule, concurrency, leaderboard rows, report) while each trial, instead of
training, reports the recorded per-epoch metrics of its configuration, each epoch ending its
recorded seconds times ``--replay-speed`` after the one before (the simulated clock). Tables are
one row per (configuration, epoch): knob columns named by their config key with ``__`` for ``.``
(``model__backbone``), ``epoch``, the metric columns, ``gflops`` and ``epoch_seconds``, as
``benchmarks/record_search_table.py`` writes them and ``write_replay_table`` writes a finished
search's (with its rows' ``params_m``, ``gmacs`` and ``flop_counter``, optional columns). A
replayed trial takes its cost from the table and builds no model. The space is checked against
the table before anything runs (``check_space``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geodistill.errors import ConfigError

REQUIRED = ("epoch", "gflops", "epoch_seconds")
# The leaderboard's other cost columns a table may hold (a finished search's does): a replayed
# trial's row takes them from the table, or leaves them null (nothing is counted in a replay).
COST = ("params_m", "gmacs", "flop_counter")


def column(key: str) -> str:
    """A config key's column in a replay table (``model.backbone`` -> ``model__backbone``)."""
    return key.replace(".", "__")


class ReplayTable:
    """A recorded table: knob values -> per-epoch metric rows, GFLOPs per query, epoch seconds."""

    def __init__(self, path: str | Path) -> None:
        import polars as pl

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"--replay: no table at {path}")
        try:
            frame = pl.read_parquet(path)
        except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to fix
            raise ConfigError(f"--replay: {path} is not a Parquet table ({type(err).__name__})") from None
        missing = [c for c in REQUIRED if c not in frame.columns]
        if missing:
            raise ConfigError(f"--replay: {path.name} has no {', '.join(missing)} column (one row per epoch)")
        self.path, self.knobs = path, [c for c in frame.columns if "__" in c]
        if not self.knobs:
            raise ConfigError(f"--replay: {path.name} has no knob columns (named like model__backbone)")
        counts = frame.group_by(self.knobs).agg(pl.len().alias("n"), pl.col("epoch").max().alias("last"))
        if int(counts["last"].max()) < 2 or (counts["n"] != counts["last"]).any():
            raise ConfigError(
                f"--replay: {path.name} needs one row per epoch (1, 2, ...) of every configuration; "
                "a table of final values cannot be replayed"
            )
        # Metrics: the numeric columns that are not knobs or costs (a note or a run's name is not one).
        known = (*self.knobs, *REQUIRED, *COST, "config_id")
        self.metrics = [c for c in frame.columns if c not in known and frame.schema[c].is_numeric()]
        self.grid = {k: sorted(frame[k].unique().to_list()) for k in self.knobs}
        self.rows: dict[tuple, list[dict[str, Any]]] = {}
        for key, rows in frame.sort("epoch").group_by(self.knobs, maintain_order=True):
            self.rows[tuple(key)] = rows.to_dicts()

    def key_of(self, values: Mapping[str, Any]) -> tuple:
        """The table key of a trial whose config has these dotted ``values`` for the knobs."""
        return tuple(_same_type(values[k.replace("__", ".")], self.grid[k]) for k in self.knobs)

    def history(self, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        key = self.key_of(values)
        if key not in self.rows:
            raise ConfigError(f"--replay: {self.path.name} has no configuration {dict(zip(self.knobs, key))}")
        return self.rows[key]

    def cost(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """A configuration's cost columns as recorded: ``gflops``, and ``COST``'s (None where the
        table has no such column)."""
        first = self.history(values)[0]
        return {"gflops": float(first["gflops"]), **{k: first.get(k) for k in COST}}

    def check_space(self, space: Any, metric: str, first: Mapping[str, Any]) -> None:
        """One line (``ConfigError``) unless every trial of ``space`` is in the table.

        Every searched knob must be a column with each of its choices in the table's grid; every
        knob column not searched must hold the value ``first`` (a trial's config) gives it.
        """
        if metric not in self.metrics:
            raise ConfigError(
                f"--replay: metric {metric} is not a column of {self.path.name} ({', '.join(self.metrics)})"
            )
        searched = set()
        for p in space.params:
            name = column(p.name)
            if name not in self.grid:
                raise ConfigError(f"--replay: {self.path.name} has no column for the knob {p.name}")
            if p.type != "choice":
                raise ConfigError(
                    f"--replay: knob {p.name} must be a choice of the table's values {self.grid[name]}"
                )
            outside = [v for v in p.choices if _same_type(v, self.grid[name]) not in self.grid[name]]
            if outside:
                raise ConfigError(
                    f"--replay: {p.name} values {outside} are outside the table's grid {self.grid[name]}"
                )
            searched.add(name)
        for name in self.knobs:
            value = first.get(name.replace("__", "."))
            if name not in searched and _same_type(value, self.grid[name]) not in self.grid[name]:
                raise ConfigError(
                    f"--replay: the space fixes {name.replace('__', '.')}={value!r}, outside the table's "
                    f"grid {self.grid[name]}"
                )


def _same_type(value: Any, grid: list) -> Any:
    """``value`` as the grid's type (a YAML 4 against a recorded 4.0)."""
    if grid and isinstance(grid[0], float) and isinstance(value, int | float):
        return float(value)
    if grid and isinstance(grid[0], int) and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@functools.lru_cache(maxsize=4)
def load_table(path: str) -> ReplayTable:
    """One table per process (trials of one search share it)."""
    return ReplayTable(path)


def config_values(cfg: Any, knobs: list[str]) -> dict[str, Any]:
    """The dotted knob values of a ``RunConfig``."""
    values = {}
    for name in knobs:
        node: Any = cfg
        for part in name.split("__"):
            node = getattr(node, part)
        values[name.replace("__", ".")] = node
    return values


class ReplayFit:
    """``fit(cfg, *, context)`` answered from the table: a trial's objective under ``--replay``."""

    def __init__(self, table: str, speed: float) -> None:
        self.table, self.speed = str(table), speed

    def __call__(self, cfg: Any, *, context: Any) -> dict[str, float]:
        table = load_table(self.table)
        history = table.history(config_values(cfg, table.knobs))
        metrics: dict[str, float] = {}
        # Epoch e ends at start + speed x (recorded seconds of epochs 1..e): the time a report
        # takes (Tune waits for the driver) comes out of the next sleep instead of adding up, so
        # concurrent trials end in the order their recorded seconds give.
        deadline = time.monotonic()
        for row in history:
            if self.speed > 0:
                deadline += float(row["epoch_seconds"]) * self.speed
                time.sleep(max(0.0, deadline - time.monotonic()))
            epoch = int(row["epoch"])
            metrics = {m: float(row[m]) for m in table.metrics if row[m] is not None}
            metrics.update(
                epoch=epoch, epoch_seconds=float(row["epoch_seconds"]), gflops=float(row["gflops"])
            )
            context.report(metrics)
            if context.should_stop(epoch, metrics) or epoch >= cfg.train.epochs:
                break
        return metrics


def write_replay_table(rows: Any, out: str | Path, knobs: list[str]) -> int:
    """A finished search's leaderboard rows as a replay table (their ``history`` per epoch); the rows written.

    ``knobs`` are the dotted config keys the search sampled (read from each row's config). A
    configuration trained twice keeps its longest history; one stopped early replays as stopped.
    """
    import json

    import polars as pl

    records: list[dict[str, Any]] = []
    seen: dict[tuple, int] = {}
    for row in rows.sort("epochs", descending=True, nulls_last=True).iter_rows(named=True):
        history = json.loads(row.get("history") or "[]")
        config = (
            json.loads(row["config_json"])
            if isinstance(row.get("config_json"), str)
            else row.get("config_json")
        )
        if not history or not config:
            continue
        values = {}
        for key in knobs:
            node: Any = config
            for part in key.split("."):
                node = node[part]
            values[column(key)] = node
        if tuple(values.values()) in seen:
            continue
        seen[tuple(values.values())] = len(records)
        for epoch in history:
            counted = {k: row[k] for k in COST if row.get(k) is not None}  # null in a replayed search's
            records.append({**values, **epoch, "gflops": row["gflops"], **counted})
    if not records:
        raise ConfigError(
            "no trial with a per-epoch history to write (searches before this version kept none)"
        )
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(records).write_parquet(out)
    return len(records)

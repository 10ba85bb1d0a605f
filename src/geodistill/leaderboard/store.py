"""The leaderboard store: one Parquet file per write under ``<root>/experiment=<name>/``, deduplicating readers.

Many trials on many nodes finish at once and object stores have no locks, so each writer writes
its own file to a hidden temporary name and renames it into place: a reader sees a whole file or
nothing. Rows carry ``row_key`` = ``experiment/trial_id/stage``; duplicates a resumed search or a
half-done compaction leaves are removed by the readers (latest ``created_at`` wins). Anything
under the root that is not a readable leaderboard file is reported with a ``LeaderboardWarning``
and left alone. The columns live in ``columns.py``; docs/design.md ("Leaderboard storage") says
why the layout is what it is.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from geodistill.errors import UserError, one_line
from geodistill.leaderboard.columns import (
    COLUMNS,
    FILE_SCHEMA,
    POLARS_FILE_SCHEMA,
    POLARS_SCHEMA,
    SCHEMA,
    complete_row,
)

DEFAULT_ROOT = "runs/leaderboard"
ROOT_ENV = "GEODISTILL_LEADERBOARD"

_PART_PREFIX, _PART_SUFFIX, _TMP_PREFIX = "part-", ".parquet", ".tmp-"
_POLARS_SCHEMES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "hf", "http", "https"}


class LeaderboardError(UserError):
    """The leaderboard cannot be written or read (disk full, permissions, bad root or name)."""


class LeaderboardWarning(UserWarning):
    """A file or folder under the leaderboard root is not a readable leaderboard file (left alone)."""


def _hidden(name: str) -> bool:
    """In-flight temporaries and markers: skipped silently by this store and by pyarrow/pandas."""
    return name.startswith((".", "_"))


def default_root() -> str:
    """``$GEODISTILL_LEADERBOARD`` if set, else ``runs/leaderboard`` (relative to the cwd)."""
    return os.environ.get(ROOT_ENV) or DEFAULT_ROOT


def dedup_latest(frame: pl.LazyFrame) -> pl.LazyFrame:
    """One row per ``row_key``: the one with the latest ``created_at`` (rows come out unordered).

    A hash group-by with an arg-max gather, faster than sort + unique (measured: the
    leaderboard section of docs/evidence.md).
    """
    latest = pl.col("created_at").arg_max()
    return frame.group_by("row_key").agg(pl.all().get(latest)).select(COLUMNS)


def _conform(table: pa.Table, schema: pa.Schema = SCHEMA) -> pa.Table:
    """Cast a table read from any schema version to ``schema``: missing columns null, extra dropped."""
    columns = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


class Leaderboard:
    """A leaderboard dataset at ``root``: a local directory or a ``pyarrow.fs`` URI (``s3://...``)."""

    def __init__(self, root: str | Path | None = None) -> None:
        root = str(root if root is not None else default_root())
        if "://" in root and not root.startswith("file://"):
            try:
                self.fs, self.base = pafs.FileSystem.from_uri(root)
            except (pa.ArrowException, OSError, ValueError) as err:
                raise LeaderboardError(f"cannot open leaderboard {root}: {one_line(err)}") from None
            self.scheme = root.split("://", 1)[0]
            self.local = False
        else:
            path = Path(root.removeprefix("file://")).expanduser().absolute()
            self.fs, self.base, self.scheme, self.local = pafs.LocalFileSystem(), str(path), "", True
        self.root = root
        self._footers_ok: dict[tuple[str, int | None, Any], bool] = {}  # (path, size, mtime) -> readable
        self._corrupt: set[str] = set()  # files whose footer parsed but whose data did not

    def __repr__(self) -> str:
        return f"Leaderboard({self.root!r})"

    # ---- paths -------------------------------------------------------------------------------
    @staticmethod
    def partition_name(experiment: str) -> str:
        """``experiment=<percent-quoted name>``: '/' and '=' are quoted, so no name leaves its folder."""
        if not experiment:
            raise LeaderboardError("experiment name must not be empty")
        return "experiment=" + quote(experiment, safe="-_+,@.")

    def _join(self, *parts: str) -> str:
        return "/".join([self.base.rstrip("/"), *parts])

    def _uri(self, path: str) -> str:
        return path if self.local else f"{self.scheme}://{path}"

    def _list(self, path: str) -> list[pafs.FileInfo]:
        try:
            return self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        except (OSError, pa.ArrowException) as err:
            raise LeaderboardError(f"cannot list leaderboard {self.root}: {one_line(err)}") from None

    def _warn(self, path: str, why: str) -> None:
        warnings.warn(
            f"leaderboard {self.root}: ignoring {self._uri(path)}: {why}", LeaderboardWarning, stacklevel=3
        )

    def experiments(self) -> list[str]:
        """Experiment names that have a partition directory (sorted); anything else visible at the
        top of the root is reported with a LeaderboardWarning."""
        names = []
        for info in self._list(self.base):
            if _hidden(info.base_name):
                continue
            if info.type == pafs.FileType.Directory and info.base_name.startswith("experiment="):
                names.append(unquote(info.base_name.split("=", 1)[1]))
            else:
                self._warn(info.path, "not an experiment=<name> folder of this leaderboard")
        return sorted(names)

    def _readable(self, info: pafs.FileInfo) -> str | None:
        """None if ``info`` is a readable leaderboard file (its footer parses and holds the key
        columns), else why not. Cached per (path, size, mtime): a listing re-reads no footer."""
        key = (info.path, info.size, info.mtime_ns if self.local else info.mtime)
        if self._footers_ok.get(key):
            return None
        try:
            with self.fs.open_input_file(info.path) as fh:
                names = set(pq.read_schema(fh).names)
        except (OSError, pa.ArrowException) as err:
            return f"not a readable Parquet file ({one_line(err)})"
        missing = {"row_key", "created_at"} - names
        if missing:
            return f"a Parquet file without the leaderboard column(s) {', '.join(sorted(missing))}"
        self._footers_ok[key] = True
        return None

    def files(self, experiment: str | None = None) -> list[str]:
        """Readable data files (``part-*.parquet``) of ``experiment`` (or all experiments).

        Hidden names (``.``/``_``: the writer's in-flight temporaries) are skipped silently;
        every other file that is not a readable leaderboard file (foreign, corrupt, truncated)
        is skipped with a LeaderboardWarning naming it.
        """
        return [path for _, paths in self._files_by_experiment(experiment) for path in paths]

    def _files_by_experiment(self, experiment: str | None = None) -> list[tuple[str, list[str]]]:
        names = [experiment] if experiment is not None else self.experiments()
        out = []
        for name in names:
            paths = []
            for info in sorted(self._list(self._join(self.partition_name(name))), key=lambda i: i.path):
                if _hidden(info.base_name):
                    continue
                if info.type != pafs.FileType.File:
                    self._warn(info.path, "a folder inside a partition (not written by this store)")
                    continue
                if not (info.base_name.startswith(_PART_PREFIX) and info.base_name.endswith(_PART_SUFFIX)):
                    self._warn(info.path, f"not a {_PART_PREFIX}*{_PART_SUFFIX} leaderboard file")
                    continue
                why = self._readable(info)
                if why is not None:
                    self._warn(info.path, why)
                    continue
                paths.append(info.path)
            out.append((name, paths))
        return out

    # ---- writing -----------------------------------------------------------------------------
    def check_writable(self, experiment: str) -> None:
        """Fail now, in one line, if rows of ``experiment`` could not be written later.

        Searches and training runs call this before they start, so an unwritable root costs a
        second, not the compute of a whole search. Writes and removes a hidden probe file.
        """
        directory = self._join(self.partition_name(experiment))
        probe = f"{directory}/{_TMP_PREFIX}probe-{uuid.uuid4().hex}"  # hidden: readers skip it
        try:
            self.fs.create_dir(directory, recursive=True)
            with self.fs.open_output_stream(probe) as out:
                out.write(b"geodistill")
            self.fs.delete_file(probe)
        except (OSError, pa.ArrowException) as err:
            raise LeaderboardError(f"cannot write to leaderboard {self.root}: {one_line(err)}") from None

    def write(self, rows: Iterable[Mapping[str, Any]]) -> str:
        """Write ``rows`` as one new file per experiment they name; returns the (last) file path.

        Rows are completed with ``make_row`` (so plain dicts of known fields work). The file
        appears whole or not at all; on failure (disk full, no permission) the temporary file is
        removed and a one-line LeaderboardError is raised.
        """
        rows = [complete_row(r) for r in rows]
        if not rows:
            raise ValueError("Leaderboard.write needs at least one row")
        by_experiment: dict[str, list[dict]] = {}
        for row in rows:
            by_experiment.setdefault(row["experiment"], []).append(row)
        path = ""
        for experiment, group in by_experiment.items():
            table = pa.Table.from_pylist(group, schema=SCHEMA).drop_columns(["experiment"])
            path = self._write_table(experiment, table)
        return path

    def _write_table(self, experiment: str, table: pa.Table) -> str:
        """Atomically publish ``table`` as a new ``part-<uuid>.parquet`` of ``experiment``."""
        directory = self._join(self.partition_name(experiment))
        name = uuid.uuid4().hex
        final = f"{directory}/{_PART_PREFIX}{name}{_PART_SUFFIX}"
        # Local: a hidden temporary then a rename. Object stores: the PUT of the final key is atomic.
        # The temporary has no .parquet suffix either, so `**/*.parquet` globs (polars, DuckDB) skip it.
        target = f"{directory}/{_TMP_PREFIX}{name}" if self.local else final
        try:
            self.fs.create_dir(directory, recursive=True)
            pq.write_table(table, target, filesystem=self.fs, compression="zstd")
            if self.local:
                os.replace(target, final)  # atomic within one directory
        except (OSError, pa.ArrowException) as err:
            if self.local:
                try:
                    os.unlink(target)
                except OSError:
                    pass
            raise LeaderboardError(f"cannot write to leaderboard {self.root}: {one_line(err)}") from None
        return self._uri(final)

    # ---- reading -----------------------------------------------------------------------------
    def _lazy(self, groups: list[tuple[str, list[str]]]) -> pl.LazyFrame:
        """All rows of ``groups`` ((experiment, files) pairs), ``experiment`` taken from the folder."""
        frames = [self._lazy_partition(name, files) for name, files in groups if files]
        if not frames:
            return pl.LazyFrame(schema=POLARS_SCHEMA)
        return pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]

    def _lazy_partition(self, experiment: str, files: list[str]) -> pl.LazyFrame:
        if not self.local and (self.scheme not in _POLARS_SCHEMES or "?" in self.root):
            # A file system polars cannot open itself, or a URI whose pyarrow options (say an
            # S3-compatible endpoint_override) polars would not see: read through pyarrow.fs (eagerly).
            tables = []
            for path in files:
                try:
                    tables.append(_conform(pq.read_table(path, filesystem=self.fs), FILE_SCHEMA))
                except (OSError, pa.ArrowException) as err:
                    raise LeaderboardError(f"cannot read {self._uri(path)}: {one_line(err)}") from None
            frame = pl.DataFrame(pa.concat_tables(tables)).lazy()
        else:
            frame = pl.scan_parquet(
                [self._uri(f) for f in files],
                schema=POLARS_FILE_SCHEMA,
                missing_columns="insert",  # files from before a column was added
                extra_columns="ignore",  # files from a newer writer (or an old one that stored `experiment`)
                hive_partitioning=False,  # the key comes from the folder we listed, below
                glob=False,
            )
        return frame.with_columns(pl.lit(experiment, dtype=pl.String).alias("experiment")).select(COLUMNS)

    def _collect(self, groups: list[tuple[str, list[str]]], build) -> pl.DataFrame:
        """``build(self._lazy(groups)).collect()``; a file whose footer parsed but whose data does
        not (corrupt pages) is found by reading each file alone, reported, and left out."""
        try:
            return build(self._lazy(groups)).collect()
        except (OSError, pl.exceptions.PolarsError):
            bad = set()
            for name, files in groups:
                for path in files:
                    try:
                        self._lazy([(name, [path])]).collect()
                    except (OSError, pl.exceptions.PolarsError) as err:
                        if self.fs.get_file_info(path).is_file:  # a vanished file is not corrupt
                            self._warn(path, f"not a readable Parquet file ({one_line(err)})")
                            bad.add(path)
            self._corrupt |= bad
            if not bad:
                raise
            groups = [(name, [f for f in files if f not in bad]) for name, files in groups]
            return build(self._lazy(groups)).collect()

    def scan(self, experiment: str | None = None, *, dedup: bool = True) -> pl.LazyFrame:
        """A lazy frame over the visible files, one row per ``row_key`` (latest ``created_at``),
        in no particular order.

        The file list is taken now; collect soon (or use ``read``, which retries if a concurrent
        compaction removed a listed file in between).
        """
        frame = self._lazy(self._files_by_experiment(experiment))
        return dedup_latest(frame) if dedup else frame

    def read(self, experiment: str | None = None, *, retries: int = 5) -> pl.DataFrame:
        """``scan(experiment).collect()`` sorted by (created_at, row_key), re-listing files if a
        compaction removed one mid-read."""
        for attempt in range(retries + 1):
            groups = self._files_by_experiment(experiment)
            try:
                return self._collect(groups, lambda f: dedup_latest(f).sort("created_at", "row_key"))
            except (OSError, pl.exceptions.PolarsError) as err:
                files = [f for _, paths in groups for f in paths]
                vanished = any(not self.fs.get_file_info(f).is_file for f in files)
                if not vanished or attempt == retries:
                    raise LeaderboardError(f"cannot read leaderboard {self.root}: {one_line(err)}") from None
        raise AssertionError("unreachable")

    def keys(self, experiment: str | None = None) -> set[str]:
        """``row_key`` values present (a resumed search skips these)."""
        groups = self._files_by_experiment(experiment)
        return set(self._collect(groups, lambda f: f.select("row_key").unique())["row_key"].to_list())

    # ---- maintenance -------------------------------------------------------------------------
    def compact(self, experiment: str) -> tuple[int, int]:
        """Merge an experiment's files into one; returns (files merged, rows kept).

        The merged file (deduplicated, latest row per key) is published first, then the old
        files are removed: a reader in between sees each row twice and dedups it; files written
        after the listing are left alone. Nothing is lost if this stops at any point.
        """
        groups = self._files_by_experiment(experiment)
        files = groups[0][1]
        if len(files) <= 1:
            return len(files), (len(self.read(experiment)) if files else 0)
        merged = self._collect(groups, lambda f: dedup_latest(f).sort("created_at", "row_key"))
        table = _conform(merged.to_arrow(), FILE_SCHEMA)
        self._write_table(experiment, table)
        for path in files:
            if path in self._corrupt:
                continue  # reported and left for a person to look at, never deleted
            try:
                self.fs.delete_file(path)
            except FileNotFoundError:
                pass  # a concurrent compaction removed it already
            except (OSError, pa.ArrowException) as err:
                raise LeaderboardError(f"cannot remove {path} after compaction: {one_line(err)}") from None
        return len(files), table.num_rows

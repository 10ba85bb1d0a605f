"""Leaderboard store: atomic files, concurrent writers, killed writers, dedup, evolution (rows: test_columns.py)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from geodistill.leaderboard import (
    COLUMNS,
    FILE_SCHEMA,
    SCHEMA,
    Leaderboard,
    LeaderboardError,
    LeaderboardWarning,
    make_row,
)


def row(trial: str, experiment: str = "exp", stage: str = "student", **fields) -> dict:
    return make_row(experiment=experiment, trial_id=trial, stage=stage, **fields)


def test_write_scan_dedup_latest_and_keys(tmp_path):
    lb = Leaderboard(tmp_path / "lb")
    assert lb.read().height == 0 and lb.keys() == set()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    lb.write([row(str(i), d2s_recall1=float(i), created_at=t0) for i in range(3)])
    # A resumed trial writes its key again, later: the newer row wins; an older re-write loses.
    lb.write([row("1", d2s_recall1=99.0, created_at=t0 + timedelta(seconds=5))])
    lb.write([row("2", d2s_recall1=-1.0, created_at=t0 - timedelta(seconds=5))])
    lb.write([row("0", experiment="other", stage="teacher")])
    assert len(lb.files()) == 4 and lb.experiments() == ["exp", "other"]
    df = lb.read("exp")
    assert dict(zip(df["row_key"], df["d2s_recall1"])) == {
        "exp/0/student": 0.0,
        "exp/1/student": 99.0,
        "exp/2/student": 2.0,
    }
    assert lb.scan(dedup=False).collect().height == 6
    assert lb.keys() == {"exp/0/student", "exp/1/student", "exp/2/student", "other/0/teacher"}
    assert lb.keys("other") == {"other/0/teacher"}
    # Files sit in a hive partition, are whole Parquet files with the explicit schema.
    for path in lb.files():
        assert Path(path).parent.name in ("experiment=exp", "experiment=other")
        assert pq.read_schema(path).equals(FILE_SCHEMA, check_metadata=False)


def test_experiment_names_cannot_escape_the_root(tmp_path):
    lb = Leaderboard(tmp_path / "lb")
    lb.write([row("0", experiment="../evil/x"), row("0", experiment=".hidden")])
    assert sorted(p.name for p in (tmp_path / "lb").iterdir()) == [
        "experiment=..%2Fevil%2Fx",
        "experiment=.hidden",
    ]
    assert lb.experiments() == ["../evil/x", ".hidden"]
    assert lb.keys() == {"../evil/x/0/student", ".hidden/0/student"}


def test_old_files_without_new_columns_and_newer_files_with_extra_columns_read(tmp_path):
    lb = Leaderboard(tmp_path)
    part = tmp_path / "experiment=exp"
    part.mkdir()
    # A file from "schema 0": no cost columns, no schema_version.
    old = pa.table(
        {
            "row_key": ["exp/old/student"],
            "experiment": ["exp"],
            "stage": ["student"],
            "d2s_recall1": [12.5],
            "created_at": pa.array([datetime(2025, 1, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(old, part / "part-old.parquet")
    # A file from a newer writer with an extra column.
    new = pa.Table.from_pylist([row("new")], schema=SCHEMA).append_column("future_col", pa.array([1.0]))
    pq.write_table(new, part / "part-new.parquet")
    df = lb.read()
    assert df.columns == list(COLUMNS)
    old_row = df.filter(pl.col("row_key") == "exp/old/student").row(0, named=True)
    assert old_row["d2s_recall1"] == 12.5 and old_row["gflops"] is None and old_row["schema_version"] is None
    assert lb.compact("exp") == (2, 2)
    assert lb.read().sort("row_key")["row_key"].to_list() == ["exp/new/student", "exp/old/student"]


def test_hidden_temporary_skipped_silently_stray_file_reported(tmp_path):
    lb = Leaderboard(tmp_path)
    lb.write([row("a")])
    part = tmp_path / "experiment=exp"
    (part / ".tmp-123.parquet").write_bytes(b"PAR1 half written")
    (part / "notes.txt").write_text("hello")
    with pytest.warns(LeaderboardWarning, match=r"notes\.txt") as caught:
        assert lb.read()["row_key"].to_list() == ["exp/a/student"]
    assert not any(".tmp-123" in str(w.message) for w in caught)


_WRITER = """
import sys
from geodistill.leaderboard import Leaderboard, make_row
worker, batches, per = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
lb = Leaderboard(sys.argv[1])
for b in range(batches):
    lb.write([make_row(experiment="race", trial_id=f"w{worker}-{b}-{i}", stage="student",
                       d2s_recall1=float(i)) for i in range(per)])
"""


@pytest.mark.slow  # end to end: the second tier
def test_eight_concurrent_writers_leave_exactly_800_rows(tmp_path):
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(w), "10", "10"]) for w in range(8)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * 8
    lb = Leaderboard(tmp_path)
    files = lb.files()
    assert len(files) == 80
    for path in files:
        assert pq.read_metadata(path).num_rows == 10  # every file whole
    df = lb.read("race")
    assert df.height == 800 and df["row_key"].n_unique() == 800
    assert not list((tmp_path / "experiment=race").glob(".tmp-*"))


_LIMITED_WRITER = """
import resource, signal, sys
from geodistill.leaderboard import Leaderboard, LeaderboardError, make_row
mode = sys.argv[2]
rows = [make_row(experiment="exp", trial_id=str(i), stage="student", config_json={"blob": "x" * 2000})
        for i in range(200)]
lb = Leaderboard(sys.argv[1])
lb.write(rows[:1])  # a small file that fits
# CPython ignores SIGXFSZ: a write past the limit then fails with EFBIG, like a full disk. With the
# default action restored the kernel kills the process in the middle of that write instead.
if mode == "kill":
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    lb.write(rows)
except LeaderboardError as err:
    print("ERR:", err)
    sys.exit(3)
"""


def test_writer_killed_mid_write_leaves_no_visible_partial_file(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", _LIMITED_WRITER, str(tmp_path), "kill"], capture_output=True, timeout=60
    )
    assert proc.returncode < 0  # killed by a signal, mid-write
    part = tmp_path / "experiment=exp"
    assert len(list(part.glob(".tmp-*"))) == 1  # the half-written temporary is left behind...
    lb = Leaderboard(tmp_path)
    assert len(lb.files()) == 1 and lb.read()["row_key"].to_list() == ["exp/0/student"]  # ...but unseen
    assert lb.compact("exp") == (1, 1)


def test_disk_full_is_one_line_and_leaves_nothing(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", _LIMITED_WRITER, str(tmp_path), "ignore"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    msg = proc.stdout.strip()
    assert msg.startswith(f"ERR: cannot write to leaderboard {tmp_path}: ") and "\n" not in msg
    part = tmp_path / "experiment=exp"
    assert not list(part.glob(".tmp-*"))
    assert Leaderboard(tmp_path).read().height == 1


def test_unwritable_root_is_a_leaderboard_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(LeaderboardError, match=r"^cannot write to leaderboard .*file/lb: ") as err:
        Leaderboard(blocker / "lb").write([row("a")])
    assert "\n" not in str(err.value)


def test_compaction_is_atomic_for_readers_and_keeps_every_row(tmp_path):
    lb = Leaderboard(tmp_path)
    for i in range(20):
        lb.write([row(f"t{i}", d2s_recall1=float(i)), row(f"t{i % 5}", d2s_recall1=100.0 + i)])
    before = lb.read().sort("row_key")
    assert before.height == 20
    # A reader that lists files before the compaction and one after: both see the same rows.
    early = lb.scan()
    merged, kept = lb.compact("exp")
    assert (merged, kept) == (20, 20) and len(lb.files()) == 1
    assert lb.read().sort("row_key").equals(before)
    with pytest.raises((pl.exceptions.PolarsError, OSError)):  # the old listing points at removed files
        early.collect()
    # The moment between publishing the merged file and removing old ones: duplicates, deduped.
    lb.write([row("t3", d2s_recall1=7.0)])
    merged_file = lb.files()[0]
    copy = Path(merged_file).with_name("part-copy.parquet")
    copy.write_bytes(Path(merged_file).read_bytes())
    df = lb.read()
    assert df.height == 20 and df.filter(pl.col("row_key") == "exp/t3/student")["d2s_recall1"].item() == 7.0


def test_read_retries_when_a_compaction_removes_listed_files(tmp_path):
    lb = Leaderboard(tmp_path)
    for i in range(6):
        lb.write([row(f"t{i}")])

    class Racing(Leaderboard):
        compacted = False

        def files(self, experiment=None):
            listed = super().files(experiment)
            if not Racing.compacted:
                Racing.compacted = True
                Leaderboard(tmp_path).compact("exp")  # runs between listing and reading
            return listed

    assert Racing(tmp_path).read().height == 6


def test_object_store_uri_writes_by_single_put_and_reads_back():
    """A pyarrow.fs URI (the in-memory mock store): no temporary names, no renames."""
    lb = Leaderboard("mock:///board")
    assert not lb.local and lb.base == "board"
    lb.write([row("a", d2s_recall1=1.0)])
    lb.write([row("a", d2s_recall1=2.0, created_at=datetime.now(UTC) + timedelta(seconds=1)), row("b")])
    files = lb.files()
    assert len(files) == 2 and all(f.startswith("board/experiment=exp/part-") for f in files)
    assert dict(zip(*lb.read().select("row_key", "d2s_recall1"))) == {
        "exp/a/student": 2.0,
        "exp/b/student": None,
    }
    assert lb.compact("exp") == (2, 2) and len(lb.files()) == 1
    assert lb.keys() == {"exp/a/student", "exp/b/student"}


def _plant_bad_files(root: Path, good: Path) -> dict[str, Path]:
    """A corrupt, a truncated and a foreign Parquet file, a stray text file and a stray folder."""
    part = root / "experiment=exp"
    bad = {
        "corrupt": part / "part-corrupt.parquet",
        "truncated": part / "part-truncated.parquet",
        "foreign": part / "part-foreign.parquet",
        "stray": part / "readme.md",
        "top": root / "notes.txt",
    }
    bad["corrupt"].write_bytes(b"not parquet at all")
    bad["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    pq.write_table(pa.table({"x": [1, 2]}), bad["foreign"])
    bad["stray"].write_text("hello")
    bad["top"].write_text("hello")
    (part / ".tmp-inflight").write_bytes(b"PAR1 half")  # a writer's in-flight file: silent
    return bad


def test_unreadable_files_are_reported_by_every_reader_never_silently_skipped(tmp_path):
    lb = Leaderboard(tmp_path)
    good = Path(lb.write([row("a", d2s_recall1=1.0)]))
    bad = _plant_bad_files(tmp_path, good)
    readers = {
        "read": lambda: lb.read()["row_key"].to_list() == ["exp/a/student"],
        "scan": lambda: lb.scan().collect()["row_key"].to_list() == ["exp/a/student"],
        "keys": lambda: lb.keys() == {"exp/a/student"},
        "files": lambda: lb.files() == [str(good)],
        "compact": lambda: lb.compact("exp") == (1, 1),
    }
    for name, reader in readers.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert reader(), name
        messages = [str(w.message) for w in caught if issubclass(w.category, LeaderboardWarning)]
        for kind, path in bad.items():
            if kind == "top" and name == "compact":
                continue  # compact lists one experiment's folder, not the root
            assert any(path.name in m for m in messages), (name, kind, messages)
        assert not any("inflight" in m for m in messages), name
    assert all(path.exists() for path in bad.values())  # reported and left alone, never deleted


def test_a_file_with_a_valid_footer_but_corrupt_data_is_reported_and_the_rest_read(tmp_path):
    lb = Leaderboard(tmp_path)
    lb.write([row("a")])
    other = Path(lb.write([row("b")]))
    data = bytearray(other.read_bytes())
    data[4:40] = b"\xff" * 36  # the first data page; the footer stays intact
    other.write_bytes(bytes(data))
    with pytest.warns(LeaderboardWarning, match=other.name):
        assert lb.read()["row_key"].to_list() == ["exp/a/student"]

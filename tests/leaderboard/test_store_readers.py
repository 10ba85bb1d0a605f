"""The leaderboard root read as-is by the tools researchers use: pandas, pyarrow, polars, DuckDB.

Each reads the hive-partitioned root with its own partition discovery (no geodistill code), gets
every row on disk with ``experiment`` from the folder name, and with the dedup recipe the README
shows gets exactly what ``Leaderboard.read`` returns.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from geodistill.leaderboard import Leaderboard, make_row

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture()
def root(tmp_path):
    lb = Leaderboard(tmp_path / "lb")
    lb.write(
        [
            make_row(experiment="exp", trial_id=str(i), stage="student", d2s_recall1=float(i), created_at=T0)
            for i in range(3)
        ]
    )
    # A resumed search rewrote trial 1 later: two rows with one key on disk, the later one wins.
    lb.write(
        [
            make_row(
                experiment="exp",
                trial_id="1",
                stage="student",
                d2s_recall1=99.0,
                created_at=T0 + timedelta(hours=1),
            )
        ]
    )
    lb.write([make_row(experiment="other", trial_id="0", stage="teacher", d2s_recall1=5.0, created_at=T0)])
    (tmp_path / "lb" / "experiment=exp" / ".tmp-inflight").write_bytes(b"PAR1 half written")
    return str(tmp_path / "lb")


EXPECTED_RAW = [("exp", "exp/0/student", 0.0), ("exp", "exp/1/student", 1.0), ("exp", "exp/1/student", 99.0),
                ("exp", "exp/2/student", 2.0), ("other", "other/0/teacher", 5.0)]  # fmt: skip
EXPECTED_DEDUP = [r for r in EXPECTED_RAW if r[2] != 1.0]


def _rows(records) -> list[tuple[str, str, float]]:
    return sorted((str(e), k, float(v)) for e, k, v in records)


def test_store_read_matches_the_dedup_recipe(root):
    df = Leaderboard(root).read()
    assert _rows(df.select("experiment", "row_key", "d2s_recall1").iter_rows()) == EXPECTED_DEDUP


def test_pandas_read_parquet_on_the_root(root):
    pd = pytest.importorskip("pandas")
    df = pd.read_parquet(root)
    cols = ["experiment", "row_key", "d2s_recall1"]
    assert _rows(df[cols].itertuples(index=False)) == EXPECTED_RAW
    latest = df.sort_values("created_at").drop_duplicates("row_key", keep="last")  # README recipe
    assert _rows(latest[cols].itertuples(index=False)) == EXPECTED_DEDUP


def test_pyarrow_dataset_hive_on_the_root(root):
    ds = pytest.importorskip("pyarrow.dataset")
    table = ds.dataset(root, partitioning="hive").to_table()
    cols = ["experiment", "row_key", "d2s_recall1"]
    assert _rows(zip(*(table.column(c).to_pylist() for c in cols), strict=True)) == EXPECTED_RAW


def test_polars_scan_parquet_hive_on_the_root(root):
    pl = pytest.importorskip("polars")
    lf = pl.scan_parquet(root + "/**/*.parquet", hive_partitioning=True)
    cols = ["experiment", "row_key", "d2s_recall1"]
    assert _rows(lf.select(cols).collect().iter_rows()) == EXPECTED_RAW
    latest = lf.sort("created_at").unique("row_key", keep="last")  # README recipe
    assert _rows(latest.select(cols).collect().iter_rows()) == EXPECTED_DEDUP


def test_duckdb_read_parquet_hive_on_the_root(root):
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    src = f"read_parquet('{root}/**/*.parquet', hive_partitioning = true)"
    raw = con.execute(f"SELECT experiment, row_key, d2s_recall1 FROM {src}").fetchall()
    assert _rows(raw) == EXPECTED_RAW
    latest = con.execute(  # README recipe
        f"SELECT experiment, row_key, d2s_recall1 FROM {src} QUALIFY row_number() OVER "
        "(PARTITION BY row_key ORDER BY created_at DESC) = 1"
    ).fetchall()
    assert _rows(latest) == EXPECTED_DEDUP
    con.close()


def test_compacted_root_holds_one_row_per_key_for_every_reader(root):
    pd = pytest.importorskip("pandas")
    lb = Leaderboard(root)
    for experiment in lb.experiments():
        lb.compact(experiment)
    df = pd.read_parquet(root)
    assert _rows(df[["experiment", "row_key", "d2s_recall1"]].itertuples(index=False)) == EXPECTED_DEDUP

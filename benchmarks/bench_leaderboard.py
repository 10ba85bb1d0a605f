"""Leaderboard: polars lazy scan + dedup + filter vs pandas read-everything; Pareto sweep vs O(N^2).

Run: python benchmarks/bench_leaderboard.py [--files 1000] [--rows 1000]

Part 1 writes FILES x ROWS leaderboard rows (5 % of them re-writes of an earlier key, as a
resumed search produces) in the store's layout, then answers "the Pareto front of finished
runs under a GFLOPs budget" two ways:
- ours: ``Leaderboard.scan()`` (polars lazy: reads only the needed columns, dedups by key) ->
  filter -> ``pareto_mask``;
- naive: pandas ``read_parquet`` of every file (all columns), concat, sort + drop_duplicates,
  filter -> the same ``pareto_mask``.
Both must give the same front. Part 2 times ``pareto_mask`` against the all-pairs reference.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa

from _figures import figure  # benchmarks/ is on sys.path when a script here runs
from geodistill.leaderboard import SCHEMA, Leaderboard
from geodistill.leaderboard.columns import FILE_SCHEMA
from geodistill.leaderboard.pareto import hypervolume, pareto_mask
from geodistill.leaderboard.store import _conform
from oracles import pareto_mask_naive

BACKBONES = np.array(["resnet18", "vit_tiny", "convnext_atto", "vit_small", "mobilenetv3"])
BUDGET = 20.0  # GFLOPs


def write_board(root: Path, files: int, rows: int, seed: int = 0) -> Leaderboard:
    """FILES files of ROWS rows each, experiment "bench"; 5 % of rows re-write an earlier key."""
    rng = np.random.default_rng(seed)
    lb = Leaderboard(root)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for f in range(files):
        ids = np.arange(f * rows, (f + 1) * rows)
        redo = rng.random(rows) < 0.05
        ids[redo] = rng.integers(0, max(1, f * rows), size=int(redo.sum())) if f else ids[redo]
        views = rng.integers(1, 9, size=rows)
        gflops = rng.lognormal(0.5, 1.0, size=rows) * views
        recall = np.clip(100 * (1 - np.exp(-0.15 * gflops**0.5 * rng.uniform(0.5, 1.5, rows))), 0, 100)
        table = pa.table(
            {
                "row_key": [f"bench/{i}/student" for i in ids],
                "trial_id": [str(i) for i in ids],
                "experiment": ["bench"] * rows,
                "stage": ["student"] * rows,
                "status": np.where(rng.random(rows) < 0.03, "failed", "ok"),
                "backbone": BACKBONES[rng.integers(0, len(BACKBONES), rows)],
                "views": views.astype(np.int32),
                "d2s_recall1": recall,
                "d2s_ap": recall * 0.95,
                "gflops": gflops,
                "params_m": rng.uniform(2, 90, rows),
                "created_at": pa.array(
                    [t0 + timedelta(seconds=f * rows + j) for j in range(rows)], pa.timestamp("us", tz="UTC")
                ),
                "schema_version": np.full(rows, 1, dtype=np.int32),
            }
        )
        lb._write_table("bench", _conform(table, FILE_SCHEMA))  # the folder carries `experiment`
    return lb


def front_polars(lb: Leaderboard) -> np.ndarray:
    frame = (
        lb.scan("bench")
        .filter((pl.col("status") == "ok") & (pl.col("gflops") <= BUDGET))
        .select("row_key", "d2s_recall1", "gflops")
        .collect()
    )
    pts = frame.select("d2s_recall1", "gflops").to_numpy()
    return np.sort(frame["row_key"].to_numpy()[pareto_mask(pts, [True, False])])


def front_pandas(lb: Leaderboard) -> np.ndarray:
    frame = pd.concat([pd.read_parquet(path) for path in lb.files("bench")], ignore_index=True)
    frame = frame.sort_values("created_at", kind="stable").drop_duplicates("row_key", keep="last")
    frame = frame[(frame["status"] == "ok") & (frame["gflops"] <= BUDGET)]
    pts = frame[["d2s_recall1", "gflops"]].to_numpy()
    return np.sort(frame["row_key"].to_numpy()[pareto_mask(pts, [True, False])])


def timed(fn, *args, repeats: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, out


def part_store(files: int, rows: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        lb = write_board(Path(tmp) / "lb", files, rows)
        wrote = time.perf_counter() - start
        n_rows = files * rows
        print(f"wrote {files} files x {rows} rows = {n_rows:,} rows in {wrote:.1f}s ({len(SCHEMA)} columns)")
        t_ours, ours = timed(front_polars, lb)
        t_naive, naive = timed(front_pandas, lb, repeats=1)
        assert np.array_equal(ours, naive), "the two paths disagree"
        unique = lb.scan("bench").select(pl.len()).collect().item()
        print(f"  {unique:,} unique keys; front under {BUDGET:g} GFLOPs: {len(ours)} runs")
        print(f"  polars lazy scan+dedup+filter+front: {t_ours * 1e3:9.1f} ms")
        print(
            f"  pandas read-all+dedup+filter+front:  {t_naive * 1e3:9.1f} ms   ratio {t_naive / t_ours:.1f}x"
        )
        pandas = "pandas read_parquet of every file + sort + drop_duplicates"
        figure("store.rows", n_rows, label="leaderboard rows written")
        figure("store.ours_s", t_ours, "s", label="Leaderboard.scan + dedup + filter + front", anchor=pandas)
        figure(
            "store.pandas_s", t_naive, "s", label="pandas read-all + dedup + filter + front", anchor=pandas
        )
        figure("store.speedup", t_naive / t_ours, "x", label="speed-up over pandas", anchor=pandas)


def part_pareto() -> None:
    rng = np.random.default_rng(1)
    for n, m in ((5000, 2), (2000, 3)):
        pts = rng.normal(size=(n, m))
        maximize = [True] + [False] * (m - 1)
        t_fast, fast = timed(pareto_mask, pts, maximize)
        t_naive, naive = timed(pareto_mask_naive, pts, maximize, repeats=1)
        assert np.array_equal(fast, naive)
        print(
            f"  pareto_mask N={n} M={m}: {t_fast * 1e3:8.2f} ms vs all-pairs {t_naive * 1e3:8.1f} ms "
            f"ratio {t_naive / t_fast:.0f}x (front {int(fast.sum())})"
        )
        figure(f"pareto.n{n}_m{m}.ours_ms", t_fast * 1e3, "ms", label=f"pareto_mask N={n} M={m}")
        figure(
            f"pareto.n{n}_m{m}.speedup",
            t_naive / t_fast,
            "x",
            label=f"pareto_mask N={n} M={m}: speed-up over all pairs",
            anchor="all-pairs comparison (pareto_mask_naive)",
        )
    big = rng.normal(size=(1_000_000, 2))
    t_big, mask = timed(pareto_mask, big, [True, False])
    t_hv, _ = timed(hypervolume, big[mask], [-10.0, 10.0], [True, False])
    print(
        f"  pareto_mask N=1,000,000 M=2: {t_big * 1e3:.0f} ms; hypervolume of its front: {t_hv * 1e3:.2f} ms"
    )
    figure("pareto.n1000000_m2.ms", t_big * 1e3, "ms", label="pareto_mask N=1,000,000 M=2")
    figure("hypervolume.front_of_1e6.ms", t_hv * 1e3, "ms", label="hypervolume of that front")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    print("part 1: store")
    part_store(args.files, args.rows)
    print("part 2: Pareto")
    part_pareto()


if __name__ == "__main__":
    main()

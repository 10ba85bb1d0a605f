"""Figures for "what changes at 100 nodes and 10,000 trials" (clusters/README.md, Scale on paper).

Run: python benchmarks/bench_scale.py [--trials 40 80] [--files 1000 4000]

Part 1 runs real searches (``run_search`` on a local Ray head, a trivial objective so only the
platform's own state is measured) of N trials and reports the size of what Tune saves at every
sync (``experiment_state-*.json`` + the searcher's pickle), the Optuna SQLite study, and the
leaderboard files, per trial. Part 2 writes F one-row leaderboard files (what a search without
compaction leaves: one file per trial) and times ``Leaderboard.scan(...).collect()`` over them,
then over the same rows compacted into one file.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from geodistill.leaderboard import Leaderboard, make_row


def state_sizes(trials: int, work: Path) -> dict[str, float]:
    from geodistill.platform.compose import compose_run_config
    from geodistill.platform.search import SearchOptions, run_search
    from geodistill.platform.search.space import parse_space

    space = parse_space(
        {
            "fixed": {"stage": "teacher", "train.epochs": 1},
            "params": {"train.lr": {"type": "uniform", "low": 0.001, "high": 0.01}},
        },
        name="trivial",
    )

    def objective(cfg, *, context):
        context.report({"epoch": 1, "d2s_recall1": cfg.train.lr * 1000})

    name = f"scale{trials}"
    start = time.perf_counter()
    options = SearchOptions(
        experiment=name,
        num_samples=trials,
        storage=str(work / "tune"),
        leaderboard=str(work / "lb"),
        max_concurrent=2,
        early_stopping=False,
        objective=objective,
        verbose=0,
    )
    run_search(space, compose_run_config([]), options)
    wall = time.perf_counter() - start
    root = work / "tune" / name
    state = sum(p.stat().st_size for p in root.glob("experiment_state-*.json"))
    searcher = sum(p.stat().st_size for p in root.glob("searcher-state-*.pkl"))
    study = (root / "optuna.db").stat().st_size
    board = Leaderboard(work / "lb").files(name)
    return {
        "trials": trials,
        "experiment_state_bytes": state,
        "searcher_state_bytes": searcher,
        "optuna_db_bytes": study,
        "leaderboard_files": len(board),
        "wall_s": wall,
    }


def scan_time(files: int, work: Path) -> tuple[float, float]:
    """Seconds for scan+collect over ``files`` one-row files, and over the same rows compacted."""
    lb = Leaderboard(work / f"scan{files}")
    for i in range(files):
        lb.write([make_row(experiment="scale", stage="student", trial_id=f"t{i:06d}", gflops=1.0 + i)])
    lb.scan("scale").collect()  # warm
    start = time.perf_counter()
    frame = lb.scan("scale").collect()
    many = time.perf_counter() - start
    assert frame.height == files
    lb.compact("scale")
    start = time.perf_counter()
    frame = lb.scan("scale").collect()
    one = time.perf_counter() - start
    assert frame.height == files
    return many, one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[40, 80])
    parser.add_argument("--files", type=int, nargs="+", default=[1000, 4000])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))

    print("| trials | experiment_state | searcher pickle | optuna.db | leaderboard files | wall s |")
    print("|---|---|---|---|---|---|")
    sizes = [state_sizes(n, work) for n in args.trials]
    for s in sizes:
        print(
            f"| {s['trials']} | {s['experiment_state_bytes'] / 1024:.0f} KiB | "
            f"{s['searcher_state_bytes'] / 1024:.0f} KiB | {s['optuna_db_bytes'] / 1024:.0f} KiB | "
            f"{s['leaderboard_files']} | {s['wall_s']:.1f} |"
        )
    if len(sizes) >= 2:  # the slope between the two sizes: per-trial growth without the fixed part
        lo, hi = sizes[0], sizes[-1]
        dn = hi["trials"] - lo["trials"]
        for key in ("experiment_state_bytes", "searcher_state_bytes", "optuna_db_bytes"):
            per = (hi[key] - lo[key]) / dn
            print(f"{key}: {per / 1024:.2f} KiB per trial -> {per * 10_000 / 2**20:.0f} MiB at 10,000 trials")

    print("\n| one-row files | scan+collect | after compaction (1 file) | per 1,000 files |")
    print("|---|---|---|---|")
    for n in args.files:
        many, one = scan_time(n, work)
        print(f"| {n} | {many:.2f} s | {one * 1000:.0f} ms | {many / n * 1000:.2f} s |")
    print(f"\nartifacts: {work}")


if __name__ == "__main__":
    main()

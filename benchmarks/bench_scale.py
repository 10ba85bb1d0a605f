"""Figures for "what changes at 100 nodes and 10,000 trials" (clusters/README.md, Scale on paper).

Run: python benchmarks/bench_scale.py [--trials 40 80] [--files 1000 4000] [--placement 100 25] [--keep]

Part 1 runs real searches (``run_search`` on a local Ray head, a trivial objective so only the
platform's own state is measured) of N trials and reports the size of what Tune saves at every
sync (``experiment_state-*.json`` + the searcher's pickle), the Optuna SQLite study, and the
leaderboard files, per trial. Part 2 writes F one-row leaderboard files (what a search without
compaction leaves: one file per trial) and times ``Leaderboard.scan(...).collect()`` over them,
then over the same rows compacted into one file. Part 0 places one-GPU trials on a loopback head
that declares GPUs (how fast Tune fills 25 GPUs with 100 trials). The temporary folder is removed.
"""

from __future__ import annotations

import argparse
import shutil
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


def placement(trials: int, gpus: int, work: Path) -> dict[str, float]:
    """A search of ``trials`` one-GPU trials (each holds its GPU 2 s) on a loopback head declaring ``gpus``.

    Returns how long the first wave took to be placed (all ``gpus`` trials running at once), the
    whole search, the most trials seen running together, and the GPU ids they saw.
    """
    import ray

    from geodistill.platform.compose import compose_run_config
    from geodistill.platform.runtime.ray_local import init_ray
    from geodistill.platform.search import SearchOptions, run_search
    from geodistill.platform.search.space import parse_space

    marks = work / f"placement{trials}"
    marks.mkdir()
    space = parse_space(
        {"fixed": {"stage": "teacher", "train.epochs": 1}, "params": {"train.lr": {"type": "uniform", "low": 0.001, "high": 0.01}}},
        name="placement",
    )  # fmt: skip

    def objective(cfg, *, context):
        import os

        start = time.time()
        time.sleep(2)
        (marks / f"{os.getpid()}-{start}").write_text(
            f"{start} {time.time()} {os.environ.get('CUDA_VISIBLE_DEVICES')}"
        )
        context.report({"epoch": 1, "d2s_recall1": cfg.train.lr * 1000})

    ray.shutdown()
    init_ray(num_cpus=gpus, num_gpus=gpus)
    begin = time.time()
    options = SearchOptions(
        experiment="placement", num_samples=trials, storage=str(work / "tune"), leaderboard=str(work / "lb"),
        max_concurrent=gpus, early_stopping=False, gpus_per_trial=1, objective=objective, verbose=0,
    )  # fmt: skip
    run_search(space, compose_run_config([]), options)
    total = time.time() - begin
    ray.shutdown()
    spans = sorted(tuple(float(x) for x in m.read_text().split()[:2]) for m in marks.iterdir())
    ids = {m.read_text().split()[2] for m in marks.iterdir()}
    most = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    first_wave = sorted(a for a, _ in spans)[min(gpus, len(spans)) - 1] - begin
    return {
        "trials": len(spans),
        "first_wave_s": first_wave,
        "total_s": total,
        "most_running": most,
        "gpu_ids": len(ids),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[40, 80])
    parser.add_argument("--files", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--placement", type=int, nargs=2, metavar=("TRIALS", "GPUS"), default=[100, 25])
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (Tune's state, the studies)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        _report(args, work)
    finally:  # also when a run fails: Tune folders left in the temp directory add up
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _report(args: argparse.Namespace, work: Path) -> None:
    if args.placement[0] > 0:
        p = placement(*args.placement, work)
        print(
            f"placement: {p['trials']} one-GPU trials on {args.placement[1]} declared GPUs: first wave placed in "
            f"{p['first_wave_s']:.1f} s, all done in {p['total_s']:.1f} s (each holds its GPU 2 s), at most "
            f"{p['most_running']} running at once, {p['gpu_ids']} distinct CUDA_VISIBLE_DEVICES\n"
        )

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
    if args.keep:
        print(f"\nartifacts: {work}")


if __name__ == "__main__":
    main()

"""Figures for "what changes at 100 nodes and 10,000 trials" (clusters/README.md, Scale on paper).

Run: python benchmarks/bench_scale.py [--trials 40 80] [--files 1000 4000] [--placement 100 25] [--keep]

Part 1 runs real searches (``run_search`` on a local Ray head, a trivial objective so only the
platform's own state is measured) of N trials and reports the size of what Tune saves at every
sync (``experiment_state-*.json`` + the searcher's pickle), the Optuna SQLite study, and the
leaderboard files, per trial. Part 2 writes F one-row leaderboard files (what a search without
compaction leaves: one file per trial) and times ``Leaderboard.scan(...).collect()`` over them,
then over the same rows compacted into one file. Part 0 places one-GPU trials on a loopback head
that declares GPUs (how fast Tune fills 25 GPUs with 100 trials). Every figure printed is also
recorded through ``_figures.figure`` (``run_all.py``). The temporary folder is removed.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from _figures import figure  # benchmarks/ is on sys.path when a script here runs
from geodistill.leaderboard import Leaderboard, make_row

COMPACTED = "the same rows after Leaderboard.compact (one file)"
HOLD_S = 2.0  # seconds each placement trial holds its GPU


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


def _best_scan(lb: Leaderboard, rows: int, repeats: int = 3) -> float:
    """Fastest of ``repeats`` scan+collect (after one warm-up): the machine is shared."""
    lb.scan("scale").collect()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        frame = lb.scan("scale").collect()
        best = min(best, time.perf_counter() - start)
        assert frame.height == rows
    return best


def scan_time(files: int, work: Path) -> tuple[float, float]:
    """Seconds for scan+collect over ``files`` one-row files, and over the same rows compacted."""
    lb = Leaderboard(work / f"scan{files}")
    for i in range(files):
        lb.write([make_row(experiment="scale", stage="student", trial_id=f"t{i:06d}", gflops=1.0 + i)])
    many = _best_scan(lb, files)
    lb.compact("scale")
    return many, _best_scan(lb, files)


def placement(trials: int, gpus: int, work: Path) -> dict[str, float]:
    """A search of ``trials`` one-GPU trials (each holds its GPU ``HOLD_S``) on a loopback head declaring ``gpus``.

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
        time.sleep(HOLD_S)
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
        _report_placement(*args.placement, work)
    _report_state([state_sizes(n, work) for n in args.trials])
    print("\nscan+collect of one-row leaderboard files (what a search leaves), best of 3:")
    for n in args.files:
        many, one = scan_time(n, work)
        at = f"{n} one-row files"
        figure(f"scan.files{n}.uncompacted_s", many, "s", label=f"{at}: scan+collect", anchor=COMPACTED)
        figure(f"scan.files{n}.compacted_ms", one * 1e3, "ms", label=f"{at}, compacted", anchor=COMPACTED)
        figure(
            f"scan.files{n}.ratio", many / one, "x", label=f"{at}: uncompacted / compacted", anchor=COMPACTED
        )
        figure(f"scan.files{n}.per_1000_s", many / n * 1000, "s", label=f"{at}: per 1,000 files")
    if args.keep:
        print(f"\nartifacts: {work}")


def _report_placement(trials: int, gpus: int, work: Path) -> None:
    p = placement(trials, gpus, work)
    print(f"placement: {trials} one-GPU trials, each holding its GPU {HOLD_S:g} s, on {gpus} declared GPUs")
    at = f"{trials} trials on {gpus} GPUs"
    ideal = "every declared GPU busy from the start: ceil(trials / GPUs) x the hold"
    figure("placement.trials", p["trials"], "trials", label=f"{at}: trials that ran")
    figure("placement.first_wave_s", p["first_wave_s"], "s", label=f"{at}: until {gpus} trials had started")
    figure("placement.total_s", p["total_s"], "s", label=f"{at}: whole search", limit=ideal)
    figure("placement.ideal_s", -(-trials // gpus) * HOLD_S, "s", label=f"{at}: the limit", limit=ideal)
    figure("placement.most_running", p["most_running"], "trials", label=f"{at}: most running at once")
    figure("placement.gpu_ids", p["gpu_ids"], "ids", label=f"{at}: distinct CUDA_VISIBLE_DEVICES")


STATE = {
    "experiment_state": "experiment_state-*.json",
    "searcher_state": "searcher pickle",
    "optuna_db": "optuna.db",
}


def _report_state(sizes: list[dict[str, float]]) -> None:
    print("Tune's saved state, the Optuna study and the leaderboard files of trivial searches:")
    for s in sizes:
        n = s["trials"]
        for key, name in STATE.items():
            figure(f"state.trials{n}.{key}_kib", s[f"{key}_bytes"] / 1024, "KiB", label=f"{n} trials: {name}")
        figure(
            f"state.trials{n}.leaderboard_files",
            s["leaderboard_files"],
            "files",
            label=f"{n} trials: leaderboard files",
        )
        figure(f"state.trials{n}.wall_s", s["wall_s"], "s", label=f"{n} trials: search wall time")
    if len(sizes) < 2:
        return
    lo, hi = sizes[0], sizes[-1]  # the slope between two sizes: per-trial growth without the fixed part
    slope = f"slope {lo['trials']} -> {hi['trials']} trials"
    for key, name in STATE.items():
        per = (hi[f"{key}_bytes"] - lo[f"{key}_bytes"]) / (hi["trials"] - lo["trials"])
        figure(f"state.{key}.kib_per_trial", per / 1024, "KiB/trial", label=f"{name}: per trial ({slope})")
        figure(
            f"state.{key}.mib_at_10000",
            per * 10_000 / 2**20,
            "MiB",
            label=f"{name}: extrapolated to 10,000 trials",
        )


if __name__ == "__main__":
    main()

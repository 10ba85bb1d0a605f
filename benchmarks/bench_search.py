"""Search: samplers side by side, early stopping's saving, and the platform's per-trial overhead.

Run: python benchmarks/bench_search.py [--trials 8] [--epochs 4]

1. Hypervolume after N trials for TPE, NSGA-II and random search, on a cheap real objective:
   smoke-sized students (real training and evaluation on a synthetic UniV set) distilled from
   one tiny teacher, objectives (d2s AP up, GFLOPs per query down), fixed reference point
   (0 %, 1.1 x the largest GFLOPs the space can produce).
2. The same TPE search with and without ASHA early stopping: epochs trained (compute) and the
   final hypervolume of each.
3. Overhead: wall time of a search of N trivial trials (report two numbers, return), divided
   by N, against the time to run the same trivial function N times in a loop.

Everything runs on one local Ray (2 CPUs). Absolute times depend on the machine's load; the
ratios printed at the end are what to read.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import itertools
import shutil
import tempfile
import time
from pathlib import Path

import polars as pl

from _figures import figure  # benchmarks/ is on sys.path when a script here runs
from geodistill.leaderboard.pareto import hypervolume
from geodistill.models.cost import config_cost
from geodistill.platform.compose import compose_run_config
from geodistill.platform.runtime.ray_local import init_ray
from geodistill.platform.search import SearchOptions, SearchPlan, run_search, train_teacher_for
from geodistill.platform.search.space import load_space, parse_space


def max_gflops(plan: SearchPlan) -> float:
    """The costliest configuration of the space's choice parameters (bounds of the others)."""
    choices = [p for p in plan.space.params if p.type == "choice"]
    worst = 0.0
    for values in itertools.product(*(p.choices for p in choices)):
        cfg = plan.config(dict(zip((p.name for p in choices), values)))
        worst = max(worst, config_cost(cfg.model, cfg.data.views)["gflops"])
    return worst


def front_hv(rows: pl.DataFrame, reference: tuple[float, float], metric: str = "d2s_ap") -> float:
    ok = rows.filter((pl.col("status") == "ok") & pl.col(metric).is_not_null())
    if ok.height == 0:
        return 0.0
    points = ok.select(metric, "gflops").to_numpy()
    return hypervolume(points, reference, maximize=[True, False])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--buildings", type=int, default=24, help="synthetic places (half train, half test)")
    parser.add_argument("--overhead-trials", type=int, default=16)
    args = parser.parse_args()

    init_ray(num_cpus=2)
    work = Path(tempfile.mkdtemp(prefix="bench_search_"))
    atexit.register(shutil.rmtree, work, True)  # Tune's folders, the teacher: gone also when a run fails
    overrides = ["preset=smoke", f"output_dir={work / 'shared'}"]
    base = compose_run_config(overrides)
    space = load_space("smoke", base=base.to_dict())
    # AP (not Recall@1) as the precision objective: on a small synthetic test split Recall@1
    # moves in steps of 1/queries and ties everywhere; AP is fine-grained enough for ASHA.
    space = dataclasses.replace(
        space,
        metric="d2s_ap",
        fixed={**space.fixed, "train.epochs": args.epochs, "data.synth_buildings": args.buildings},
    )
    draft = SearchPlan.build(space, base, check_teacher=False)
    teacher = train_teacher_for(draft, work / "teacher")
    reference = (0.0, 1.1 * max_gflops(draft))
    print(
        f"objective: smoke students, {args.buildings} places, {args.epochs} epochs, {args.trials} trials; "
        f"d2s AP up, GFLOPs down; reference point {reference}"
    )

    def search(name: str, sampler: str, early: bool) -> tuple[pl.DataFrame, float]:
        start = time.perf_counter()
        options = SearchOptions(
            experiment=name,
            num_samples=args.trials,
            sampler=sampler,
            teacher=str(teacher),
            storage=str(work / "tune"),
            leaderboard=str(work / "lb"),
            max_concurrent=2,
            early_stopping=early,
            seed=0,
            verbose=0,
        )
        result = run_search(space, base, options)
        return result.rows, time.perf_counter() - start

    print("\n| sampler | hypervolume after N | epochs trained | wall s |")
    print("|---|---|---|---|")
    outcome = {}
    for sampler in ("tpe", "nsga2", "random"):
        rows, wall = search(f"hv-{sampler}", sampler, early=False)
        outcome[sampler] = (front_hv(rows, reference), int(rows["epochs"].sum()), wall)
        print(f"| {sampler} | {outcome[sampler][0]:.3f} | {outcome[sampler][1]} | {wall:.1f} |")

    rows_es, wall_es = search("hv-tpe-asha", "tpe", early=True)
    hv_es, epochs_es = front_hv(rows_es, reference), int(rows_es["epochs"].sum())
    hv_full, epochs_full, wall_full = outcome["tpe"]
    print("\n| TPE | hypervolume | epochs trained | trials stopped early | wall s |")
    print("|---|---|---|---|---|")
    print(f"| no early stopping | {hv_full:.3f} | {epochs_full} | 0 | {wall_full:.1f} |")
    stopped = int((rows_es["status"] == "stopped").sum())
    rungs = SearchOptions()
    print(
        f"| ASHA (grace {rungs.grace_period}, rf {rungs.reduction_factor:g}) | {hv_es:.3f} | {epochs_es} | {stopped} | {wall_es:.1f} |"
    )
    print(f"compute saved by early stopping: {1 - epochs_es / max(epochs_full, 1):.0%} of the epochs")
    rand = "random search (Ray Tune + Optuna RandomSampler), same trials"
    for sampler, (hv_s, _, _) in outcome.items():
        figure(
            f"ray.{sampler}.hv", hv_s, label=f"{sampler}: hypervolume after {args.trials} trials", anchor=rand
        )
    figure(
        "ray.asha.hv_ratio", hv_es / hv_full if hv_full else 0.0, "x", label="ASHA / no stopping: hypervolume"
    )
    figure(
        "ray.asha.epochs_saved", 1 - epochs_es / max(epochs_full, 1), "fraction", label="ASHA: epochs saved"
    )

    # Per-trial overhead of the platform (Tune + Optuna on SQLite + leaderboard row per trial).
    trivial = parse_space(
        {
            "fixed": {"stage": "teacher", "train.epochs": 1},
            "params": {"train.lr": {"type": "uniform", "low": 0.001, "high": 0.01}},
        },
        name="trivial",
    )

    def objective(cfg, *, context):
        context.report({"epoch": 1, "d2s_recall1": cfg.train.lr * 1000})

    class _Ctx:
        def report(self, metrics, checkpoint_dir=None):
            self.last = metrics

    trivial_plan = SearchPlan.build(trivial, base)
    warm = trivial_plan.config({"train.lr": 0.001})
    config_cost(warm.model, warm.data.views)  # warm: imports, cost cache
    start = time.perf_counter()
    for i in range(args.overhead_trials):
        cfg = trivial_plan.config({"train.lr": 0.001 + i * 1e-4})
        config_cost(cfg.model, cfg.data.views)
        objective(cfg, context=_Ctx())
    loop_s = (time.perf_counter() - start) / args.overhead_trials
    start = time.perf_counter()
    overhead = SearchOptions(
        experiment="overhead",
        num_samples=args.overhead_trials,
        sampler="tpe",
        storage=str(work / "tune"),
        leaderboard=str(work / "lb"),
        max_concurrent=2,
        early_stopping=False,
        objective=objective,
        verbose=0,
    )
    run_search(trivial, base, overhead)
    search_s = (time.perf_counter() - start) / args.overhead_trials
    print("\n| trivial trial (cost count + 1 report) | per trial |")
    print("|---|---|")
    print(f"| plain loop in one process | {loop_s * 1000:.0f} ms |")
    print(f"| run_search, {args.overhead_trials} trials, 2 at a time | {search_s * 1000:.0f} ms |")
    print(f"platform overhead per trial: {search_s - loop_s:.2f} s ({search_s / loop_s:.0f}x the bare work)")
    figure(
        "overhead.per_trial_s",
        search_s - loop_s,
        "s",
        label="platform overhead per trivial trial",
        anchor="a plain loop",
    )


if __name__ == "__main__":
    main()

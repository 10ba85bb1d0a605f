"""Does the search benchmark's simulation agree with the product? The same searches through ``--replay``.

Run: python benchmarks/bench_search_product.py [--seeds 3] [--trials 48] [--speed 0.5] [--smoke]

Per setting of ``bench_search_front.py`` (d2s / s2d AP; 1 or 4 trials at once) and seed, on
``search_table.parquet``: (a) the product, ``run_search`` with the default options and ``replay=``
(driver, Tune, ``ParetoASHA``, ``StudySearch``, leaderboard rows; compute summed over its rows in
the order trials ended, as the report's anytime front); (b) the anchor as a user writes it, a
``tune.Tuner`` on a function trainable replaying the table (``ReplayFit``) with ``OptunaSearch``
(Optuna's default sampler) and ``ASHAScheduler`` defaults; (c) ``simulate``, same sampler seed
and cap. Printed: P9 / front found of each, the trials the product shares with ``simulate``, and
whether trials ended in the order the recorded seconds give (the simulated clock held).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from ray import cloudpickle, tune

import bench_search_front
from _figures import figure  # benchmarks/ is on sys.path when a script here runs
from bench_search_front import METRICS, FrontTable, limit, measure, simulate
from geodistill.leaderboard.rows import compute_units

HERE = Path(__file__).resolve().parent
SPACE = HERE / "search_table_space.yaml"
SEED_OFFSET = 1000  # simulate seeds its samplers with 1000 + seed: the product and the anchor too
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # trials run this module's trainable
ANCHOR = "tune.Tuner + OptunaSearch (Optuna's default TPE) + ASHAScheduler defaults, on the replay trainable"


@dataclasses.dataclass
class Run:
    """One search: its trials in the order they ended, the order they started, its wall seconds."""

    ended: list[dict[str, Any]]  # {trial_id, key, epochs, value, gflops}
    order: TrialOrder
    seconds: float

    def spent(self) -> list[tuple[float, float, float]]:
        """``measure``'s input: (compute spent when each trial ended, its value, its GFLOPs)."""
        total, out = 0.0, []
        for t in self.ended:
            total += t.get("compute") or compute_units(t["epochs"], t["gflops"])  # the product's rows hold it
            out.append((total, t["value"], t["gflops"]))
        return out


class TrialOrder(tune.Callback):
    """Trial ids in the order Tune started and ended them, and when each started (on the driver)."""

    def __init__(self) -> None:
        self.starts: list[str] = []
        self.started_at: dict[str, float] = {}
        self.ends: list[str] = []

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.starts.append(trial.trial_id)
        self.started_at[trial.trial_id] = time.monotonic()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ends.append(trial.trial_id)


def _key(values: dict[str, Any], table: FrontTable) -> tuple:
    """A trial's table key from its dotted knob values (typed as the table's)."""
    from geodistill.platform.search.replay import _same_type

    return tuple(_same_type(values[k.replace("__", ".")], table.choices[k]) for k in table.knobs)


def _dotted(config: dict[str, Any], name: str) -> Any:
    for part in name.split("."):
        config = config[part]
    return config


def product(
    table: FrontTable, plan: Any, metric: str, seed: int, trials: int, workers: int, speed: float, root: Path
) -> Run:
    """(a) ``run_search`` with the default options, answered from the table."""
    from geodistill.platform.search import SearchOptions, run_search

    order = TrialOrder()
    options = SearchOptions(
        experiment=f"product-{metric}-c{workers}-s{seed}", num_samples=trials, metric=metric,
        max_concurrent=workers, seed=SEED_OFFSET + seed, replay=str(table.path), replay_speed=speed,
        storage=str(root / "tune"), leaderboard=str(root / "lb"), verbose=0, callbacks=(order,),
    )  # fmt: skip
    started = time.perf_counter()
    with _quiet():
        result = run_search(plan.space, plan.base, options)
    seconds = time.perf_counter() - started
    knobs = [k.replace("__", ".") for k in table.knobs]
    ended = []
    for row in result.rows.sort("created_at").iter_rows(named=True):
        if row["status"] not in ("ok", "stopped"):
            raise RuntimeError(f"product trial {row['trial_id']} ended {row['status']}: {row['error']}")
        config = json.loads(row["config_json"])
        values = {k: _dotted(config, k) for k in knobs}
        ended.append(
            {"trial_id": row["trial_id"], "key": _key(values, table), "epochs": row["epochs"],
             "value": row[metric], "gflops": row["gflops"], "compute": row["compute"]}
        )  # fmt: skip
    return Run(ended, order, seconds)


class _TuneReport:
    """``fit``'s context for a plain function trainable: every epoch to ``tune.report``; Tune stops it."""

    def report(self, metrics: dict[str, float], checkpoint_dir: Any = None) -> None:
        tune.report(metrics)

    def should_stop(self, epoch: int, metrics: dict[str, float]) -> bool:
        return False


def replay_trainable(config: dict[str, Any], *, table: str, epochs: int, speed: float) -> None:
    """The anchor's trainable, as a user writes it: build the run's config from the sampled knobs
    and train it (here ``ReplayFit`` answers every epoch from the table, on the same clock)."""
    from types import SimpleNamespace

    from geodistill.platform.search.replay import ReplayFit

    cfg = SimpleNamespace(train=SimpleNamespace(epochs=epochs))
    for name, value in config.items():
        group, key = name.split(".")
        setattr(cfg.__dict__.setdefault(group, SimpleNamespace()), key, value)
    ReplayFit(table, speed)(cfg, context=_TuneReport())


def anchor(
    table: FrontTable, metric: str, seed: int, trials: int, workers: int, speed: float, root: Path
) -> Run:
    """(b) The Ray docs pattern: ``OptunaSearch`` (multi-objective, default sampler) + ``ASHAScheduler``."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    order = TrialOrder()
    trainable = tune.with_parameters(
        replay_trainable, table=str(table.path), epochs=table.epochs, speed=speed
    )
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={k.replace("__", "."): tune.choice(table.choices[k]) for k in table.knobs},
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearch(metric=[metric, "gflops"], mode=["max", "min"], seed=SEED_OFFSET + seed),
            scheduler=ASHAScheduler(metric=metric, mode="max"),
            num_samples=trials,
            max_concurrent_trials=workers,
            reuse_actors=True,  # as the product: one process per slot, not per trial
        ),
        run_config=tune.RunConfig(
            name=f"anchor-{metric}-c{workers}-s{seed}",
            storage_path=str(root / "tune"),
            verbose=0,
            callbacks=[order, CSVLoggerCallback(), JsonLoggerCallback()],  # Tune's defaults (run_search
            # turned its automatic loggers off for this process)
        ),  # fmt: skip
    )
    started = time.perf_counter()
    with _quiet():
        grid = tuner.fit()
    seconds = time.perf_counter() - started
    last = {r.metrics["trial_id"]: r for r in grid}
    ended = []
    for trial_id in order.ends:
        result = last[trial_id]
        if result.error:
            raise RuntimeError(f"anchor trial {trial_id} failed: {result.error}")
        m = result.metrics
        ended.append(
            {"trial_id": trial_id, "key": _key(result.config, table), "epochs": int(m["epoch"]),
             "value": float(m[metric]), "gflops": float(m["gflops"])}
        )  # fmt: skip
    return Run(ended, order, seconds)


@contextlib.contextmanager
def _quiet():
    """Tune's experiment box and status lines off the benchmark's output (shown if a search fails)."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    except BaseException:
        print(out.getvalue()[-4000:])
        raise


def clock_order(run: Run, table: FrontTable, workers: int, speed: float) -> tuple[float, float]:
    """Shares of trial pairs that ended in the order the recorded seconds give: (given when each
    trial started: the replay clock held; all started at 0 and each next one on the first slot
    free, as ``simulate`` runs them: also the processes' start-up, which staggers the first trials).
    """
    import heapq

    trials = {t["trial_id"]: t for t in run.ended}
    free, slots, held = [0.0] * workers, {}, {}
    for trial_id in run.order.starts:
        t = trials[trial_id]
        took = float(table.seconds[t["key"]][: t["epochs"]].sum())
        slots[trial_id] = heapq.heappop(free) + took
        heapq.heappush(free, slots[trial_id])
        held[trial_id] = run.order.started_at[trial_id] + speed * took

    def concordant(predicted: dict[str, float]) -> float:
        times = [predicted[t["trial_id"]] for t in run.ended]
        pairs = [(a, b) for i, a in enumerate(times) for b in times[i + 1 :]]
        return sum(a <= b for a, b in pairs) / len(pairs) if pairs else 1.0

    return (concordant(held) if speed > 0 else 1.0), concordant(slots)


def agreement(run: Run, simulated: list[tuple]) -> tuple[int, int]:
    """(ended trials identical to ``simulate``'s in order until the first difference, ended trials
    in common whatever the order): a trial is its (value, GFLOPs) when it ended."""
    ours = [(round(t["value"], 6), round(t["gflops"], 9)) for t in run.ended]
    theirs = [(round(v, 6), round(g, 9)) for _, v, g in simulated]
    prefix = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
    left = list(theirs)
    common = 0
    for t in ours:
        if t in left:
            left.remove(t)
            common += 1
    return prefix, common


def share(table: FrontTable, metric: str, ended: list[tuple]) -> float:
    """Share of the table front's log10-GFLOPs hypervolume that the search's front holds at its end."""
    from geodistill.leaderboard.pareto import front_hypervolume, front_reference

    finals = np.array([curve[-1] for curve in table.curves_by[metric].values()])
    costs = np.array([table.gflops[k] for k in table.curves_by[metric]])
    reference = front_reference(finals, costs)
    best = front_hypervolume(finals, costs, reference)
    return front_hypervolume([e[1] for e in ended], [e[2] for e in ended], reference) / best if ended else 0.0


def _median(values: list) -> float:
    return float(np.median([np.inf if v is None else v for v in values]))


def _show(value: float | None) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.2f}"


def compare(
    table: FrontTable, metric: str, run: Run, simulated: list[tuple], workers: int, speed: float
) -> dict[str, Any]:
    """One search measured through the product beside ``simulate``'s run of the same seed and cap."""
    spent = run.spent()
    prefix, common = agreement(run, simulated)
    return {
        "measured": measure(table, metric, spent),
        "simulated": measure(table, metric, simulated),
        "share": (share(table, metric, spent), share(table, metric, simulated)),
        "compute": (spent[-1][0] if spent else 0.0, simulated[-1][0] if simulated else 0.0),
        "prefix": prefix,
        "common": common,
        "trials": len(run.ended),
        # both count trained trials against the cap (Tune's num_samples; a repeat answered from a
        # finished trial is free in both), but a concurrent search may diverge: compare what both ran
        "compared": min(len(run.ended), len(simulated)),
        "clock": clock_order(run, table, workers, speed),
        "seconds": run.seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=str(HERE / "search_table.parquet"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=48, help="trials per search (the cap of all three)")
    parser.add_argument("--speed", type=float, default=0.5, help="--replay-speed of the concurrent searches")
    parser.add_argument(
        "--simulate-seeds", type=int, default=20, help="simulate's seed-to-seed spread (cheap: in process)"
    )
    parser.add_argument("--metrics", nargs="+", default=list(METRICS), choices=METRICS)
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 4], help="trials at once")
    parser.add_argument("--smoke", action="store_true", help="1 seed, 6 trials, d2s AP: does it run")
    args = parser.parse_args()
    if args.smoke:
        args.seeds, args.trials, args.metrics, args.simulate_seeds = 1, 6, ["d2s_ap"], 2
    if not Path(args.table).is_file():
        print(f"no recorded table at {args.table}: run benchmarks/record_search_table.py first")
        return
    import optuna

    from geodistill.platform.compose import compose_run_config
    from geodistill.platform.runtime.ray_local import init_ray
    from geodistill.platform.search.plan import SearchPlan
    from geodistill.platform.search.space import load_space

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    table = FrontTable(Path(args.table))
    table.path = Path(args.table).absolute()
    bench_search_front._TABLE = table  # simulate's default sampler costs its candidates from it
    base = compose_run_config([])
    plan = SearchPlan.build(load_space(str(SPACE), base=base.to_dict()), base, check_teacher=False)
    init_ray(num_cpus=max(args.concurrency))  # single-CPU trials; a head on 127.0.0.1 only (ray_local)
    shm = Path("/dev/shm")  # the product's SQLite study commits every trial: no disk flush on tmpfs
    root = Path(tempfile.mkdtemp(prefix="bench-search-product-", dir=shm if shm.is_dir() else None))
    results: dict[tuple, list[dict]] = {}
    try:
        for workers in args.concurrency:
            speed = 0.0 if workers == 1 else args.speed  # one trial at a time: the clock orders nothing
            mode = "sequential" if workers == 1 else f"{workers} concurrent"
            for metric in args.metrics:
                for seed in range(args.seeds):
                    job = (metric, seed, args.trials, workers, speed, root)
                    runs = {"product": product(table, plan, *job), "anchor": anchor(table, *job)}
                    line = [f"  {metric}, {mode}, seed {seed}:"]
                    for name, variant in (("product", "default"), ("anchor", "anchor")):
                        simulated = simulate(table, variant, metric, seed, args.trials, workers)
                        c = compare(table, metric, runs[name], simulated, workers, speed)
                        results.setdefault((name, metric, workers), []).append(c)
                        (p9, found), (sp9, sfound) = c["measured"], c["simulated"]
                        line.append(
                            f"{name} P9 {_show(p9)} front {_show(found)} HV {100 * c['share'][0]:.1f} % "
                            f"(simulate {_show(sp9)} / {_show(sfound)} / {100 * c['share'][1]:.1f} %), "
                            f"same {c['prefix']}, common {c['common']} of {c['compared']}, clock order "
                            f"{100 * c['clock'][0]:.0f} % held / {100 * c['clock'][1]:.0f} % slots, "
                            f"{c['seconds']:.0f} s;"
                        )
                    print(" ".join(line), flush=True)
                spread = {  # (hypervolume share, compute spent) at the cap, per seed
                    name: [
                        (share(table, metric, ended), ended[-1][0] if ended else 0.0)
                        for ended in (
                            simulate(table, variant, metric, seed, args.trials, workers)
                            for seed in range(args.simulate_seeds)
                        )
                    ]
                    for name, variant in (("product", "default"), ("anchor", "anchor"))
                }
                _figures_of(table, metric, workers, mode, results, args.trials, spread)
        for name in ("product", "anchor"):
            runs_of = [c for (n, _, _), cs in results.items() if n == name for c in cs]
            seconds = [c["seconds"] for c in runs_of]
            figure(
                f"seconds.{name}",
                _median(seconds),
                "s",
                label=f"one {name} search of {args.trials} trials, median over all settings "
                f"({_median([c['seconds'] / max(1, c['trials']) for c in runs_of]):.2f} s a trial)",
                max_seconds=max(seconds),
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _figures_of(
    table: FrontTable, metric: str, workers: int, mode: str, results: dict, trials: int, spread: dict
) -> None:
    """P9, front found and hypervolume share of the product and the anchor, each beside
    ``simulate``'s for the same seeds (median over seeds) and its spread over ``spread``'s seeds
    (the hypervolume share at the cap), and how far their trials agree."""
    lim = limit(table, metric)
    prod, anc = results[("product", metric, workers)], results[("anchor", metric, workers)]
    for i, what in enumerate(("p9", "front")):
        name = "P9" if what == "p9" else "every front budget within 1 AP point"
        values = {
            "product": [c["measured"][i] for c in prod],
            "simulate": [c["simulated"][i] for c in prod],
            "anchor": [c["measured"][i] for c in anc],
            "simulate_anchor": [c["simulated"][i] for c in anc],
        }
        m = {k: _median(v) for k, v in values.items()}
        reached = sum(v is not None for v in values["product"])
        figure(
            f"{what}.{metric}.c{workers}",
            m["product"],
            "GFLOPs x epochs",
            label=f"{metric}, {mode}, {trials} trials: {name}, product {_show(m['product'])} (in {reached}/"
            f"{len(prod)} seeds; simulate {_show(m['simulate'])}) vs anchor {_show(m['anchor'])} "
            f"(simulate {_show(m['simulate_anchor'])})",
            anchor=ANCHOR,
            limit="training exactly the table's front configurations",
            anchor_value=m["anchor"],
            limit_value=lim,
            simulate_value=m["simulate"],
            simulate_anchor_value=m["simulate_anchor"],
            per_seed=values,
        )
    for name, cs in (("product", prod), ("anchor", anc)):
        hv, hv_sim = _median([c["share"][0] for c in cs]), _median([c["share"][1] for c in cs])
        total = sum(c["compared"] for c in cs)
        held, slots = min(c["clock"][0] for c in cs), min(c["clock"][1] for c in cs)
        q25, q50, q75 = np.percentile([hv for hv, _ in spread[name]], [25, 50, 75])
        spent = float(np.median([compute for _, compute in spread[name]]))
        figure(
            f"agree.{name}.{metric}.c{workers}",
            100.0 * sum(c["common"] for c in cs) / max(1, total),
            "%",
            label=f"{metric}, {mode}: {name}'s ended trials also in simulate's run (same seed, "
            f"{100 * sum(c['prefix'] for c in cs) / max(1, total):.0f} % in the same order); "
            f"hypervolume share at the cap {100 * hv:.1f} % (simulate {100 * hv_sim:.1f} %; over "
            f"{len(spread[name])} seeds median {100 * q50:.1f} %, IQR {100 * q25:.1f}-{100 * q75:.1f} %, "
            f"after a median {spent:.2f} compute units); pairs of "
            f"trials ended in the recorded order, worst seed: {100 * held:.0f} % given their starts, "
            f"{100 * slots:.0f} % as simulate starts them",
            same_order=100.0 * sum(c["prefix"] for c in cs) / max(1, total),
            hypervolume_share=hv,
            simulate_hypervolume_share=hv_sim,
            simulate_spread={
                "seeds": len(spread[name]),
                "q25": q25,
                "median": q50,
                "q75": q75,
                "compute": spent,
            },
            clock_held=held,
            clock_slots=slots,
            compute=[c["compute"] for c in cs],
        )


if __name__ == "__main__":
    main()

"""Search samplers, early stopping and cost-dominated skipping, replayed on a recorded table.

Run: python benchmarks/bench_search_replay.py [--seeds 20] [--workers N] [--table benchmarks/search_table.parquet]

The table (``record_search_table.py``) holds every configuration of a grid of the mission's
knobs (student backbone, views, fps, distillation temperature, feature- and relation-KD weights)
and the learning rate (as the ``distill`` space searches it), each
trained once for real (smoke size), with its metric after every epoch and its GFLOPs per query
counted before training. A search is replayed by answering each trial from the table: one
sampler run costs milliseconds to seconds, so every comparison runs at N = 16, 32 and 64
trials over 20+ seeds (a tabular benchmark, as in HPO research). The samplers do not know N,
so one 64-trial run per seed gives the results after 16, 32 and 64 trials (its prefixes)
exactly as three runs would.

Objectives: final d2s AP up, GFLOPs down. Hypervolume (``geodistill.leaderboard.pareto``)
against the table's nadir (lowest final AP in the table, 1.1 x the largest GFLOPs); the
table's own front is the best any search can reach. Anchor: random search with the same seed
and budget (ratios are per seed, then median and interquartile range over seeds).

1. Samplers: random; TPE (Optuna's default start-up of 10 random trials, and a small-budget
   start-up of 4); NSGA-II (Optuna's default population 50, and 8, suited to 16-64 trials);
   GP (Optuna's GPSampler, multi-objective logEHVI, 4 start-up trials: about 10 s per 64-trial
   run on one thread); and the model-based ones under a GFLOPs budget (``set_constraint``, as
   the search does).
2. Early stopping: ASHA's rung rule (``geodistill.platform.search.rung.RungRule``, the rule
   the search uses) replayed on the per-epoch curves: epochs trained and hypervolume against
   the same sampler without stopping, for the CLI's sampler at several settings and for each
   model-based sampler at the CLI's setting (what a user of ``--sampler`` gets). A stopped trial is told PRUNED and is not on the front,
   as in the search (``study.py``; the report's front holds status "ok" rows only); the first
   version counted its last value on the front, kept as a comparison figure.
3. Cost known before training: a candidate whose GFLOPs is at least that of the finished trial
   with the best precision so far is skipped (only a better precision could put it on the
   front), counted as a trial (equal asks: epochs saved) or free (equal trained trials:
   hypervolume gained); and a candidate identical to a finished trial is answered from it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl

from _figures import figure  # benchmarks/ is on sys.path when a script here runs
from geodistill.leaderboard.pareto import hypervolume

HERE = Path(__file__).resolve().parent
ANCHOR = "random search, same seed and trial budget"
LIMIT = "hypervolume of the whole table's front"
BUDGETS = (16, 32, 64)
METRIC = "d2s_ap"
GOAL_SAMPLER, GOAL_SAVED = 1.1, 0.40  # issue 17: default sampler vs random at N = 32; epochs saved
# name -> (kind, start-up trials, population); the keys double as figure slugs.
SAMPLERS: dict[str, tuple[str, int, int]] = {
    "random": ("random", 0, 0),
    "tpe-startup10": ("tpe", 10, 0),
    "tpe-startup4": ("tpe", 4, 0),
    "tpe-multivariate-startup4": ("tpe-multivariate", 4, 0),
    "nsga2-pop50": ("nsga2", 0, 50),
    "nsga2-pop8": ("nsga2", 0, 8),
    "gp-startup4": ("gp", 4, 0),
}
GP_PLAIN = ("gp-plain", 4, 0)  # Optuna's GPSampler, which does not see pruned trials
BUDGETED = ("tpe-startup4", "nsga2-pop8", "gp-startup4")  # replayed under a GFLOPs budget too
# (grace period, reduction factor). Milestones are epochs (the search's rung rule stops at epoch
# boundaries, below the last): with 9 epochs per trial, grace 1 compares at epochs 1, 2, 4, 8
# (rf 2), 1, 3 (rf 3) or 1, 4 (rf 4), and rf sets the share that goes on (1/rf).
RUNG_SETTINGS = ((1, 2), (1, 3), (1, 4), (2, 2), (2, 3), (3, 3))


class Table:
    """The recorded grid: knob values -> per-epoch metric curve, epoch seconds and GFLOPs.

    Any recorded file works: configurations with every epoch recorded are kept, and when they do
    not form a complete product grid (a recording cut short, see ``record_search_table.STAGES``)
    the largest complete product grid among them is replayed (``largest_product_grid``), so a
    sampler can never ask for a configuration the table does not hold.
    """

    def __init__(self, path: Path) -> None:
        frame = pl.read_parquet(path)
        columns = [c for c in frame.columns if "__" in c]
        self.epochs = int(frame["epoch"].max())
        complete = frame.group_by("config_id").agg(pl.len().alias("n")).filter(pl.col("n") == self.epochs)
        frame = frame.join(complete.select("config_id"), on="config_id")
        recorded = {tuple(r) for r in frame.select(columns).unique().iter_rows()}
        grid = largest_product_grid(columns, recorded)
        self.recorded, self.left_out = len(recorded), len(recorded) - int(np.prod([len(v) for v in grid]))
        for k, values in zip(columns, grid):
            frame = frame.filter(pl.col(k).is_in(values))
        self.knobs = [k for k, v in zip(columns, grid) if len(v) > 1]  # a single-valued column is fixed
        self.choices = {k: v for k, v in zip(columns, grid) if len(v) > 1}
        self.curves: dict[tuple, np.ndarray] = {}
        self.seconds: dict[tuple, np.ndarray] = {}
        self.gflops: dict[tuple, float] = {}
        for _, rows in frame.sort("epoch").group_by("config_id"):
            key = tuple(rows[k][0] for k in self.knobs)
            self.curves[key] = rows[METRIC].to_numpy()
            self.seconds[key] = rows["epoch_seconds"].to_numpy()
            self.gflops[key] = float(rows["gflops"][0])
        finals = np.array([c[-1] for c in self.curves.values()])
        costs = np.array(list(self.gflops.values()))
        self.reference = (float(finals.min()), 1.1 * float(costs.max()))
        self.best_hv = hv(np.c_[finals, costs], self.reference)

    def __len__(self) -> int:
        return len(self.curves)


def knob_effect(table: Table, knob: str) -> np.ndarray:
    """How much one knob moves the final metric: per group of configurations equal in every other
    knob, the spread (max - min) of their final values [groups]."""
    i = table.knobs.index(knob)
    groups: dict[tuple, list[float]] = {}
    for key, curve in table.curves.items():
        groups.setdefault(key[:i] + key[i + 1 :], []).append(float(curve[-1]))
    return np.array([max(v) - min(v) for v in groups.values()])


def largest_product_grid(columns: list[str], recorded: set[tuple]) -> list[list]:
    """Per column, the values of the largest product grid whose every point is in ``recorded``.

    The whole grid when it is complete; otherwise every combination of value subsets is tried
    (the spaces here have a few values per knob), largest first.
    """
    values = [sorted({r[i] for r in recorded}) for i in range(len(columns))]
    if int(np.prod([len(v) for v in values])) == len(recorded):
        return values
    options = [[list(c) for r in range(len(v), 0, -1) for c in itertools.combinations(v, r)] for v in values]
    best: list[list] = [[v[0]] for v in values]
    best_size = 0
    for choice in itertools.product(*options):
        size = int(np.prod([len(c) for c in choice]))
        if size <= best_size or size > len(recorded):
            continue
        if all(point in recorded for point in itertools.product(*choice)):
            best, best_size = [list(c) for c in choice], size
    return best


def hv(points: np.ndarray, reference: tuple[float, float]) -> float:
    if len(points) == 0:
        return 0.0
    return hypervolume(np.asarray(points, dtype=np.float64), reference, maximize=[True, False])


def make_sampler(kind: str, seed: int, n_startup: int, population: int):
    import optuna

    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup)
    if kind == "tpe-multivariate":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup, multivariate=True)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    if kind == "gp":  # what `--sampler gp` builds: it also models trials stopped early
        from geodistill.platform.search.gp import StoppedTrialsGPSampler

        return StoppedTrialsGPSampler(seed=seed, n_startup_trials=n_startup)
    if kind == "gp-plain":  # Optuna's own: blind to pruned trials
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup)
    raise ValueError(kind)


def replay(
    table: Table,
    sampler,
    n_trials: int,
    *,
    budget: float | None = None,
    rungs: tuple[int, float] | None = None,
    skip: str | None = None,
    free_skips: bool = False,
    stopped_on_front: bool = False,
) -> list[dict]:
    """One search of ``n_trials`` answered from the table; one dict per trial, in order.

    ``budget``: GFLOPs cap set as each trial's constraint (over-budget trials train 0 epochs).
    ``rungs``: (grace period, reduction factor) of ASHA's rung rule (early stopping on the metric).
    ``skip``: "dominated" (cost-dominated by the best finished trial) or "duplicate".
    ``free_skips``: a skipped candidate is not a trial (the search asks again, up to 2 x N asks).
    ``stopped_on_front``: a trial stopped early is told COMPLETE with its last value and counts
    on the front (the first version of this benchmark did so; the search itself prunes it).
    """
    import optuna

    from geodistill.platform.search.gp import STOPPED_VALUES_ATTR
    from geodistill.platform.search.rung import MemoryRungs, RungRule

    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    store = MemoryRungs()
    done: list[dict] = []
    for number in range(2 * n_trials if free_skips else n_trials):
        if len(done) == n_trials:
            break
        trial = study.ask()
        key = tuple(trial.suggest_categorical(k, table.choices[k]) for k in table.knobs)
        cost = table.gflops[key]
        if budget is not None:
            trial.set_constraint("gflops_over_budget", cost - budget)  # known before training
            if cost > budget:
                study.tell(trial, [0.0, cost])
                done.append({"key": key, "gflops": cost, "metric": None, "epochs": 0, "seconds": 0.0})
                continue
        finished = [d for d in done if d["metric"] is not None]
        if skip == "duplicate":
            same = [d for d in finished if d["key"] == key and d["epochs"] == table.epochs]
            if same:  # the table is deterministic: a re-run would give the same result
                study.tell(trial, [same[0]["metric"], cost])
                if not free_skips:
                    done.append({**same[0], "epochs": 0, "seconds": 0.0})
                continue
        if skip == "dominated" and finished:
            best = max(d["metric"] for d in finished)
            if any(d["metric"] >= best and d["gflops"] <= cost for d in finished):
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                if not free_skips:
                    done.append({"key": key, "gflops": cost, "metric": None, "epochs": 0, "seconds": 0.0})
                continue
        curve = table.curves[key]
        epochs = table.epochs
        if rungs is not None:
            rule = RungRule(
                store,
                trial_id=str(number),
                metric=METRIC,
                grace_period=rungs[0],
                reduction_factor=rungs[1],
                max_t=table.epochs,
            )
            for epoch in range(1, table.epochs + 1):
                if rule.should_stop(epoch, {METRIC: float(curve[epoch - 1])}):
                    epochs = epoch
                    break
        metric = float(curve[epochs - 1])
        seconds = float(table.seconds[key][:epochs].sum())
        if epochs < table.epochs and not stopped_on_front:
            # As the search does (study.py): a stopped trial is told PRUNED with its values then
            # as an attribute (which only the GP sampler reads), and the report's front (status
            # "ok" rows) leaves it out.
            trial.set_user_attr(STOPPED_VALUES_ATTR, [metric, cost])
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            done.append({"key": key, "gflops": cost, "metric": None, "epochs": epochs, "seconds": seconds})
            continue
        study.tell(trial, [metric, cost])
        done.append({"key": key, "gflops": cost, "metric": metric, "epochs": epochs, "seconds": seconds})
    return done


def cli_default_sampler() -> str:
    """The SAMPLERS entry that ``--sampler tpe`` builds (``platform.search.tuner.make_sampler``)."""
    from geodistill.platform.search.tuner import TPE_STARTUP_TRIALS, make_sampler

    sampler = make_sampler("tpe", seed=0)
    kind = "tpe-multivariate" if sampler._multivariate else "tpe"
    name = f"{kind}-startup{TPE_STARTUP_TRIALS}"
    assert SAMPLERS.get(name) == (kind, TPE_STARTUP_TRIALS, 0), f"add {name} to SAMPLERS"
    return name


def cli_rungs() -> tuple[int, float]:
    """(grace period, reduction factor) that ``geodistill search`` uses unless told otherwise."""
    from geodistill.platform.search.options import SearchOptions

    defaults = SearchOptions()
    return defaults.grace_period, defaults.reduction_factor


_TABLE: Table | None = None  # one per worker process


def _load(path: str) -> None:
    global _TABLE
    import optuna
    import torch

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # GPSampler's torch: one thread per worker process, no oversubscription
    _TABLE = Table(Path(path))


def _one(job: tuple) -> tuple[list[dict], float]:
    """One replayed search in a worker: (trials, seconds)."""
    (kind, startup, population), seed, n, kwargs = job
    start = time.perf_counter()
    run = replay(_TABLE, make_sampler(kind, 1000 + seed, startup, population), n, **kwargs)
    return run, time.perf_counter() - start


class Replayer:
    """Replays searches over seeds in worker processes (each loads the table once).

    Replays are independent, so seeds run in parallel; sampler seed 1000 + s for every
    variant, so seed s of two variants starts from the same random draws.
    """

    def __init__(self, table_path: str, workers: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_load, initargs=(table_path,))

    def submit(self, variant: tuple[str, int, int], seeds, n: int = max(BUDGETS), **kwargs):
        return [self.pool.submit(_one, (variant, s, n, kwargs)) for s in seeds]

    @staticmethod
    def collect(futures) -> tuple[list[list[dict]], float]:
        """(runs in seed order, median seconds per run)."""
        done = [f.result() for f in futures]
        return [r for r, _ in done], float(np.median([t for _, t in done]))

    def runs(self, variant: tuple[str, int, int], seeds, **kwargs) -> list[list[dict]]:
        return self.collect(self.submit(variant, seeds, **kwargs))[0]


def front_hv(trials: list[dict], reference, upto: int | None = None, cap: float | None = None) -> float:
    pts = [(t["metric"], t["gflops"]) for t in trials[:upto] if t["metric"] is not None]
    if cap is not None:
        pts = [p for p in pts if p[1] <= cap]
    return hv(np.array(pts).reshape(-1, 2), reference)


def hv_matrix(runs: list[list[dict]], reference, budgets=BUDGETS, cap: float | None = None) -> np.ndarray:
    """Hypervolume after each budget's prefix: [seeds, budgets]."""
    return np.array([[front_hv(r, reference, n, cap=cap) for n in budgets] for r in runs])


def summary(ratios: np.ndarray) -> tuple[float, float, float]:
    q25, med, q75 = np.percentile(ratios, [25, 50, 75])
    return float(med), float(q25), float(q75)


def versus(
    prefix: str,
    label: str,
    table: Table,
    runs: list[list[dict]],
    base_runs: list[list[dict]],
    anchor: str,
) -> dict[int, tuple[float, float, float, float]]:
    """Per budget: hypervolume ratio and epochs saved of ``runs`` against ``base_runs`` (same seeds).

    Records one figure per budget and returns {n: (saved, hv median, q25, q75)}.
    """
    out = {}
    for n in BUDGETS:
        ratio = np.array(
            [
                front_hv(r, table.reference, n) / front_hv(b, table.reference, n)
                for r, b in zip(runs, base_runs)
            ]
        )
        saved = np.array(
            [
                1 - sum(t["epochs"] for t in r[:n]) / sum(t["epochs"] for t in b[:n])
                for r, b in zip(runs, base_runs)
            ]
        )
        seconds = np.array(
            [
                1 - sum(t["seconds"] for t in r[:n]) / sum(t["seconds"] for t in b[:n])
                for r, b in zip(runs, base_runs)
            ]
        )
        med, q25, q75 = summary(ratio)
        figure(
            f"{prefix}.n{n}.epochs_saved",
            float(np.median(saved)),
            "fraction",
            label=f"{label}, N = {n}: epochs saved (HV ratio {med:.3f} [{q25:.3f}-{q75:.3f}])",
            anchor=anchor,
            hv_ratio_median=med,
            hv_ratio_q25=q25,
            hv_ratio_q75=q75,
            train_seconds_saved=float(np.median(seconds)),
        )
        out[n] = (float(np.median(saved)), med, q25, q75)
    return out


def main() -> None:
    import optuna

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=str(HERE / "search_table.parquet"))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes replaying seeds, one torch thread each (default: one per core; "
        "`make bench` runs one benchmark at a time)",
    )
    parser.add_argument("--json", default=None, help="also write every per-seed hypervolume here")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if not Path(args.table).is_file():
        print(f"no recorded table at {args.table}: run benchmarks/record_search_table.py first")
        figure("table.configurations", 0, label="configurations in the table (none recorded)")
        return
    table = Table(Path(args.table))
    seeds = range(args.seeds)
    knobs = ", ".join(f"{k.replace('__', '.')} {v}" for k, v in table.choices.items())
    print(f"table: {len(table)} configurations x {table.epochs} epochs; knobs {knobs}")
    if table.left_out:
        print(
            f"{table.left_out} of {table.recorded} recorded configurations are outside the largest "
            "complete product grid and are not replayed"
        )
    print(f"reference point {table.reference}; the table's whole front: hypervolume {table.best_hv:.4g}")
    figure("table.configurations", len(table), label=f"configurations in the table ({knobs})")
    figure("table.best_hv", table.best_hv, label="hypervolume of the whole table (limit)", limit=LIMIT)
    figure(
        "table.distinct_final",
        len({round(float(c[-1]), 6) for c in table.curves.values()}),
        label=f"distinct final {METRIC} values among the configurations",
    )
    for knob in table.knobs:
        spread = knob_effect(table, knob)
        figure(
            f"table.effect.{knob}",
            float(np.mean(spread > 1.0)),
            "fraction",
            label=f"{knob.replace('__', '.')}: share of the {len(spread)} groups differing only in it where it "
            f"moves final {METRIC} by > 1 point (at most {spread.max():.1f})",
            groups=len(spread),
            max_points=float(spread.max()),
        )

    replayer = Replayer(args.table, args.workers)

    # 1. Samplers, without and with a GFLOPs budget (the table's median cost).
    cap = float(np.median(list(table.gflops.values())))
    jobs = {name: replayer.submit(variant, seeds) for name, variant in SAMPLERS.items()}
    capped_jobs = {name: replayer.submit(SAMPLERS[name], seeds, budget=cap) for name in ("random", *BUDGETED)}
    runs: dict[str, list[list[dict]]] = {}
    seconds: dict[str, float] = {}
    for name, futures in jobs.items():
        runs[name], seconds[name] = replayer.collect(futures)
    hvs = {name: hv_matrix(r, table.reference) for name, r in runs.items()}  # [seeds, budgets]
    ratios: dict[tuple[str, int], float] = {}
    for name in SAMPLERS:
        for j, n in enumerate(BUDGETS):
            med, q25, q75 = summary(hvs[name][:, j] / hvs["random"][:, j])
            frac = float(np.median(hvs[name][:, j])) / table.best_hv
            ratios[(name, n)] = med
            figure(
                f"sampler.{name}.n{n}.hv_ratio_median",
                med,
                "x",
                label=f"{name}, N = {n}: HV / random (median over {len(seeds)} seeds; {seconds[name]:.2f} s per run)",
                anchor=ANCHOR,
                q25=q25,
                q75=q75,
                fraction_of_best=frac,
            )

    ref_cap = (table.reference[0], cap)
    cap_hv, cap_trained = {}, {}
    for name, futures in capped_jobs.items():
        capped = replayer.collect(futures)[0]
        cap_hv[name] = hv_matrix(capped, ref_cap, cap=cap)
        cap_trained[name] = np.array([[sum(t["epochs"] > 0 for t in r[:n]) for n in BUDGETS] for r in capped])
    print(f"GFLOPs budget {cap:.4g} (the table's median cost), hypervolume inside the budget:")
    for name in BUDGETED:
        for j, n in enumerate(BUDGETS):
            med, q25, q75 = summary(cap_hv[name][:, j] / cap_hv["random"][:, j])
            figure(
                f"budget.{name}.n{n}.hv_ratio_median",
                med,
                "x",
                label=f"{name} + GFLOPs budget, N = {n}: HV / random under the same budget (trials "
                f"within budget {np.median(cap_trained[name][:, j]):.0f} vs {np.median(cap_trained['random'][:, j]):.0f})",
                anchor=ANCHOR,
                q25=q25,
                q75=q75,
            )

    # The default: the sampler with the best median ratio at N = 32.
    best = max((name for name in SAMPLERS if name != "random"), key=lambda name: ratios[(name, 32)])
    figure(
        "sampler.best_at_n32",
        f"{best}: {ratios[(best, 32)]:.3f}x random "
        + ("(goal >= 1.1x met)" if ratios[(best, 32)] >= GOAL_SAMPLER else "(goal >= 1.1x NOT met)"),
        label="best sampler by median HV / random at N = 32",
    )
    # 2. Early stopping and 3. skipping before training, on the sampler `--sampler tpe` is (the
    # CLI's default: its early stopping is what a user gets), against its runs without them.
    shipped = cli_default_sampler()
    figure(
        "sampler.cli_default_at_n32",
        f"{shipped}: {ratios[(shipped, 32)]:.3f}x random",
        label="the CLI's --sampler tpe, median HV / random at N = 32",
    )
    default = SAMPLERS[shipped]
    base_runs = runs[shipped]
    settings = [(g, rf) for g, rf in RUNG_SETTINGS if g < table.epochs]
    stop_jobs = {setting: replayer.submit(default, seeds, rungs=setting) for setting in settings}
    # The first version's accounting (stopped trials COMPLETE on the front), for comparison.
    kept_jobs = {s: replayer.submit(default, seeds, rungs=s, stopped_on_front=True) for s in settings[:2]}
    skips = (("dominated", False), ("dominated", True), ("duplicate", False), ("duplicate", True))
    skip_jobs = {mode: replayer.submit(default, seeds, skip=mode[0], free_skips=mode[1]) for mode in skips}
    chosen = None
    stop_runs = {setting: replayer.collect(futures)[0] for setting, futures in stop_jobs.items()}
    for (grace, rf), stopped in stop_runs.items():
        result = versus(
            f"asha.grace{grace}.rf{rf:g}",
            f"{shipped} + ASHA grace {grace} rf {rf:g}",
            table,
            stopped,
            base_runs,
            f"the same sampler ({shipped}) without early stopping",
        )
        saved, med = result[32][0], result[32][1]
        if med >= 0.98 and (chosen is None or saved > chosen[2]):
            chosen = (grace, rf, saved, med)
    for (grace, rf), futures in kept_jobs.items():
        versus(
            f"asha.grace{grace}.rf{rf:g}.stopped_on_front",
            f"{shipped} + ASHA grace {grace} rf {rf:g}, stopped trials kept on the front (not as the search does)",
            table,
            replayer.collect(futures)[0],
            base_runs,
            f"the same sampler ({shipped}) without early stopping",
        )
    if chosen:  # early stopping and answering repeats from finished trials, together
        versus(
            f"asha.grace{chosen[0]}.rf{chosen[1]:g}.skip_duplicate",
            f"{shipped} + ASHA grace {chosen[0]} rf {chosen[1]:g} + repeats answered from finished trials",
            table,
            replayer.runs(default, seeds, rungs=chosen[:2], skip="duplicate"),
            base_runs,
            f"the same sampler ({shipped}) without early stopping or skipping",
        )
    figure(
        "asha.best_at_98pct.n32",
        f"grace {chosen[0]}, rf {chosen[1]:g}: {chosen[2]:.1%} of epochs saved at HV ratio {chosen[3]:.3f} "
        + ("(goal >= 40 % met)" if chosen[2] >= GOAL_SAVED else "(goal >= 40 % NOT met)")
        if chosen
        else "no setting keeps >= 98 % of the hypervolume (goal NOT met)",
        label="most epochs saved at >= 98 % of the no-stopping HV, N = 32",
    )
    for (skip, free), futures in skip_jobs.items():
        # Free skips are not in a run: its first n entries are n trained trials, like the base's.
        versus(
            f"skip.{skip}{'.free' if free else ''}",
            f"{shipped}, skip {skip} candidates"
            + (" (skips free: equal trained trials)" if free else " (skips count as trials)"),
            table,
            replayer.collect(futures)[0],
            base_runs,
            f"the same sampler ({shipped}) without skipping",
        )

    # 4. What a user of --sampler gets: each model-based sampler with the CLI's early stopping,
    # against itself without stopping and against random search without stopping.
    rungs = cli_rungs()
    label_rungs = f"ASHA grace {rungs[0]} rf {rungs[1]:g} (the CLI's)"
    model_based = (shipped, "gp-startup4")
    stopped_jobs = {  # the CLI's sampler at the CLI's setting is among the settings above
        name: replayer.submit(SAMPLERS[name], seeds, rungs=rungs)
        for name in model_based
        if name != shipped or rungs not in stop_runs
    }
    plain_jobs = replayer.submit(GP_PLAIN, seeds, rungs=rungs)
    for name in model_based:
        if name in stopped_jobs:
            stopped = replayer.collect(stopped_jobs[name])[0]
        else:
            stopped = stop_runs[rungs]
        if name != shipped:
            versus(
                f"asha.{name}.cli",
                f"{name} + {label_rungs}",
                table,
                stopped,
                runs[name],
                f"the same sampler ({name}) without early stopping",
            )
        hv_stopped = hv_matrix(stopped, table.reference)
        for j, n in enumerate(BUDGETS):
            med, q25, q75 = summary(hv_stopped[:, j] / hvs["random"][:, j])
            figure(
                f"sampler.{name}.cli_asha.n{n}.hv_ratio_median",
                med,
                "x",
                label=f"{name} + {label_rungs}, N = {n}: HV / random without stopping (median over "
                f"{len(seeds)} seeds)",
                anchor=ANCHOR,
                q25=q25,
                q75=q75,
                fraction_of_best=float(np.median(hv_stopped[:, j])) / table.best_hv,
            )
    if args.json:
        Path(args.json).write_text(json.dumps({k: v.tolist() for k, v in hvs.items()}))
    # Without early stopping both GP samplers are the same (no pruned trials); with it, Optuna's own.
    versus(
        "asha.gp-plain-startup4.cli",
        f"gp-startup4 blind to stopped trials (Optuna's GPSampler) + {label_rungs}",
        table,
        replayer.collect(plain_jobs)[0],
        runs["gp-startup4"],
        "the same sampler (gp-startup4) without early stopping",
    )
    replayer.pool.shutdown()


if __name__ == "__main__":
    main()

"""Search samplers, early stopping and cost-dominated skipping, replayed on a recorded table.

Run: python benchmarks/bench_search_replay.py [--seeds 20] [--table benchmarks/search_table.parquet]

The table (``record_search_table.py``) holds every configuration of a grid of the mission's
knobs (student backbone, views, fps, distillation temperature, feature and relation KD
weights), each trained once for real (smoke size), with its metric after every epoch and its
GFLOPs per query counted before training. A search is replayed by answering each trial from
the table: one sampler run costs milliseconds to seconds, so every comparison runs at
N = 16, 32 and 64 trials over 20+ seeds (a tabular benchmark, as in HPO research).

Objectives: final d2s AP up, GFLOPs down. Hypervolume (``geodistill.leaderboard.pareto``)
against the table's nadir: (lowest final AP in the table, 1.1 x the largest GFLOPs); the
table's own front gives the best any search can reach. Anchor: random search with the same
seed and budget (ratios are per seed, then median and interquartile range over seeds).

1. Samplers: random; TPE (Optuna's default start-up of 10 random trials, and a small-budget
   start-up); NSGA-II (Optuna's default population 50, and one suited to the budget); GP
   (Optuna's GPSampler, multi-objective); TPE under a GFLOPs budget (``set_constraint``, as the
   search does), against random under the same budget.
2. Early stopping: ASHA's rung rule (``geodistill.platform`` ``RungRule``, the rule the search
   uses) replayed on the per-epoch curves: epochs trained and hypervolume against the same
   trials run to the end.
3. Cost known before training: a candidate whose GFLOPs is at least that of a finished trial
   with the best precision found so far is skipped (only a better precision could put it on
   the front); and a candidate identical to a finished trial is answered from it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
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


class Table:
    """The recorded grid: knob values -> per-epoch metric curve and GFLOPs."""

    def __init__(self, path: Path) -> None:
        frame = pl.read_parquet(path)
        self.knobs = [c for c in frame.columns if "__" in c]
        self.epochs = int(frame["epoch"].max())
        complete = frame.group_by("config_id").agg(pl.len().alias("n")).filter(pl.col("n") == self.epochs)
        frame = frame.join(complete.select("config_id"), on="config_id")
        # The largest complete product grid (a partial recording covers a prefix of the grid).
        self.choices = {k: sorted(frame[k].unique().to_list()) for k in self.knobs}
        self.curves: dict[tuple, np.ndarray] = {}
        self.gflops: dict[tuple, float] = {}
        for _, rows in frame.sort("epoch").group_by("config_id"):
            key = tuple(rows[k][0] for k in self.knobs)
            self.curves[key] = rows[METRIC].to_numpy()
            self.gflops[key] = float(rows["gflops"][0])
        size = int(np.prod([len(v) for v in self.choices.values()]))
        if size != len(self.curves):
            raise SystemExit(f"{path}: {len(self.curves)} configurations do not form a product grid ({size})")
        finals = np.array([c[-1] for c in self.curves.values()])
        costs = np.array(list(self.gflops.values()))
        self.reference = (float(finals.min()), 1.1 * float(costs.max()))
        self.best_hv = hv(np.c_[finals, costs], self.reference)

    def __len__(self) -> int:
        return len(self.curves)


def hv(points: np.ndarray, reference: tuple[float, float]) -> float:
    if len(points) == 0:
        return 0.0
    return hypervolume(np.asarray(points, dtype=np.float64), reference, maximize=[True, False])


class _Rungs:
    """In-memory ``RungStore`` (one replayed search)."""

    def __init__(self) -> None:
        self.rungs: dict[int, dict[str, float]] = {}

    def record(self, milestone: int, trial_id: str, value: float) -> list[float]:
        rung = self.rungs.setdefault(milestone, {})
        before = [v for t, v in rung.items() if t != trial_id]
        rung.setdefault(trial_id, value)
        return before


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
    if kind == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup)
    raise ValueError(kind)


def replay(
    table: Table,
    sampler,
    n_trials: int,
    *,
    budget: float | None = None,
    rule: Callable[[], object] | None = None,
    skip: str | None = None,
) -> list[dict]:
    """One search of ``n_trials`` answered from the table; one dict per trial, in order.

    ``budget``: GFLOPs cap set as each trial's constraint (over-budget trials train 0 epochs).
    ``rule``: a factory of ASHA rung rules (early stopping on the metric).
    ``skip``: "dominated" (cost-dominated by the best finished trial) or "duplicate".
    """
    import optuna

    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    store = _Rungs()
    done: list[dict] = []
    for number in range(n_trials):
        trial = study.ask()
        key = tuple(trial.suggest_categorical(k, table.choices[k]) for k in table.knobs)
        cost = table.gflops[key]
        if budget is not None:
            trial.set_constraint("gflops_over_budget", cost - budget)  # known before training
            if cost > budget:
                study.tell(trial, [0.0, cost])
                done.append({"key": key, "gflops": cost, "metric": None, "epochs": 0})
                continue
        finished = [d for d in done if d["metric"] is not None]
        if skip == "duplicate":
            same = [d for d in finished if d["key"] == key and d["epochs"] == table.epochs]
            if same:  # the table is deterministic: a re-run would give the same result
                study.tell(trial, [same[0]["metric"], cost])
                done.append({**same[0], "epochs": 0, "copy": True})
                continue
        if skip == "dominated" and finished:
            best = max(d["metric"] for d in finished)
            if any(d["metric"] >= best and d["gflops"] <= cost for d in finished):
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                done.append({"key": key, "gflops": cost, "metric": None, "epochs": 0})
                continue
        curve = table.curves[key]
        epochs = table.epochs
        if rule is not None:
            should_stop = rule(store, str(number))
            for epoch in range(1, table.epochs + 1):
                if should_stop(epoch, {METRIC: float(curve[epoch - 1])}):
                    epochs = epoch
                    break
        metric = float(curve[epochs - 1])
        study.tell(trial, [metric, cost])
        done.append({"key": key, "gflops": cost, "metric": metric, "epochs": epochs})
    return done


def front_hv(trials: list[dict], reference, upto: int | None = None, cap: float | None = None) -> float:
    pts = [(t["metric"], t["gflops"]) for t in trials[:upto] if t["metric"] is not None]
    if cap is not None:
        pts = [p for p in pts if p[1] <= cap]
    return hv(np.array(pts).reshape(-1, 2), reference)


def summary(ratios: np.ndarray) -> tuple[float, float, float]:
    q25, med, q75 = np.percentile(ratios, [25, 50, 75])
    return float(med), float(q25), float(q75)


def main() -> None:
    import optuna

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=str(HERE / "search_table.parquet"))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--json", default=None, help="also write every per-seed hypervolume here")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if not Path(args.table).is_file():
        print(f"no recorded table at {args.table}: run benchmarks/record_search_table.py first")
        figure("table.configurations", 0, label="configurations in the table (none recorded)")
        return
    table = Table(Path(args.table))
    seeds = range(args.seeds)
    n_max = max(BUDGETS)
    knobs = ", ".join(f"{k.replace('__', '.')} {v}" for k, v in table.choices.items())
    print(f"table: {len(table)} configurations x {table.epochs} epochs; knobs {knobs}")
    print(f"reference point {table.reference}; the table's whole front: hypervolume {table.best_hv:.4g}")
    figure("table.configurations", len(table), label="configurations in the table")
    figure("table.best_hv", table.best_hv, label="hypervolume of the whole table (limit)", limit=LIMIT)

    # 1. Samplers. The samplers do not know N, so one 64-trial run per seed gives the
    # hypervolume after 16, 32 and 64 trials (its prefixes) exactly as three runs would.
    variants = {
        "random": ("random", 10, 50),
        "tpe (startup 10, Optuna default)": ("tpe", 10, 50),
        "tpe (startup 4)": ("tpe", 4, 50),
        "tpe multivariate (startup 4)": ("tpe-multivariate", 4, 50),
        "nsga2 (population 50, default)": ("nsga2", 10, 50),
        "nsga2 (population 8)": ("nsga2", 10, 8),
        "gp (startup 4)": ("gp", 4, 50),
    }
    hvs: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for name, (kind, startup, population) in variants.items():
        start = time.perf_counter()
        runs = [replay(table, make_sampler(kind, 1000 + s, startup, population), n_max) for s in seeds]
        seconds[name] = (time.perf_counter() - start) / len(runs)
        hvs[name] = np.array([[front_hv(r, table.reference, n) for n in BUDGETS] for r in runs])  # [seeds,3]
    print(
        "\n| sampler | "
        + " | ".join(f"HV / random, N = {n} (median [IQR])" for n in BUDGETS)
        + " | s per run |"
    )
    print("|---|" + "---|" * (len(BUDGETS) + 1))
    table_rows = {}
    for name in variants:
        cells = []
        for j, n in enumerate(BUDGETS):
            med, q25, q75 = summary(hvs[name][:, j] / hvs["random"][:, j])
            frac = float(np.median(hvs[name][:, j])) / table.best_hv
            cells.append(f"{med:.3f} [{q25:.3f}-{q75:.3f}] ({frac:.1%} of best)")
            table_rows[(name, n)] = (med, q25, q75, frac)
        print(f"| {name} | " + " | ".join(cells) + f" | {seconds[name]:.2f} |")
    for (name, n), (med, q25, q75, frac) in table_rows.items():
        slug = name.split(" ")[0] + (
            "" if "(" not in name else "-" + name.split("(")[1].rstrip(")").replace(" ", "").replace(",", "_")
        )
        figure(
            f"sampler.{slug}.n{n}.hv_ratio_median",
            med,
            "x",
            label=f"{name}, N = {n}: HV / random (median over {len(seeds)} seeds)",
            anchor=ANCHOR,
            q25=q25,
            q75=q75,
            fraction_of_best=frac,
        )

    # GFLOPs budget: the median cost of the table; trials over it train nothing.
    cap = float(np.median(list(table.gflops.values())))
    ref_cap = (table.reference[0], cap)
    cap_hv = {}
    for name, kind in (("random", "random"), ("tpe (startup 4)", "tpe")):
        runs = [replay(table, make_sampler(kind, 1000 + s, 4, 8), n_max, budget=cap) for s in seeds]
        cap_hv[name] = np.array([[front_hv(r, ref_cap, n, cap=cap) for n in BUDGETS] for r in runs])
        cap_hv[name + " trained"] = np.array(
            [[sum(t["epochs"] > 0 for t in r[:n]) for n in BUDGETS] for r in runs]
        )
    print(f"\nGFLOPs budget {cap:.4g} (the table's median cost), hypervolume inside the budget:")
    for j, n in enumerate(BUDGETS):
        med, q25, q75 = summary(cap_hv["tpe (startup 4)"][:, j] / cap_hv["random"][:, j])
        figure(
            f"budget.tpe.n{n}.hv_ratio_median",
            med,
            "x",
            label=f"TPE + budget constraint, N = {n}: HV / random under the same budget (trials trained: "
            f"{np.median(cap_hv['tpe (startup 4) trained'][:, j]):.0f} vs {np.median(cap_hv['random trained'][:, j]):.0f})",
            anchor=ANCHOR,
            q25=q25,
            q75=q75,
        )

    # 2. Early stopping, on the default sampler's trials (TPE, startup 4).
    from geodistill.platform.search.rung import RungRule

    def rule_factory(grace: int, rf: float):
        def make(store, trial_id):
            return RungRule(
                store,
                trial_id=trial_id,
                metric=METRIC,
                grace_period=grace,
                reduction_factor=rf,
                max_t=table.epochs,
            )

        return make

    base_runs = [replay(table, make_sampler("tpe", 1000 + s, 4, 8), n_max) for s in seeds]
    print("\nEarly stopping (TPE startup 4): epochs saved and HV against the same search without stopping")
    best_setting = None
    for grace, rf in ((1, 2), (1, 3), (1, 4), (2, 2)):
        runs = [
            replay(table, make_sampler("tpe", 1000 + s, 4, 8), n_max, rule=rule_factory(grace, rf))
            for s in seeds
        ]
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
            med, q25, q75 = summary(ratio)
            figure(
                f"asha.grace{grace}.rf{rf:g}.n{n}.epochs_saved",
                float(np.median(saved)),
                "fraction",
                label=f"ASHA grace {grace} rf {rf:g}, N = {n}: epochs saved (HV ratio {med:.3f} [{q25:.3f}-{q75:.3f}])",
                anchor="the same searches without early stopping",
                hv_ratio_median=med,
                hv_ratio_q25=q25,
                hv_ratio_q75=q75,
            )
            if n == 32 and med >= 0.98 and (best_setting is None or np.median(saved) > best_setting[2]):
                best_setting = (grace, rf, float(np.median(saved)), med)
    if best_setting:
        figure(
            "asha.best_at_98pct.n32",
            f"grace {best_setting[0]}, rf {best_setting[1]:g}: {best_setting[2]:.0%} of epochs saved at HV ratio {best_setting[3]:.3f}",
            label="most epochs saved at >= 98 % of the no-stopping HV, N = 32",
        )

    # 3. Cost known before training.
    print("\nSkipping candidates before training (TPE startup 4): epochs and HV against no skipping")
    for skip in ("dominated", "duplicate"):
        runs = [replay(table, make_sampler("tpe", 1000 + s, 4, 8), n_max, skip=skip) for s in seeds]
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
            med, q25, q75 = summary(ratio)
            figure(
                f"skip.{skip}.n{n}.epochs_saved",
                float(np.median(saved)),
                "fraction",
                label=f"skip {skip}, N = {n}: epochs saved (HV ratio {med:.3f} [{q25:.3f}-{q75:.3f}])",
                anchor="the same sampler without skipping",
                hv_ratio_median=med,
                hv_ratio_q25=q25,
                hv_ratio_q75=q75,
            )
    if args.json:
        Path(args.json).write_text(json.dumps({k: v.tolist() for k, v in hvs.items()}))


if __name__ == "__main__":
    main()

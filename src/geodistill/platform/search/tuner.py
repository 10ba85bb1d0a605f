"""How the driver builds Tune's objects: the Optuna searcher, ASHA, a new or a restored Tuner.

Kept apart from ``driver.py`` (which decides *what* to run and *where*) so each reads in one go.
Every sampler ``--sampler`` names is picklable (Tune saves the searcher with the experiment):
Optuna's NSGA-II holds a thread lock, so ``PicklableNSGAIISampler`` drops it when saved and
makes a new one when loaded.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
from collections.abc import Mapping
from typing import Any

import optuna
from ray import tune

from geodistill.errors import ConfigError
from geodistill.models.cost import config_cost
from geodistill.platform.search.options import DEFAULT_SAMPLER, SAMPLERS, SearchOptions
from geodistill.platform.search.plan import SearchPlan
from geodistill.platform.search.resume import reconcile_searcher_state, relocate, todays_schedule
from geodistill.platform.search.rows import LeaderboardCallback
from geodistill.platform.search.space import SearchSpace, shared_distributions, suggest

__all__ = ["DEFAULT_SAMPLER", "SAMPLERS", "SearchPaths", "make_sampler", "new_tuner", "restore_tuner"]


@dataclasses.dataclass(frozen=True)
class SearchPaths:
    """Where one experiment's state lives (``driver._locate`` fills it in)."""

    storage_root: str  # Tune's storage (a local absolute path or a URI)
    local: bool
    experiment_path: str
    study_url: str  # the Optuna study's storage URL (``study.open_storage``)
    leaderboard: str


def sample_trial(trial: Any, *, plan: SearchPlan) -> dict[str, Any]:
    """What ``OptunaSearch`` calls per trial: sample the space; cost it when there is a budget."""
    space = plan.space
    params = suggest(trial, space)
    if space.flops_budget is not None:
        cfg = plan.config(params)
        gflops = config_cost(cfg.model, cfg.data.views)["gflops"]
        trial.set_user_attr("gflops", gflops)
        # Feasible when <= 0: GP, TPE and NSGA-II prefer feasible trials (Optuna 5 constraint API).
        trial.set_constraint("gflops_over_budget", gflops - space.flops_budget)
    return params


def plan_gflops(params: Mapping[str, Any], *, plan: SearchPlan, replay: str | None = None) -> float:
    """GFLOPs per query of the trial ``params`` describe (a partial assignment: the rest at the
    space's first values), counted on the meta device, or recorded in the ``replay`` table:
    what ``CostAwareTPESampler`` pays."""
    from geodistill.platform.search.plan import first_assignment

    cfg = plan.config({**first_assignment(plan.space), **params})
    if replay:
        from geodistill.platform.search.replay import config_values, load_table

        table = load_table(replay)
        return table.cost(config_values(cfg, table.knobs))["gflops"]
    return float(config_cost(cfg.model, cfg.data.views)["gflops"])


def define_by_run(trial: Any, *, space: SearchSpace, base: Mapping[str, Any]) -> dict[str, Any]:
    """``sample_trial`` for a searcher saved before ``SearchPlan`` (a resumed older experiment)."""
    from geodistill.train.config import RunConfig

    key = repr(space) + json.dumps(base, sort_keys=True, default=str)
    if key not in _LEGACY_PLANS:
        _LEGACY_PLANS[key] = SearchPlan.build(space, RunConfig.from_dict(base))
    return sample_trial(trial, plan=_LEGACY_PLANS[key])


_LEGACY_PLANS: dict[str, SearchPlan] = {}


# Random start-up trials before the model-based samplers take over (benchmarks/RESULTS.md
# compares the samplers and start-up sizes on the recorded search table).
GP_STARTUP_TRIALS = 4
TPE_STARTUP_TRIALS = 4
TPE_COST_WEIGHT = 1.0  # CostAwareTPESampler: candidates scored per unit of known GFLOPs


class PicklableNSGAIISampler(optuna.samplers.NSGAIISampler):
    """Optuna's NSGA-II, picklable: Tune pickles the searcher, and the sampler's thread lock cannot be."""

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_thread_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()


def make_sampler(
    name: str, *, seed: int | None, plan: SearchPlan | None = None, replay: str | None = None
) -> Any:
    """An Optuna sampler by name (constraints come from the trials).

    ``tpe`` (the default): multivariate TPE (it models the knobs jointly) after
    ``TPE_STARTUP_TRIALS`` start-up trials; given the ``plan``, it pays for each candidate's
    GFLOPs, known before training, start-up draws included (``costaware.CostAwareTPESampler``). ``gp``: Gaussian-process Bayesian optimisation after
    ``GP_STARTUP_TRIALS`` random trials; it models several objectives (logEHVI), the
    GFLOPs-budget constraint (``trial.set_constraint``), the trials still running (a q-batch
    acquisition, so concurrent trials are not asked for the same point) and, unlike Optuna's own
    GPSampler, the trials early stopping ended, at their values then (``gp.StoppedTrialsGPSampler``).
    ``nsga2`` and ``random``: Optuna's defaults.
    """
    import warnings

    if name == "gp":
        from geodistill.platform.search.gp import StoppedTrialsGPSampler

        # A `when:` parameter is outside the space every trial shares: GP samples it at random,
        # by design, so the per-trial warning about it is noise.
        return StoppedTrialsGPSampler(
            seed=seed, n_startup_trials=GP_STARTUP_TRIALS, warn_independent_sampling=False
        )
    if name == "tpe":
        with warnings.catch_warnings():  # multivariate is marked experimental in Optuna 5
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if plan is None:
                return optuna.samplers.TPESampler(
                    seed=seed, n_startup_trials=TPE_STARTUP_TRIALS, multivariate=True
                )
            from geodistill.platform.search.costaware import CostAwareTPESampler

            return CostAwareTPESampler(
                cost=functools.partial(plan_gflops, plan=plan, replay=replay),
                cost_weight=TPE_COST_WEIGHT,
                space=shared_distributions(plan.space),
                seed=seed,
                n_startup_trials=TPE_STARTUP_TRIALS,
                multivariate=True,
            )
    if name == "nsga2":
        return PicklableNSGAIISampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"--sampler must be one of {', '.join(SAMPLERS)}; got {name!r}")


def restore_tuner(
    where: SearchPaths,
    experiment: str,
    plan: SearchPlan,
    trainable: Any,
    callback: LeaderboardCallback,
    *,
    verbose: int,
) -> tune.Tuner:
    """The saved experiment's Tuner (searcher repaired first), writing rows through today's ``callback``."""
    try:
        if where.local:  # a moved folder's state names the old one; a driver killed between
            # Tune's two state files leaves them disagreeing
            relocate(where.experiment_path, study_url=where.study_url)
            repaired = reconcile_searcher_state(
                where.experiment_path,
                study_url=where.study_url,
                study_name=experiment,
                objectives=[plan.metric, plan.space.efficiency],
            )
            if repaired and verbose:
                print(
                    f"resume: {len(repaired)} finished trial(s) were still running in the saved searcher; fixed"
                )
        tuner = tune.Tuner.restore(
            where.experiment_path, trainable=trainable, resume_errored=False, restart_errored=False
        )
    except (ModuleNotFoundError, AttributeError) as err:  # a class saved by another geodistill
        raise ConfigError(
            f"experiment {experiment!r} was saved by a geodistill whose Tune state this one cannot read "
            f"({type(err).__name__}: {err}); continue it with that version or start a new --experiment"
        ) from None
    saved = getattr(tuner, "_local_tuner", None)
    run_config = getattr(saved, "_run_config", None)
    if run_config is not None:  # the saved callback carries the saved plan: write with today's
        run_config.callbacks = [
            callback if type(cb).__name__ == "LeaderboardCallback" else cb
            for cb in run_config.callbacks or []
        ]
        for change in todays_schedule(getattr(saved, "_tune_config", None), run_config):
            if verbose:
                print(f"resume: {experiment!r} was saved by an older geodistill; {change}")
    return tuner


def asha_scheduler(plan: SearchPlan, options: SearchOptions) -> Any:
    """Multi-objective ASHA over epochs, on (metric, GFLOPs) (single-worker trials only: it stops
    them from outside; Ray Train trials ask the same rule themselves, ``rung.RungRule``)."""
    from geodistill.platform.search.scheduler import ParetoASHA

    return ParetoASHA(
        metric=plan.metric,
        max_t=max(plan.max_epochs, options.grace_period),
        grace_period=options.grace_period,
        reduction_factor=options.reduction_factor,
    )


def new_tuner(
    trainable: Any,
    where: SearchPaths,
    experiment: str,
    plan: SearchPlan,
    options: SearchOptions,
    *,
    callbacks: list[Any],
    scheduler: Any | None,
) -> tune.Tuner:
    """A fresh Tuner: Optuna (its study in ``where.study_url``) behind a concurrency limiter."""
    from ray.tune.search import ConcurrencyLimiter

    from geodistill.platform.search.study import StudySearch
    from geodistill.platform.search.study_storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Named objectives, per-epoch values, stopped trials on the front, repeats answered (study.py).
    searcher = StudySearch(
        space=functools.partial(sample_trial, plan=plan),
        metric=[plan.metric, plan.space.efficiency],
        mode=["max", "min"],
        sampler=make_sampler(options.sampler, seed=options.seed, plan=plan, replay=options.replay),
        storage=open_storage(where.study_url),
        study_name=experiment,
    )
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=options.max_concurrent),
            scheduler=scheduler,
            num_samples=options.num_samples,
            time_budget_s=options.time_budget_s,
            reuse_actors=True,  # one trial process per slot: torch and timm import once
        ),
        run_config=tune.RunConfig(
            name=experiment,
            storage_path=where.storage_root,
            callbacks=callbacks,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=options.max_failures),  # retries: node loss
            # verbose 1 is the live table (live.py): Tune's own reporter and the trials' output
            # (to <trial>/stdout, <trial>/stderr) stay off the console; 2 streams both as before.
            verbose=1 if options.verbose >= 2 else 0,
            log_to_file=options.verbose < 2,
            # Those files are artifacts of the trial's local folder: without this they reach the
            # storage (the trial folder a user opens, shared on a cluster) only with a checkpoint.
            sync_config=tune.SyncConfig(sync_artifacts=True),
        ),
    )

"""How the driver builds Tune's objects: the Optuna searcher, ASHA, a new or a restored Tuner.

Kept apart from ``driver.py`` (which decides *what* to run and *where*) so each reads in one go.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

from ray import tune

from geodistill.errors import ConfigError
from geodistill.platform.search.resume import reconcile_searcher_state
from geodistill.platform.search.rows import LeaderboardCallback
from geodistill.platform.search.space import SearchSpace, max_epochs, suggest, trial_config
from geodistill.platform.search.trial import trial_cost

SAMPLERS = ("tpe", "gp", "nsga2", "random")
DEFAULT_SAMPLER = "tpe"  # why: the comment above GP_STARTUP_TRIALS


@dataclasses.dataclass(frozen=True)
class SearchPaths:
    """Where one experiment's state lives (``driver._locate`` fills it in)."""

    storage_root: str  # Tune's storage (a local absolute path or a URI)
    local: bool
    experiment_path: str
    study_url: str  # the Optuna study's storage URL (``study.open_storage``)
    leaderboard: str


def define_by_run(trial: Any, *, space: SearchSpace, base: Mapping[str, Any]) -> dict[str, Any]:
    """What ``OptunaSearch`` calls per trial: sample the space; cost it when there is a budget."""
    params = suggest(trial, space)
    if space.flops_budget is not None:
        gflops = trial_cost(trial_config(space, params, base=base))["gflops"]
        trial.set_user_attr("gflops", gflops)
        # Feasible when <= 0: GP, TPE and NSGA-II prefer feasible trials (Optuna 5 constraint API).
        trial.set_constraint("gflops_over_budget", gflops - space.flops_budget)
    return params


# Random start-up trials before the model-based samplers take over. The evidence is the recorded
# tabular benchmark (1,152 configurations x 9 epochs of real smoke training, learning rate
# included; benchmarks/bench_search_replay.py, RESULTS.md). At N = 32 GP alone reached 1.12x random
# search's hypervolume, multivariate TPE 1.06x; with ASHA (grace 1, rf 3, the CLI's) TPE reached
# 1.11x and GP 1.11x, both at about half the epochs, and only TPE kept >= 98 % of its hypervolume
# under early stopping at every N. TPE's cost per suggestion also stays flat as trials grow (GP's
# grows with their cube), so TPE stays the default.
GP_STARTUP_TRIALS = 4
TPE_STARTUP_TRIALS = 4


def make_sampler(name: str, *, seed: int | None) -> Any:
    """An Optuna sampler by name (constraints come from the trials).

    ``tpe`` (the default): multivariate TPE (it models the knobs jointly) after
    ``TPE_STARTUP_TRIALS`` random trials. ``gp``: Gaussian-process Bayesian optimisation after
    ``GP_STARTUP_TRIALS`` random trials; it models several objectives (logEHVI), the
    GFLOPs-budget constraint (``trial.set_constraint``), the trials still running (a q-batch
    acquisition, so concurrent trials are not asked for the same point) and, unlike Optuna's own
    GPSampler, the trials early stopping ended, at their values then (``gp.StoppedTrialsGPSampler``).
    ``nsga2`` and ``random``: Optuna's defaults.
    """
    import warnings

    import optuna

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
            return optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=TPE_STARTUP_TRIALS, multivariate=True
            )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"--sampler must be one of {', '.join(SAMPLERS)}; got {name!r}")


def restore_tuner(
    where: SearchPaths,
    experiment: str,
    space: SearchSpace,
    trainable: Any,
    callback: LeaderboardCallback,
    *,
    verbose: int,
) -> tuple[tune.Tuner, LeaderboardCallback]:
    """The saved experiment's Tuner (searcher repaired first) and the leaderboard callback to use."""
    if where.local:  # a driver killed between Tune's two state files leaves them disagreeing
        repaired = reconcile_searcher_state(
            where.experiment_path,
            study_url=where.study_url,
            study_name=experiment,
            objectives=[space.metric, space.efficiency],
        )
        if repaired and verbose:
            print(
                f"resume: {len(repaired)} finished trial(s) were still running in the saved searcher; fixed"
            )
    tuner = tune.Tuner.restore(
        where.experiment_path, trainable=trainable, resume_errored=False, restart_errored=False
    )
    restored = find_callback(tuner)
    if restored is not None:  # the callback Tune saved with the experiment: point it at today's root
        restored.root, callback = where.leaderboard, restored
    return tuner, callback


def asha_scheduler(
    space: SearchSpace, base: Mapping[str, Any], grace_period: int, reduction_factor: float
) -> Any:
    """ASHA over epochs (single-worker trials only: it may stop them from outside)."""
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="epoch",
        metric=space.metric,
        mode="max",
        max_t=max(max_epochs(space, base), grace_period),
        grace_period=grace_period,
        reduction_factor=reduction_factor,
    )


def new_tuner(
    trainable: Any,
    where: SearchPaths,
    experiment: str,
    space: SearchSpace,
    base: dict[str, Any],
    *,
    callbacks: list[Any],
    sampler: str,
    seed: int | None,
    num_samples: int,
    max_concurrent: int,
    time_budget_s: float | None,
    scheduler: Any | None,
    verbose: int,
    max_failures: int = 0,
) -> tune.Tuner:
    """A fresh Tuner: Optuna (its study in ``where.study_url``) behind a concurrency limiter."""
    import optuna
    from ray.tune.search import ConcurrencyLimiter

    from geodistill.platform.search.study import StudySearch
    from geodistill.platform.search.study_storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Named objectives, per-epoch intermediate values, early-stopped trials PRUNED (study.py).
    searcher = StudySearch(
        space=functools.partial(define_by_run, space=space, base=base),
        metric=[space.metric, space.efficiency],
        mode=["max", "min"],
        sampler=make_sampler(sampler, seed=seed),
        storage=open_storage(where.study_url),
        study_name=experiment,
    )
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=max_concurrent),
            scheduler=scheduler,
            num_samples=num_samples,
            time_budget_s=time_budget_s,
            reuse_actors=True,  # one trial process per slot: torch and timm import once
        ),
        run_config=tune.RunConfig(
            name=experiment,
            storage_path=where.storage_root,
            callbacks=callbacks,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=max_failures),  # retries: node loss
            # verbose 1 is the live table (live.py): Tune's own reporter and the trials' output
            # (to <trial>/stdout, <trial>/stderr) stay off the console; 2 streams both as before.
            verbose=1 if verbose >= 2 else 0,
            log_to_file=verbose < 2,
            # Those files are artifacts of the trial's local folder: without this they reach the
            # storage (the trial folder a user opens, shared on a cluster) only with a checkpoint.
            sync_config=tune.SyncConfig(sync_artifacts=True),
        ),
    )


def find_callback(tuner: Any) -> Any | None:
    """The restored experiment's own leaderboard callback (it was saved with the Tuner)."""
    internal = getattr(tuner, "_local_tuner", None)
    run_config = getattr(internal, "_run_config", None) if internal is not None else None
    for cb in getattr(run_config, "callbacks", None) or []:
        if type(cb).__name__ == "LeaderboardCallback":
            return cb
    return None

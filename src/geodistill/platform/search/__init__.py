"""Ray Tune + Optuna search: precision up, GFLOPs down, one leaderboard row per trial.

The package, in the order a search runs:

- ``space``   the search space, all of it: YAML -> validated ``SearchSpace`` -> Optuna
              sampling (``suggest``) -> one trial's ``RunConfig`` (``trial_config``), and what
              the space implies for the search (``first_assignment``, ``uses_ray_train``,
              ``max_epochs``).
- ``driver``  ``run_search``, its steps named top to bottom; ``SearchResult``; Pareto printing.
- ``tuner``   the Optuna searcher, ASHA, a new or restored ``Tuner``.
- ``gp``      ``--sampler gp``: Optuna's GP sampler, also fitted to the trials early stopping ended.
- ``trial``   the body of one trial (``run_trial``, ``TrialSetup``, ``TuneTrialContext``) and
              its cost (``trial_cost``).
- ``rows``    leaderboard rows (``trial_row``, ``write_run_row``, ``LeaderboardCallback``,
              ``trial_error``).
- ``rung``    the rung rule multi-worker trials stop themselves with.
- ``resume``  repairing a searcher state a killed driver left behind.
- ``teacher`` the small teacher ``--smoke-test`` trains.

Public names are importable from the package (``from geodistill.platform.search import
run_search``); they load lazily, so reading a space (``search.space``) does not import Ray Tune.
"""

from __future__ import annotations

from geodistill.lazy import lazy_exports

_HOME = {
    # driver
    "run_search": "driver",
    "SearchResult": "driver",
    "resolve_storage": "driver",
    "study_url": "driver",
    "format_pareto": "driver",
    # tuner
    "SAMPLERS": "tuner",
    "make_sampler": "tuner",
    "define_by_run": "tuner",
    # space
    "SearchSpace": "space",
    "ParamSpec": "space",
    "load_space": "space",
    "parse_space": "space",
    "resolve_space": "space",
    "suggest": "space",
    "trial_config": "space",
    "first_assignment": "space",
    "uses_ray_train": "space",
    "max_epochs": "space",
    # trial
    "run_trial": "trial",
    "TrialSetup": "trial",
    "TuneTrialContext": "trial",
    "trial_cost": "trial",
    # rows
    "trial_row": "rows",
    "write_run_row": "rows",
    "LeaderboardCallback": "rows",
    "trial_error": "rows",
    # the rest
    "RungRule": "rung",
    "FileRungStore": "rung",
    "RayRungStore": "rung",
    "reconcile_searcher_state": "resume",
    "train_teacher_for": "teacher",
}

__all__ = sorted(_HOME)
__getattr__, __dir__ = lazy_exports(__name__, _HOME)

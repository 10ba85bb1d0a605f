"""Ray Tune + Optuna search: precision up, GFLOPs down, one leaderboard row per trial.

The package, in the order a search runs:

- ``options`` ``SearchOptions``: every setting of a search, its default and help (the CLI's flags).
- ``space``   the search space: YAML -> validated ``SearchSpace`` -> Optuna sampling (``suggest``).
- ``plan``    ``SearchPlan``: the space and the base config, built once; composes each trial's
              ``RunConfig`` (the one place) and knows the stage, Ray Train, the epoch budget.
- ``console`` what ``geodistill search`` runs (``search_command``) and prints.
- ``driver``  ``run_search(space, base, options)``, its steps named top to bottom; ``SearchResult``.
- ``tuner``   the Optuna searcher (every sampler picklable), ASHA, a new or restored ``Tuner``.
- ``gp``      ``--sampler gp``: Optuna's GP sampler, also fitted to the trials early stopping ended.
- ``trial``   the body of one trial (``run_trial``, ``TrialSetup``, ``TuneTrialContext``).
- ``rows``    the Tune callback writing each trial's leaderboard row (``leaderboard.rows``).
- ``rung``    the rung rule multi-worker trials stop themselves with.
- ``resume``  repairing the searcher state a killed driver left.
- ``teacher`` the small teacher ``--smoke-test`` trains; ``study``/``live``: the study, the table.

Public names load lazily from the package: reading a space or building options imports no Ray.
"""

from __future__ import annotations

from geodistill.lazy import lazy_exports

_HOME = {
    # options and plan
    "SearchOptions": "options",
    "SAMPLERS": "options",
    "SearchPlan": "plan",
    "first_assignment": "plan",
    # driver and console
    "run_search": "driver",
    "SearchResult": "driver",
    "resolve_storage": "driver",
    "study_url": "driver",
    "search_command": "console",
    "format_pareto": "console",
    # tuner
    "make_sampler": "tuner",
    "sample_trial": "tuner",
    # space
    "SearchSpace": "space",
    "ParamSpec": "space",
    "load_space": "space",
    "parse_space": "space",
    "resolve_space": "space",
    "suggest": "space",
    # trial
    "run_trial": "trial",
    "TrialSetup": "trial",
    "TuneTrialContext": "trial",
    # rows
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

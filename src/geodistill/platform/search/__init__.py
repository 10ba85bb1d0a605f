"""Ray Tune + Optuna search: precision up, GFLOPs down, one leaderboard row per trial.

In the order a search runs: ``options`` (``SearchOptions``, the CLI's flags), ``space`` (YAML ->
``SearchSpace`` -> ``suggest``), ``plan`` (``SearchPlan``: composes each trial's config, the one
place), ``console`` (what ``geodistill search`` runs and prints), ``driver`` (``run_search``),
``tuner``/``costaware``/``gp`` (the Optuna searcher and samplers), ``scheduler``/``rung`` (early
stopping by Pareto rank), ``trial`` (one trial's body), ``replay`` (trials answered from a
recorded table), ``rows`` (the leaderboard callback), ``study``/``live``/``resume``/``teacher``/
``disk``/``experiment_lock`` (the study, the live table, repairs, the smoke teacher, disk, one
driver per experiment). docs/architecture.md draws how they connect. Public names load lazily:
reading a space or building options imports no Ray.
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

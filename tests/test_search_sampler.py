"""Optuna's GP sampler as `make_sampler` builds it for `--sampler gp` (no Ray).

What the search relies on: two objectives, the GFLOPs-budget constraint set on each trial
(``trial.set_constraint``), PRUNED trials in the study (ASHA), and concurrent trials (asked
before the running ones are told) that must not be sent to the same point.
"""

from __future__ import annotations

import optuna
import pytest

from geodistill.platform.search.tuner import DEFAULT_SAMPLER, GP_STARTUP_TRIALS, SAMPLERS, make_sampler

WIDTHS, VIEWS, BUDGET = [1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 4, 8], 16


def _ask(study: optuna.Study) -> tuple[optuna.Trial, int, int]:
    trial = study.ask()
    width, views = trial.suggest_categorical("width", WIDTHS), trial.suggest_categorical("views", VIEWS)
    trial.set_constraint("over_budget", width * views - BUDGET)  # feasible when <= 0, as define_by_run
    return trial, width, views


def _tell(study: optuna.Study, trial: optuna.Trial, width: int, views: int) -> None:
    study.tell(trial, [min(width, 5) * 10 + views, width * views])  # precision up, cost down


def test_the_cli_default_is_the_tuners_default():
    import argparse

    from geodistill.platform.commands.search import register

    subparsers = argparse.ArgumentParser().add_subparsers()
    register(subparsers)
    assert subparsers.choices["search"].get_default("sampler") == DEFAULT_SAMPLER == "tpe"
    assert DEFAULT_SAMPLER in SAMPLERS


def test_gp_respects_the_budget_prunes_and_running_trials():
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler("gp", seed=0))
    for i in range(GP_STARTUP_TRIALS):
        trial, width, views = _ask(study)
        if i == 0:  # an ASHA-stopped trial: PRUNED, no values
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            _tell(study, trial, width, views)
    # Two trials asked before either is told (two trials running at once): different points.
    (a, *pa), (b, *pb) = _ask(study), _ask(study)
    assert pa != pb
    _tell(study, a, *pa)
    _tell(study, b, *pb)
    feasible = []
    for _ in range(10):
        trial, width, views = _ask(study)
        _tell(study, trial, width, views)
        feasible.append(width * views <= BUDGET)
    # 22 of the 32 points are within budget: random sampling keeps 10 of 10 with p = 0.69^10 = 2 %.
    assert all(feasible), feasible


def test_an_unknown_sampler_is_a_config_error():
    from geodistill.errors import ConfigError

    with pytest.raises(ConfigError, match="--sampler must be one of tpe, gp, nsga2, random; got 'grid'"):
        make_sampler("grid", seed=0)

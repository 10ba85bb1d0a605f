"""Optuna's GP sampler as `make_sampler` builds it for `--sampler gp` (no Ray).

What the search relies on: two objectives, the GFLOPs-budget constraint set on each trial
(``trial.set_constraint``), PRUNED trials in the study (ASHA), and concurrent trials (asked
before the running ones are told) that must not be sent to the same point.
"""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from geodistill.leaderboard.pareto import pareto_mask
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

    from geodistill.platform.cli.commands.search import register

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


def test_gp_models_trials_stopped_early_at_their_values_then_and_the_study_keeps_them_pruned():
    """Plain GPSampler fits COMPLETE trials only; ours also fits PRUNED ones that carry their values."""
    from geodistill.platform.search.gp import STOPPED_VALUES_ATTR, StoppedTrialsGPSampler

    fitted: list[list[list[float]]] = []

    class Recording(StoppedTrialsGPSampler):
        def _sample_relative_impl(self, study, completed_trials, running_trials, search_space):
            fitted.append([t.values for t in completed_trials])
            return super()._sample_relative_impl(study, completed_trials, running_trials, search_space)

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=Recording(seed=0, n_startup_trials=4)
    )
    for i in range(5):
        trial, width, views = _ask(study)
        if i in (1, 3):  # stopped by ASHA; i = 3 recorded no values
            if i == 1:  # values that dominate every finished trial (precision <= 58, cost >= 1)
                trial.set_user_attr(STOPPED_VALUES_ATTR, [100.0, 1.0])
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            _tell(study, trial, width, views)
    assert isinstance(make_sampler("gp", seed=0), StoppedTrialsGPSampler)  # what --sampler gp builds
    _ask(study)  # 3 COMPLETE + 1 stopped with values: past the 4 start-up trials, the model is fitted
    assert len(fitted) == 1 and len(fitted[0]) == 4
    assert [100.0, 1.0] in fitted[0]
    # The study itself is unchanged: had the view leaked into it (an in-memory study hands out its
    # own trial objects), the stopped trial would be COMPLETE and the whole front by itself.
    assert study.trials[1].state == optuna.trial.TrialState.PRUNED
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    on_front = pareto_mask(np.array([t.values for t in finished]), [True, False])
    assert {t.number for t in study.best_trials} == {t.number for t, on in zip(finished, on_front) if on}
    assert 1 not in {t.number for t in study.best_trials}

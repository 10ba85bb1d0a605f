"""CostAwareTPESampler pays for a candidate's known GFLOPs: it samples cheap configurations more."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from geodistill.platform.search.costaware import CostAwareTPESampler, _uniform

COST = {"small": 0.01, "medium": 0.1, "large": 1.0}


def _share_large(sampler: optuna.samplers.BaseSampler, trials: int = 40) -> float:
    """A study where precision ignores the model: only cost separates the choices."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    picks = []
    for _ in range(trials):
        trial = study.ask()
        model = trial.suggest_categorical("model", list(COST))
        lr = trial.suggest_categorical("lr", [1, 2, 3])
        picks.append(model)
        study.tell(trial, [float(lr), COST[model]])
    return picks.count("large") / len(picks)


def _cost_aware(weight: float, seed: int) -> CostAwareTPESampler:
    return CostAwareTPESampler(
        cost=lambda p: COST[p["model"]], cost_weight=weight, seed=seed, n_startup_trials=4, multivariate=True
    )


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_candidates_pay_for_their_cost():
    plain = [
        _share_large(optuna.samplers.TPESampler(seed=s, n_startup_trials=4, multivariate=True))
        for s in range(3)
    ]
    aware = [_share_large(_cost_aware(1.0, s)) for s in range(3)]
    # Precision does not depend on the model, so only the cost weight moves the share.
    assert sum(aware) < 0.5 * sum(plain), (aware, plain)
    # Weight 0 is plain TPE: the same draws as Optuna's own sampler with the same seed.
    assert _share_large(_cost_aware(0.0, 5)) == _share_large(
        optuna.samplers.TPESampler(seed=5, n_startup_trials=4, multivariate=True)
    )


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_start_up_draws_favour_cheap_configurations():
    sampler = _cost_aware(3.0, 0)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    space = {"model": optuna.distributions.CategoricalDistribution(list(COST))}
    draws = [sampler._startup(space)["model"] for _ in range(50)]
    # Weights cost^-3: small 1e6, medium 1e3, large 1: "large" is nearly never drawn.
    assert draws.count("small") > 40 and "large" not in draws
    assert study.trials == []


def _first_picks(space: dict | None, seeds: range = range(20)) -> list[str]:
    """The model each of 4 trials started before any finished picks (4 concurrent start-up trials)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    picks = []
    for seed in seeds:
        sampler = CostAwareTPESampler(
            cost=lambda p: COST[p["model"]], seed=seed, n_startup_trials=4, multivariate=True, space=space
        )
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        for trial in [study.ask() for _ in range(4)]:
            picks.append(trial.suggest_categorical("model", list(COST)))
            lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
            assert 1e-4 <= lr <= 1e-2
    return picks


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_the_first_trials_are_cost_weighted_once_the_space_is_known():
    """Optuna learns the space from finished trials, so without ``space`` the trials started
    before any finished are uniform draws: on the recorded table the first one alone could
    spend more compute than issue 28's whole goal."""
    space = {
        "model": optuna.distributions.CategoricalDistribution(list(COST)),
        "lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),  # continuous knobs too
    }
    blind, known = _first_picks(None), _first_picks(space)
    assert blind.count("large") >= 15  # uniform: about a third of 80
    # Weights 1 / GFLOPs: a pool of 24 draws picks "large" with about 1 % probability.
    assert known.count("large") <= 3 and known.count("small") >= 60, known


def test_uniform_draws_stay_on_each_distributions_grid():
    rng = np.random.RandomState(0)
    grids = [
        optuna.distributions.FloatDistribution(0.0, 1.0, step=0.25),
        optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
        optuna.distributions.IntDistribution(1, 16, log=True),
        optuna.distributions.IntDistribution(2, 10, step=4),
    ]
    for grid in grids:
        values = {_uniform(grid, rng) for _ in range(200)}
        assert all(grid._contains(grid.to_internal_repr(v)) for v in values), (grid, values)
    assert {_uniform(grids[0], rng) for _ in range(200)} == {0.0, 0.25, 0.5, 0.75, 1.0}
    assert {_uniform(grids[3], rng) for _ in range(200)} == {2, 6, 10}

"""CostAwareTPESampler pays for a candidate's known GFLOPs: it samples cheap configurations more."""

from __future__ import annotations

import optuna
import pytest

from geodistill.platform.search.costaware import CostAwareTPESampler

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

"""Multivariate TPE that uses a candidate's GFLOPs, known exactly before training, instead of learning it.

A front search spends its compute on trials (epochs x GFLOPs), and a configuration's GFLOPs per
query is counted before it trains; plain TPE learns which knobs are costly from finished trials
and spends most of its compute on expensive configurations never on the front.
``CostAwareTPESampler`` scores TPE's candidates by ``log l(x) - log g(x)`` minus
``cost_weight * ln(GFLOPs(x))`` (improvement per unit of compute, as in cost-aware Bayesian
optimisation) and draws its start-up trials with probability ~ ``GFLOPs ** -cost_weight``
(``cost_weight=0`` is plain TPE; benchmarks/RESULTS.md chose the weight). Given the ``space``
every trial shares, start-up draws are cost-weighted from the first trial on: Optuna alone learns
a define-by-run space from finished trials, so the first draws would be uniform (docs/evidence.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState


class CostAwareTPESampler(optuna.samplers.TPESampler):
    """TPE whose candidates pay for their known cost (see the module docstring)."""

    def __init__(
        self,
        *,
        cost: Callable[[Mapping[str, Any]], float],
        cost_weight: float = 1.0,
        startup_pool: int = 24,
        space: Mapping[str, BaseDistribution] | None = None,
        **tpe: Any,
    ) -> None:
        super().__init__(**tpe)
        self._cost, self._cost_weight, self._startup_pool = cost, cost_weight, startup_pool
        self._shared = dict(space or {})  # the space every trial samples (space.shared_distributions)
        self._space: dict[str, Any] | None = None

    def _finished(self, study: optuna.Study) -> int:
        states = (TrialState.COMPLETE, TrialState.PRUNED)
        return len(study._get_trials(deepcopy=False, states=states, use_cache=True))

    def infer_relative_search_space(self, study: optuna.Study, trial: Any) -> dict[str, BaseDistribution]:
        # getattr: a sampler pickled with a search begun before ``space`` existed has none.
        shared = getattr(self, "_shared", None)
        if shared and self._cost_weight != 0 and self._finished(study) < self._n_startup_trials:
            return dict(shared)  # start-up: the whole shared space, before any trial has shown it
        return super().infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: Any, search_space: dict[str, Any]
    ) -> dict[str, Any]:
        if not search_space or self._cost_weight == 0:
            return super().sample_relative(study, trial, search_space)
        if self._finished(study) < self._n_startup_trials:
            return self._startup(search_space)
        self._space = search_space
        try:
            return super().sample_relative(study, trial, search_space)
        finally:
            self._space = None

    def _startup(self, search_space: dict[str, Any]) -> dict[str, Any]:
        """One of ``startup_pool`` uniform draws, drawn with probability ~ GFLOPs ** -cost_weight."""
        if self._startup_pool < 2:
            return {}  # TPE's own random start-up (independent sampling)
        rng = self._rng.rng
        pool = [
            {name: _uniform(d, rng) for name, d in search_space.items()} for _ in range(self._startup_pool)
        ]
        weights = np.array([self._cost(p) for p in pool], dtype=np.float64) ** -self._cost_weight
        return pool[int(rng.choice(len(pool), p=weights / weights.sum()))]

    def _compute_acquisition_func(
        self, samples: dict[str, np.ndarray], mpe_below: Any, mpe_above: Any
    ) -> np.ndarray:
        acq = super()._compute_acquisition_func(samples, mpe_below, mpe_above)
        if self._space is None:
            return acq
        names = list(samples)
        size = len(acq)
        costs = [
            self._cost({n: self._space[n].to_external_repr(samples[n][i]) for n in names})
            for i in range(size)
        ]
        return acq - self._cost_weight * np.log(np.asarray(costs, dtype=np.float64))


def _uniform(distribution: BaseDistribution, rng: np.random.RandomState) -> Any:
    """One uniform draw from an Optuna distribution (log-uniform where it is ``log``), as
    Optuna's RandomSampler draws it: a choice, a float, or an int on the distribution's grid."""
    if isinstance(distribution, CategoricalDistribution):
        return distribution.choices[rng.randint(len(distribution.choices))]
    low, high, step, log = distribution.low, distribution.high, distribution.step, distribution.log
    if log:
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    if isinstance(distribution, FloatDistribution):
        if step is None:
            return float(min(max(value, low), high))
        return float(low + step * min(round((value - low) / step), int((high - low) / step)))
    return int(min(max(low + step * round((value - low) / step), low), high))  # IntDistribution

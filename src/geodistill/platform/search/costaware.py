"""Multivariate TPE that uses a candidate's GFLOPs, known exactly before training, instead of learning it.

A search for the precision-versus-cost front spends its compute on trials (epochs x GFLOPs), and
a configuration's GFLOPs per query is counted on the meta device before it trains. Plain TPE
learns which knobs are costly from finished trials and spends most of its compute on expensive
configurations that are never on the front. ``CostAwareTPESampler`` scores TPE's candidates by
its usual ``log l(x) - log g(x)`` minus ``cost_weight * ln(GFLOPs(x))`` (improvement per unit
of compute, as in cost-aware Bayesian optimisation), and draws its random start-up trials with
probability proportional to ``GFLOPs ** -cost_weight``. ``cost_weight=0`` is plain TPE.
The search benchmark (benchmarks/RESULTS.md) chose the weight.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState


class CostAwareTPESampler(optuna.samplers.TPESampler):
    """TPE whose candidates pay for their known cost (see the module docstring)."""

    def __init__(
        self,
        *,
        cost: Callable[[Mapping[str, Any]], float],
        cost_weight: float = 1.0,
        startup_pool: int = 24,
        **tpe: Any,
    ) -> None:
        super().__init__(**tpe)
        self._cost, self._cost_weight, self._startup_pool = cost, cost_weight, startup_pool
        self._space: dict[str, Any] | None = None

    def sample_relative(
        self, study: optuna.Study, trial: Any, search_space: dict[str, Any]
    ) -> dict[str, Any]:
        if not search_space or self._cost_weight == 0:
            return super().sample_relative(study, trial, search_space)
        states = (TrialState.COMPLETE, TrialState.PRUNED)
        if len(study._get_trials(deepcopy=False, states=states, use_cache=True)) < self._n_startup_trials:
            return self._startup(search_space)
        self._space = search_space
        try:
            return super().sample_relative(study, trial, search_space)
        finally:
            self._space = None

    def _startup(self, search_space: dict[str, Any]) -> dict[str, Any]:
        """One of ``startup_pool`` uniform draws, drawn with probability ~ GFLOPs ** -cost_weight."""
        if self._startup_pool < 2 or not all(
            isinstance(d, CategoricalDistribution) for d in search_space.values()
        ):
            return {}  # continuous knobs: TPE's own random start-up (independent sampling)
        rng = self._rng.rng
        pool = [
            {name: d.choices[rng.randint(len(d.choices))] for name, d in search_space.items()}
            for _ in range(self._startup_pool)
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

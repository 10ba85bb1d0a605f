"""Multi-objective ASHA for Tune: ``rung.RungRule``'s decisions, made from the driver.

Ray's ``ASHAScheduler`` compares trials at a rung on the metric alone, so a cheap model is
stopped for being less precise than an expensive one and the cheap end of the front is lost.
``ParetoASHA`` asks, for each trial, the same ``RungRule`` a Ray Train trial asks itself (one
decision function, ``rung.pareto_stop``, with the GFLOPs every result carries), keeping the
rungs in memory; it is an ``AsyncHyperBandScheduler`` (one bracket) for Tune's bookkeeping and
is saved with the experiment like it.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from geodistill.platform.search.rung import MemoryRungs, RungRule


class ParetoASHA(AsyncHyperBandScheduler):
    """ASHA whose rung decision is Pareto rank on (``metric``, ``cost``) (``rung.pareto_stop``)."""

    def __init__(
        self,
        *,
        metric: str,
        mode: str = "max",
        cost: str = "gflops",
        time_attr: str = "epoch",
        max_t: int,
        grace_period: int = 1,
        reduction_factor: float = 4,
    ) -> None:
        super().__init__(
            time_attr=time_attr,
            metric=metric,
            mode=mode,
            max_t=max_t,
            grace_period=grace_period,
            reduction_factor=reduction_factor,
            brackets=1,
        )
        self._cost, self._grace, self._rf = cost, grace_period, reduction_factor
        self._store = MemoryRungs()
        self._rules: dict[str, RungRule] = {}

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._rules.pop(trial.trial_id, None)

    def _rule(self, trial_id: str, cost: float | None) -> RungRule:
        if trial_id not in self._rules:
            self._rules[trial_id] = RungRule(
                self._store,
                trial_id=trial_id,
                metric=self._metric,
                mode=self._mode,
                grace_period=self._grace,
                reduction_factor=self._rf,
                max_t=self._max_t,
                cost=cost,
            )
        return self._rules[trial_id]

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if self._time_attr not in result or self._metric not in result or result.get("over_budget"):
            return TrialScheduler.CONTINUE
        cost = result.get(self._cost)
        rule = self._rule(trial.trial_id, None if cost is None else float(cost))
        if rule.should_stop(int(result[self._time_attr]), result):
            self._num_stopped += 1
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._rules.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._rules.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        rungs = ", ".join(f"epoch {m}: {len(v)}" for m, v in sorted(self._store.rungs.items()))
        return f"Using Pareto ASHA: num_stopped={self._num_stopped}; trials per rung {rungs or 'none'}"

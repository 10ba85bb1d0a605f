"""An honest Optuna study: named objectives, per-epoch values, early-stopped trials PRUNED.

Ray Tune's ``OptunaSearch`` leaves three things out that a researcher opening the study
(``optuna-dashboard``, ``optuna.load_study``) relies on:

- the objectives have no names (the dashboard shows "Objective 0/1"): ``set_metric_names``
  gives them the search's metric and ``gflops``;
- a multi-objective study gets no intermediate values (``Trial.report`` refuses
  multi-objective studies, so ``OptunaSearch.on_trial_result`` returns early): every epoch's
  metric is kept live in the trial's ``epoch_values`` attribute and, once the trial is told
  COMPLETE (or FAIL), written as its intermediate values through the storage call
  ``Trial.report`` itself makes (``set_trial_intermediate_value``), step = epoch. A PRUNED
  trial keeps its curve in ``epoch_values`` only: Optuna's TPE ranks pruned trials by their
  last intermediate value with ``study.direction``, which raises on a multi-objective study,
  so a pruned trial with intermediate values would end the next TPE suggestion;
- a trial stopped early (ASHA, the rung rule, the time budget) is told COMPLETE with its
  under-trained values, so it sits in the study's Pareto front and feeds the sampler, while
  the leaderboard marks it "stopped" and the report leaves it out. Here it is told PRUNED
  (``best_trials`` and the samplers' multi-objective models use COMPLETE trials only), so
  ``study.best_trials`` is the report's Pareto front.

Every Optuna trial carries the Tune trial id (user attribute ``tune_trial_id``, the
leaderboard's ``trial_id``), its per-epoch values (``epoch_values``), and a pruned one the
epoch it stopped at (``stopped_at_epoch``) and its objective values then (``stopped_values``,
which ``gp.StoppedTrialsGPSampler`` models).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from geodistill.platform.search.gp import STOPPED_VALUES_ATTR

TRIAL_ID_ATTR = "tune_trial_id"
STOPPED_AT_ATTR = "stopped_at_epoch"
EPOCH_VALUES_ATTR = "epoch_values"  # {"1": value, "2": value, ...}: the first objective per epoch

log = logging.getLogger(__name__)


def stopped_early(result: Mapping[str, Any] | None) -> bool:
    """Whether a trial's last result is short of its planned epochs (the leaderboard's "stopped").

    Over-budget trials (refused before training) are not "stopped early": they stay COMPLETE
    with their cost, and their violated constraint keeps them off the front.
    """
    if not result or result.get("over_budget"):
        return False
    if result.get("stopped_early"):
        return True
    epoch, planned = result.get("epoch"), result.get("epochs_planned")
    return epoch is not None and planned is not None and int(epoch) < int(planned)


class StudySearch(OptunaSearch):
    """``OptunaSearch`` that names its objectives, records every epoch and prunes stopped trials."""

    @property
    def _metrics(self) -> list[str]:
        """The objectives' names, in order (the search's metric, then its efficiency)."""
        return list(self._metric) if isinstance(self._metric, list) else [self._metric]

    def _setup_study(self, mode: str | list) -> None:
        import optuna

        super()._setup_study(mode)
        if self._ot_study.metric_names != self._metrics:
            with warnings.catch_warnings():  # "experimental since 3.2": stable in practice
                warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
                self._ot_study.set_metric_names(self._metrics)

    def suggest(self, trial_id: str) -> dict | None:
        params = super().suggest(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None:
            ot_trial.set_user_attr(TRIAL_ID_ATTR, trial_id)
        return params

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._record_epoch(trial_id, result)

    def _record_epoch(self, trial_id: str, result: Mapping[str, Any] | None) -> None:
        """Keep the first objective at this epoch in the trial's ``epoch_values`` attribute."""
        if not result:
            return
        metric = self._metrics[0]
        value, epoch = result.get(metric), result.get("epoch")
        ot_trial = self._ot_trials.get(trial_id)
        if value is None or epoch is None or ot_trial is None or trial_id in self._completed_trials:
            return
        if result.get("over_budget"):
            return  # refused before training: no epoch happened
        values = {**ot_trial.user_attrs.get(EPOCH_VALUES_ATTR, {}), str(int(epoch)): float(value)}
        try:
            ot_trial.set_user_attr(EPOCH_VALUES_ATTR, values)
        except Exception as err:  # noqa: BLE001 - never end a search over a bookkeeping value
            log.warning("value of trial %s at epoch %s not recorded: %s", trial_id, epoch, err)

    def _write_intermediate_values(self, trial_id: str) -> None:
        """The kept epoch values as intermediate values (while the trial still runs: storage allows it)."""
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None:
            return
        # Trial.report refuses multi-objective studies; this is the storage call it makes.
        storage, number = self._ot_study._storage, ot_trial._trial_id
        try:
            for epoch, value in ot_trial.user_attrs.get(EPOCH_VALUES_ATTR, {}).items():
                storage.set_trial_intermediate_value(number, int(epoch), float(value))
        except Exception as err:  # noqa: BLE001
            log.warning("intermediate values of trial %s not recorded: %s", trial_id, err)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        # Tune hands a trial's last result to on_trial_complete only, not to on_trial_result.
        self._record_epoch(trial_id, result)
        if trial_id in self._completed_trials:
            return
        if error or not stopped_early(result):
            if error or (result and all(result.get(m) is not None for m in self._metrics)):
                self._write_intermediate_values(trial_id)  # told FAIL or COMPLETE, never PRUNED
            super().on_trial_complete(trial_id, result=result, error=error)
            return
        import optuna

        ot_trial = self._ot_trials[trial_id]
        try:
            ot_trial.set_user_attr(STOPPED_AT_ATTR, int(result["epoch"]))
            if all(result.get(m) is not None for m in self._metrics):  # what StoppedTrialsGPSampler models
                ot_trial.set_user_attr(STOPPED_VALUES_ATTR, [float(result[m]) for m in self._metrics])
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
        except Exception as err:  # noqa: BLE001
            log.warning("trial %s not recorded as pruned: %s", trial_id, err)
        self._completed_trials.add(trial_id)

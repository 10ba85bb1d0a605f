"""An honest Optuna study: named objectives, per-epoch values, stopped trials on the front.

Ray Tune's ``OptunaSearch`` leaves out what a researcher opening the study relies on: objective
names (the search's metric and ``gflops``) and, in a multi-objective study, intermediate values
(kept in the trial's ``epoch_values`` and written once it is told COMPLETE or FAIL). A trial
stopped early is told COMPLETE with its values then and ``stopped_at_epoch``, so it holds its
place on the front and the sampler learns from it (``study.best_trials`` is the report's front).
A configuration equal to a finished trial's is answered from it and another is sampled. A
searcher saved by an older version keeps telling stopped trials PRUNED.
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
ANSWERED_FROM_ATTR = "answered_from"  # the tune trial id of the finished trial that answered a repeat
MAX_REPEATS = 16  # repeats answered in a row before the sampler's choice is trained anyway
DEFINE_BY_RUN_SLOW = r"Define-by-run function passed in the `space` argument took"  # OptunaSearch's warning

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
    """``OptunaSearch`` that names its objectives, records every epoch and keeps stopped trials."""

    def __init__(self, *args: Any, stopped_on_front: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stopped_on_front = stopped_on_front

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
        for attempt in range(MAX_REPEATS):
            with warnings.catch_warnings():
                # Ray warns when the define-by-run space takes over a second, as if training ran
                # there; ours counts candidates' GFLOPs on purpose (costaware.py), slower under load.
                warnings.filterwarnings("ignore", message=DEFINE_BY_RUN_SLOW, category=UserWarning)
                params = super().suggest(trial_id)
            ot_trial = self._ot_trials.get(trial_id)
            last = attempt == MAX_REPEATS - 1  # a sampler stuck on finished points: train the repeat
            if ot_trial is None or last or not getattr(self, "stopped_on_front", False):
                break
            if not self._answer(ot_trial):
                break
            del self._ot_trials[trial_id]  # told from a finished trial: ask again
        if ot_trial is not None:
            ot_trial.set_user_attr(TRIAL_ID_ATTR, trial_id)
        return params

    def _answer(self, ot_trial: Any) -> bool:
        """Tell ``ot_trial`` the values of a finished trial with the same parameters; True if one exists."""
        import optuna

        complete = (optuna.trial.TrialState.COMPLETE,)
        for done in self._ot_study.get_trials(deepcopy=False, states=complete):
            if done.params == ot_trial.params and STOPPED_AT_ATTR not in done.user_attrs and done.values:
                source = done.user_attrs.get(ANSWERED_FROM_ATTR) or done.user_attrs.get(TRIAL_ID_ATTR)
                ot_trial.set_user_attr(ANSWERED_FROM_ATTR, source)
                self._ot_study.tell(ot_trial, list(done.values))
                return True
        return False

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
            values = [result.get(m) for m in self._metrics]
            if getattr(self, "stopped_on_front", False) and None not in values:
                self._write_intermediate_values(trial_id)
                self._ot_study.tell(ot_trial, [float(v) for v in values])
            else:  # a searcher saved before stopped trials kept their place (or no values to tell)
                if None not in values:  # what StoppedTrialsGPSampler models
                    ot_trial.set_user_attr(STOPPED_VALUES_ATTR, [float(v) for v in values])
                self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
        except Exception as err:  # noqa: BLE001
            log.warning("trial %s not recorded as pruned: %s", trial_id, err)
        self._completed_trials.add(trial_id)

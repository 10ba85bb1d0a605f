"""Optuna's GP sampler, taught the trials that early stopping ended.

``optuna.samplers.GPSampler`` fits its Gaussian processes to COMPLETE trials only (and conditions
on RUNNING ones). A searcher saved before stopped trials kept their place on the front (a
resumed older experiment, ``study.StudySearch.stopped_on_front`` unset) tells a stopped trial
PRUNED, and a plain GPSampler never sees it: it keeps proposing configurations like the ones
just stopped. Searches since tell it COMPLETE at its values then, which any sampler sees.

``StoppedTrialsGPSampler`` models a pruned trial that carries its objective values at stopping
(``STOPPED_VALUES_ATTR``, written by ``StudySearch``) as if it had finished with them: an
under-trained, so pessimistic, observation of that configuration. Only the sampler's view
changes: the study keeps the trial PRUNED, off ``best_trials`` and off the report's front.
Ray-free: the search and the replayed benchmark build the same sampler.
"""

from __future__ import annotations

import copy
from collections.abc import Container
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

STOPPED_VALUES_ATTR = "stopped_values"  # [objective values] of a trial when early stopping ended it


def stopped_as_finished(trial: FrozenTrial) -> FrozenTrial | None:
    """A pruned trial's copy that reads COMPLETE with its values at stopping; None without them."""
    values = trial.user_attrs.get(STOPPED_VALUES_ATTR)
    if trial.state != TrialState.PRUNED or not values:
        return None
    finished = copy.copy(trial)
    finished.state = TrialState.COMPLETE
    finished.values = [float(v) for v in values]
    return finished


class _WithStoppedTrials:
    """A read-only view of a study in which pruned trials with values at stopping read as COMPLETE."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None, use_cache: bool = False
    ) -> list[FrozenTrial]:
        if states is None or TrialState.COMPLETE not in states:
            return self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        out = []
        wanted = (*states, TrialState.PRUNED)
        for trial in self._study._get_trials(deepcopy=deepcopy, states=wanted, use_cache=use_cache):
            if trial.state == TrialState.PRUNED:
                finished = stopped_as_finished(trial)
                if finished is not None:
                    out.append(finished)
                elif TrialState.PRUNED in states:
                    out.append(trial)
            else:
                out.append(trial)
        return out


class StoppedTrialsGPSampler(optuna.samplers.GPSampler):
    """``GPSampler`` whose model also learns from trials stopped early (see the module docstring)."""

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]
    ) -> dict[str, Any]:
        return super().sample_relative(_WithStoppedTrials(study), trial, search_space)

"""Make a search killed mid-checkpoint resumable: the saved searcher must agree with the saved trials.

Tune checkpoints a search as separate files, written one after the other: the experiment state
(every trial and its status) and then the search algorithm's state (``search_gen_state-*.json``
with the ``ConcurrencyLimiter``'s live trials, and the Optuna searcher's ``searcher-state-*.pkl``).
A driver killed between the two writes leaves a trial that the experiment state records as
finished still "live" in the limiter. Restored as is, Tune never reports that trial's end again,
so the limiter never frees its slot and the resumed search waits forever without starting a
trial (seen on this project's killed-driver test).

``reconcile_searcher_state`` runs before ``Tuner.restore``: it drops finished trials from the
limiter's live set and tells the Optuna study their results (or their failure), so the sampler
learns from them as if the driver had lived. Only a local experiment folder can be repaired.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ray.cloudpickle as cloudpickle

LIMITER_KEY = "name:ConcurrencyLimiter"
FINISHED = {"TERMINATED": "complete", "ERROR": "fail"}


def _newest(folder: Path, pattern: str) -> Path | None:
    """The newest of Tune's time-stamped checkpoint files (names sort by their timestamp)."""
    found = sorted(glob.glob(str(folder / pattern)))
    return Path(found[-1]) if found else None


def finished_trials(experiment_dir: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """{tune trial id: (status, last result)} of the trials the newest experiment state records
    as TERMINATED or ERROR."""
    state_file = _newest(experiment_dir, "experiment_state-*.json")
    if state_file is None:
        return {}
    state = json.loads(state_file.read_text())
    out = {}
    for entry in state.get("trial_data", []):
        trial_json, meta_json = entry if isinstance(entry, list) else (entry, "{}")
        trial = json.loads(trial_json) if isinstance(trial_json, str) else trial_json
        meta = json.loads(meta_json) if isinstance(meta_json, str) else (meta_json or {})
        if trial.get("status") in FINISHED:
            out[trial["trial_id"]] = (trial["status"], meta.get("last_result") or {})
    return out


def reconcile_searcher_state(
    experiment_dir: str | Path, *, study_url: str, study_name: str, objectives: Sequence[str]
) -> list[str]:
    """Drop finished trials from the saved limiter state and report them to the Optuna study.

    ``objectives`` are the result keys of the study's values, in order (e.g. metric, "gflops").
    Returns the Tune trial ids repaired (empty when the saved states already agree).
    """
    folder = Path(experiment_dir)
    gen_file = _newest(folder, "search_gen_state-*.json")
    if gen_file is None:
        return []
    gen_state = cloudpickle.loads(gen_file.read_bytes())
    limiter = gen_state.get(LIMITER_KEY)
    if not limiter:
        return []
    finished = finished_trials(folder)
    stale = sorted(set(limiter.get("live_trials", ())) & finished.keys())
    if not stale:
        return []
    _tell_study(folder, stale, finished, study_url=study_url, study_name=study_name, objectives=objectives)
    limiter["live_trials"] = set(limiter["live_trials"]) - set(stale)
    limiter["num_unfinished_live_trials"] = max(0, limiter.get("num_unfinished_live_trials", 0) - len(stale))
    for trial_id in stale:
        limiter.get("cached_results", {}).pop(trial_id, None)
    tmp = gen_file.with_name(f".{gen_file.name}.repair{os.getpid()}")
    tmp.write_bytes(cloudpickle.dumps(gen_state))
    os.replace(tmp, gen_file)
    return stale


def _tell_study(
    folder: Path,
    stale: Sequence[str],
    finished: Mapping[str, tuple[str, dict[str, Any]]],
    *,
    study_url: str,
    study_name: str,
    objectives: Sequence[str],
) -> None:
    """Tell the Optuna study how the stale trials ended (they are still RUNNING in it)."""
    import optuna

    from geodistill.platform.search.study import stopped_early

    searcher_file = _newest(folder, "searcher-state-*.pkl")
    if searcher_file is None:
        return
    with open(searcher_file, "rb") as f:
        searcher_state = cloudpickle.load(f)
    ot_trials = searcher_state.get("_ot_trials", {}) if isinstance(searcher_state, dict) else {}
    from geodistill.platform.search.study_storage import open_storage

    study = optuna.load_study(study_name=study_name, storage=open_storage(study_url))
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    for trial_id in stale:
        ot_trial = ot_trials.get(trial_id)
        if ot_trial is None or states.get(ot_trial.number) != optuna.trial.TrialState.RUNNING:
            continue
        status, result = finished[trial_id]
        values = [result.get(k) for k in objectives]
        if FINISHED[status] == "complete" and stopped_early(result):  # as StudySearch would have
            study.tell(ot_trial.number, state=optuna.trial.TrialState.PRUNED)
        elif FINISHED[status] == "complete" and all(isinstance(v, int | float) for v in values):
            study.tell(ot_trial.number, [float(v) for v in values])
        else:
            study.tell(ot_trial.number, state=optuna.trial.TrialState.FAIL)

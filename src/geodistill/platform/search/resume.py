"""Make a saved search resumable by today's driver: repair what Tune saved before ``Tuner.restore``.

Tune checkpoints a search as separate files, written one after the other: the experiment state
(every trial and its status), then the searcher's (``search_gen_state-*.json``, the
``ConcurrencyLimiter``'s live trials; ``searcher-state-*.pkl``, the Optuna searcher). A driver
killed between the two leaves a finished trial "live" in the limiter, whose slot then never frees
(the resumed search waits forever): ``reconcile_searcher_state`` drops it and tells the study how
it ended. ``relocate`` makes a moved experiment's saved state name where it is now (Tune moves
only its trials). ``todays_schedule`` gives a search saved before multi-objective ASHA today's
rung rule and result files (docs/design.md, "Resuming an older search"). Only a local
experiment folder can be repaired.
"""

from __future__ import annotations

import glob
import io
import json
import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ray.cloudpickle as cloudpickle

LIMITER_KEY = "name:ConcurrencyLimiter"
SEARCHER_STATE = "searcher-state-*.pkl"
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
    _replace(gen_file, gen_state)
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

    searcher_file = _newest(folder, SEARCHER_STATE)
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


def relocate(experiment_dir: str | Path, *, study_url: str) -> list[str]:
    """Make a moved (or copied) experiment folder's saved state name where it is now; returns the
    files rewritten (none when it was not moved).

    Tune moves its trials itself, not the search generator's experiment (new trials would be
    written under the old folder); the searcher state and ``tuner.pkl`` name the study's old
    SQLite file, which Optuna connects to as they load: ``study_url`` is the one beside the folder
    (``study_storage.resolve``) when the old file is gone.
    """
    folder = Path(experiment_dir)
    rewritten = []
    gen_file = _newest(folder, "search_gen_state-*.json")
    if gen_file is not None:
        gen_state = cloudpickle.loads(gen_file.read_bytes())
        storage = getattr(gen_state.get("experiment"), "storage", None)
        where = (str(folder.parent), folder.name)
        if storage is not None and (storage.storage_fs_path, storage.experiment_dir_name) != where:
            storage.storage_fs_path, storage.experiment_dir_name = where
            _replace(gen_file, gen_state)
            rewritten.append(gen_file.name)
    if not study_url.startswith("sqlite:///"):
        return rewritten
    for file in (_newest(folder, SEARCHER_STATE), folder / "tuner.pkl"):
        if file is None or not file.is_file():
            continue
        moved: list[str] = []
        state = _load_moving_sqlite(file.read_bytes(), study_url, moved)
        if moved:
            _replace(file, state)
            rewritten.append(file.name)
    return rewritten


def _replace(file: Path, state: Any) -> None:
    """Pickle ``state`` over ``file`` atomically."""
    tmp = file.with_name(f".{file.name}.repair{os.getpid()}")
    tmp.write_bytes(cloudpickle.dumps(state))
    os.replace(tmp, file)


def _load_moving_sqlite(data: bytes, url: str, moved: list[str]) -> Any:
    """``data`` unpickled, every Optuna RDB storage in it whose SQLite file no longer exists opening
    ``url`` instead (its old URL appended to ``moved``). Only this load is affected: its unpickler
    hands out a stand-in for each ``RDBStorage`` class, which swaps the URL before the storage
    connects and then gives the object back its own class."""
    return _MovingSqliteUnpickler(io.BytesIO(data), url, moved).load()


class _MovingSqliteUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, url: str, moved: list[str]) -> None:
        super().__init__(file)
        self._url, self._moved, self._stand_ins = url, moved, {}

    def find_class(self, module: str, name: str) -> Any:
        from optuna.storages import RDBStorage

        cls = super().find_class(module, name)
        if not (isinstance(cls, type) and issubclass(cls, RDBStorage)):
            return cls
        if cls not in self._stand_ins:
            self._stand_ins[cls] = type(cls.__name__, (cls,), {"__setstate__": self._setstate(cls)})
        return self._stand_ins[cls]

    def _setstate(self, cls: type) -> Any:
        url, moved = self._url, self._moved

        def setstate(storage: Any, state: dict[str, Any]) -> None:
            old = state.get("url") or ""
            if (
                old.startswith("sqlite:///")
                and old != url
                and not Path(old.removeprefix("sqlite:///")).exists()
            ):
                moved.append(old)
                state = {**state, "url": url}
            storage.__class__ = cls  # the class it was saved as (the stand-in adds no fields)
            cls.__setstate__(storage, state)  # connects: to ``url`` when the old file is gone

        return setstate


def todays_schedule(tune_config: Any, run_config: Any) -> list[str]:
    """A Tuner saved before multi-objective ASHA, brought to today's rules before it goes on;
    returns one phrase per change (printed on resume).

    Ray's ``ASHAScheduler`` (precision alone) becomes ``ParetoASHA`` with the same rungs: Tune
    saves no rung values, so a restored scheduler starts from empty rungs either way, and Ray
    Train trials of the same search already ask today's ``RungRule``. Trials also get the result
    files (``result.json``, ``progress.csv``) Tune added by itself before the driver turned its
    automatic loggers off, and ``disk.DropFinishedState``.
    """
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
    from ray.tune.schedulers import AsyncHyperBandScheduler

    from geodistill.platform.search.disk import DropFinishedState
    from geodistill.platform.search.scheduler import ParetoASHA

    changes = []
    old = getattr(tune_config, "scheduler", None)
    if type(old) is AsyncHyperBandScheduler and len(old._brackets) == 1:
        tune_config.scheduler = ParetoASHA(
            metric=old._metric,
            mode=old._mode,
            time_attr=old._time_attr,
            max_t=old._max_t,
            grace_period=int(min(milestone for milestone, _ in old._brackets[0]._rungs)),
            reduction_factor=old._reduction_factor,
        )
        changes.append("early stopping now ranks trials on (metric, GFLOPs), not on the metric alone")
    callbacks = list(run_config.callbacks or [])
    wanted = (CSVLoggerCallback, JsonLoggerCallback, DropFinishedState)
    missing = [kind() for kind in wanted if not any(isinstance(cb, kind) for cb in callbacks)]
    if missing:
        run_config.callbacks = [*callbacks, *missing]
    return changes

"""A search driver killed between Tune's two state files: the resumed search must not wait forever.

Tune writes the experiment state (trials) and then the searcher state as separate files. Killed
in between, a trial the first records as finished is still live in the second's
ConcurrencyLimiter, whose slot then never frees. The states below are written by Tune's and
Optuna's own classes; only the order of events is staged.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.search_generator import SearchGenerator

from geodistill.platform.search.resume import reconcile_searcher_state

SESSION = "2026-01-01_00-00-00"


def define_space(trial) -> None:
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)


def search_alg(url: str) -> SearchGenerator:
    searcher = OptunaSearch(
        space=define_space,
        metric=["d2s_recall1", "gflops"],
        mode=["max", "min"],
        storage=optuna.storages.RDBStorage(url),
        study_name="exp",
    )
    return SearchGenerator(ConcurrencyLimiter(searcher, max_concurrent=1))


def write_experiment_state(folder: Path, status: str, last_result: dict) -> None:
    trial = json.dumps({"trial_id": "t1", "status": status})
    state = {
        "trial_data": [[trial, json.dumps({"last_result": last_result})]],
        "runner_data": {},
        "stats": {},
    }
    (folder / f"experiment_state-{SESSION}.json").write_text(json.dumps(state))


@pytest.mark.parametrize("status, optuna_state", [("TERMINATED", "COMPLETE"), ("ERROR", "FAIL")])
def test_a_finished_trial_still_live_in_the_saved_limiter_is_released(tmp_path, status, optuna_state):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    alg = search_alg(url)
    assert alg.searcher.suggest("t1") is not None  # t1 takes the only slot
    alg.save_to_dir(str(tmp_path), session_str=SESSION)  # the searcher state: t1 live
    # ... t1 finishes and the experiment state says so; the driver dies before the searcher saves.
    write_experiment_state(tmp_path, status, {"d2s_recall1": 42.0, "gflops": 0.5})

    repaired = reconcile_searcher_state(
        tmp_path, study_url=url, study_name="exp", objectives=["d2s_recall1", "gflops"]
    )
    assert repaired == ["t1"]
    restored = search_alg(url)
    restored.restore_from_dir(str(tmp_path))
    assert restored.searcher.live_trials == set()
    assert restored.searcher.suggest("t2") is not None  # the slot is free: the search goes on
    t1 = optuna.load_study(study_name="exp", storage=url).trials[0]
    assert t1.state.name == optuna_state
    assert t1.values == ([42.0, 0.5] if status == "TERMINATED" else None)
    # Saved states that agree are left alone.
    assert (
        reconcile_searcher_state(tmp_path, study_url=url, study_name="exp", objectives=["d2s_recall1"]) == []
    )


def test_nothing_to_repair_without_saved_states(tmp_path):
    assert reconcile_searcher_state(tmp_path, study_url="sqlite://", study_name="x", objectives=["m"]) == []

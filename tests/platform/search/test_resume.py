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


# ---------------------------------------------------------------- an experiment saved before SearchPlan

BEFORE_SEARCH_PLAN = "8e5dfd4"  # main before SearchOptions/SearchPlan: run_search(space, **26 keywords)

OLD_SEARCH = """
import sys, time
from pathlib import Path
from geodistill.platform.search import run_search
from geodistill.platform.search.space import parse_space

started = Path(sys.argv[3])

def objective(cfg, *, context):
    with open(started, "a") as fh:
        fh.write(f"{cfg.run_name}\\n")
    if len(started.read_text().splitlines()) > 1:
        time.sleep(600)  # the driver is interrupted while this trial runs
    context.report({"epoch": 1, "d2s_recall1": cfg.train.lr * 1000})

space = parse_space(
    {"fixed": {"stage": "teacher", "train.epochs": 1},
     "params": {"train.lr": {"type": "uniform", "low": 0.001, "high": 0.01}}},
    name="old",
)
run_search(space, experiment="old", num_samples=3, sampler="tpe", storage=sys.argv[1],
           leaderboard=sys.argv[2], max_concurrent=1, early_stopping=False, objective=objective, verbose=0)
"""


@pytest.mark.slow  # two drivers, one of them from another commit: about a minute
def test_a_search_started_before_search_plan_resumes_with_todays_code(ray_local, tmp_path):
    """Tune saved the old searcher (define_by_run over a dict base) and the old row callback:
    today's driver samples through the old searcher and writes rows through today's callback."""
    import os
    import signal
    import subprocess
    import sys
    import tarfile
    import time

    from trivial_search import lr_ramp, search, search_dirs, trivial_space

    from geodistill.leaderboard import Leaderboard

    repo = Path(__file__).resolve().parents[3]
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", BEFORE_SEARCH_PLAN, "src"], capture_output=True
    )
    if archive.returncode != 0:
        pytest.skip(f"commit {BEFORE_SEARCH_PLAN} is not in this checkout (a shallow clone)")
    old = tmp_path / "old"
    old.mkdir()
    (old / "src.tar").write_bytes(archive.stdout)
    with tarfile.open(old / "src.tar") as tar:
        tar.extractall(old, filter="data")
    (tmp_path / "search.py").write_text(OLD_SEARCH)
    dirs = search_dirs(tmp_path)
    started = tmp_path / "started.log"
    env = {**os.environ, "PYTHONPATH": str(old / "src"), "GEODISTILL_RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, str(tmp_path / "search.py"), dirs["storage"], dirs["leaderboard"], str(started)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    board = Leaderboard(dirs["leaderboard"])
    deadline = time.monotonic() + 400
    while not (started.is_file() and len(started.read_text().splitlines()) > 1):
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the old driver's second trial never started"
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)  # Ctrl-C: Tune saves its state and the old driver exits
    try:
        proc.wait(timeout=180)
    finally:
        proc.kill()
    before = board.read("old")
    # The first trial's row, and the interrupted one's when Tune ended it before saving (the old callback).
    assert 1 <= before.height <= 2 and "ok" in set(before["status"])

    result = search(
        trivial_space(1, name="old"), experiment="old", num_samples=3, sampler="tpe", resume=True,
        **dirs, max_concurrent=1, early_stopping=False, objective=lr_ramp,
    )  # fmt: skip
    rows = result.rows
    assert rows.height == 3 and rows["trial_id"].n_unique() == 3, rows.select("trial_id", "status").to_dicts()
    assert board.scan("old", dedup=False).collect().height == 3  # no row written twice
    for row in before.iter_rows(named=True):  # rows of the old driver are kept as they were
        assert rows.filter(rows["trial_id"] == row["trial_id"])["created_at"].item() == row["created_at"]
    new = rows.filter(~rows["trial_id"].is_in(before["trial_id"].to_list()))
    assert new.height >= 1 and set(new["status"]) == {"ok"}  # sampled by the old searcher, run today
    assert (new["d2s_recall1"] - new["lr"] * 1000).abs().max() < 1e-9
    assert result.pareto.height >= 1 and set(result.pareto["trial_id"]) <= set(rows["trial_id"])

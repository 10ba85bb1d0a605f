"""Saved searches that today's driver must resume: killed mid-checkpoint, or saved by an older release.

Tune writes the experiment state (trials) and then the searcher state as separate files. Killed
in between, a trial the first records as finished is still live in the second's
ConcurrencyLimiter, whose slot then never frees. Those states are written by Tune's and
Optuna's own classes; only the order of events is staged. Searches saved before
multi-objective ASHA come from a recorded fixture (``tests/fixtures/old_search/record.py``
ran that release and packed what a resume reads), unpacked in a new place each time.
"""

from __future__ import annotations

import json
import statistics
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
    # The interrupted trial's row (when the old driver wrote one: no result yet) is replaced by
    # the row of its run today; no other row is written twice.
    finished = before.filter(before["d2s_recall1"].is_not_null())
    assert board.scan("old", dedup=False).collect().height == 3 + before.height - finished.height
    for row in finished.iter_rows(named=True):  # rows of the old driver's finished trials are kept
        assert rows.filter(rows["trial_id"] == row["trial_id"])["created_at"].item() == row["created_at"]
    new = rows.filter(~rows["trial_id"].is_in(finished["trial_id"].to_list()))
    assert new.height >= 1 and set(new["status"]) == {"ok"}  # sampled by the old searcher, run today
    assert (new["d2s_recall1"] - new["lr"] * 1000).abs().max() < 1e-9
    assert result.pareto.height >= 1 and set(result.pareto["trial_id"]) <= set(rows["trial_id"])


# ---------------------------------------------------------------- a search saved before multi-objective ASHA

OLD_SEARCH_ARCHIVE = Path(__file__).parents[2] / "fixtures" / "old_search" / "old_search.tar.gz"
OLD_EPOCHS, OLD_INTERRUPTED_AT = 4, 5  # as tests/fixtures/old_search/record.py ran them


def old_space(name: str, **fixed):
    """The space of the recorded searches (record.py): lr and views, 4 epochs."""
    from geodistill.platform.search.space import parse_space

    return parse_space(
        {
            "fixed": {"stage": "teacher", "train.epochs": OLD_EPOCHS, "data.img_size": 32, **fixed},
            "params": {
                "train.lr": {"type": "uniform", "low": 0.001, "high": 0.01},
                "data.views": {"type": "choice", "choices": [1, 2, 4]},
            },
        },
        name=name,
    )


def unpack_old_searches(tmp_path: Path) -> dict:
    """The recorded searches, unpacked where they were never saved (the paths inside are gone)."""
    import tarfile

    with tarfile.open(OLD_SEARCH_ARCHIVE) as tar:
        tar.extractall(tmp_path, filter="data")
    return {"storage": str(tmp_path / "tune"), "leaderboard": str(tmp_path / "lb"), "verbose": 0}


def test_a_tuner_saved_with_rays_asha_gets_pareto_asha_on_the_same_rungs_and_todays_result_files():
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
    from ray.tune.schedulers import ASHAScheduler

    from geodistill.platform.search.disk import DropFinishedState
    from geodistill.platform.search.resume import todays_schedule
    from geodistill.platform.search.rung import milestones
    from geodistill.platform.search.scheduler import ParetoASHA

    saved = tune.TuneConfig(
        scheduler=ASHAScheduler(
            time_attr="epoch", metric="d2s_ap", mode="max", max_t=9, grace_period=1, reduction_factor=2
        )
    )
    run_config = tune.RunConfig(callbacks=[JsonLoggerCallback()])
    changes = todays_schedule(saved, run_config)
    assert len(changes) == 1 and "(metric, GFLOPs)" in changes[0]
    now = saved.scheduler
    assert type(now) is ParetoASHA and (now._metric, now._mode, now._max_t) == ("d2s_ap", "max", 9)
    rule = now._rule("t", 0.1)
    assert rule.milestones == milestones(grace_period=1, reduction_factor=2, max_t=9) == [1, 2, 4, 8]
    kinds = [type(cb) for cb in run_config.callbacks]
    assert sorted(k.__name__ for k in kinds) == sorted(
        k.__name__ for k in (JsonLoggerCallback, CSVLoggerCallback, DropFinishedState)
    )
    # A Tuner saved today is left as it is.
    assert todays_schedule(saved, run_config) == [] and saved.scheduler is now
    assert len(run_config.callbacks) == 3


def old_precision(lr: float, views: int, epoch: int) -> float:
    """The recorded searches' objective (record.py): lr and epoch raise it, a view adds 5 points."""
    return lr * 1000 * epoch + 5 * views


def rung_decisions(trials: list[dict], *, pareto: bool) -> dict[str, int | None]:
    """{trial: epoch it stops at, or None} for trials run one at a time from empty rungs (grace 1,
    reduction factor 2, 4 epochs), by the Pareto rule or by the metric alone."""
    from geodistill.platform.search.rung import MemoryRungs, RungRule

    store, out = MemoryRungs(), {}
    for t in trials:
        rule = RungRule(
            store, trial_id=t["trial_id"], metric="m", grace_period=1, reduction_factor=2,
            max_t=OLD_EPOCHS, cost=t["gflops"] if pareto else None,
        )  # fmt: skip
        epochs = range(1, OLD_EPOCHS + 1)
        out[t["trial_id"]] = next(
            (e for e in epochs if rule.should_stop(e, {"m": old_precision(t["lr"], t["views"], e)})), None
        )
    return out


@pytest.mark.slow  # one resumed search of 4 trials on a fresh Tune driver: ~20-40 s
def test_a_search_saved_before_pareto_asha_goes_on_by_todays_rules(ray_local, tmp_path, capsys):
    """Single-worker trials that Ray's ASHAScheduler stopped on precision alone, interrupted while
    the fifth ran: today's driver resumes it from a moved folder, stops by Pareto rank, replaces the
    interrupted trial's row, and reads the old rows (no compute) into the front and the report."""
    import polars as pl
    from trivial_search import search

    from geodistill.leaderboard import Leaderboard
    from geodistill.leaderboard.pareto import anytime_front, pareto_rows

    def objective(cfg, *, context):
        for epoch in range(1, cfg.train.epochs + 1):
            context.report({"epoch": epoch, "d2s_recall1": cfg.train.lr * 1000 * epoch + 5 * cfg.data.views})
            if context.should_stop(epoch, {}):
                break

    dirs = unpack_old_searches(tmp_path)
    recorded = json.loads((tmp_path / "tune" / "tune" / "study.json").read_text())["study_storage"]
    saved_at = Path(recorded.removeprefix("sqlite:///")).parent  # where the old driver left it
    assert not saved_at.exists() and saved_at != tmp_path / "tune" / "tune"
    board = Leaderboard(dirs["leaderboard"])
    before = board.read("tune")
    assert before.height == OLD_INTERRUPTED_AT and before["compute"].is_null().all()  # no compute then
    cut = before.filter(pl.col("epochs").is_null())  # the row the interrupt left: no result yet
    assert cut.height == 1 and cut["status"].item() == "stopped"
    old_stopped = before.filter((pl.col("status") == "stopped") & pl.col("epochs").is_not_null())
    assert old_stopped.height == 1 and old_stopped["epochs"].item() == 1  # ASHA on precision alone

    dirs["verbose"] = 1
    result = search(
        old_space("tune"), experiment="tune", num_samples=8, sampler="random", seed=0, resume=True,
        **dirs, max_concurrent=1, reduction_factor=2, objective=objective,
    )  # fmt: skip
    printed = capsys.readouterr().out
    rows = result.rows.sort("created_at")
    assert rows.height == 8 and rows["trial_id"].n_unique() == 8 and not result.interrupted
    # The finished trials' rows are kept as they were; the interrupted trial ran again: its row is new.
    finished = before.filter(pl.col("epochs").is_not_null())
    for row in finished.iter_rows(named=True):
        assert rows.filter(pl.col("trial_id") == row["trial_id"]).row(0, named=True) == row
    assert board.scan("tune", dedup=False).collect().height == 9  # the interrupted trial's two rows
    again = rows.filter(pl.col("trial_id") == cut["trial_id"].item()).row(0, named=True)
    assert again["epochs"] >= 1 and again["d2s_recall1"] is not None
    resumed = rows.filter(~pl.col("trial_id").is_in(finished["trial_id"].to_list()))
    assert resumed.height == 4 and resumed["history"].is_not_null().all()
    assert ((resumed["compute"] - resumed["epochs"] * resumed["gflops"]).abs() < 1e-9).all()
    for row in resumed.iter_rows(named=True):  # Tune's result files, which it no longer adds itself
        trial_dirs = list((tmp_path / "tune" / "tune").glob(f"run_trial_{row['trial_id']}_*"))
        assert len(trial_dirs) == 1 and (trial_dirs[0] / "result.json").stat().st_size > 0

    # Tune kept no rung values: the resumed trials were ranked among themselves, on (metric, GFLOPs).
    expected = rung_decisions(resumed.to_dicts(), pareto=True)
    assert expected != rung_decisions(resumed.to_dicts(), pareto=False)  # the two rules differ here
    for row in resumed.iter_rows(named=True):
        stop = expected[row["trial_id"]]
        assert (row["status"], row["epochs"]) == (("stopped", stop) if stop else ("ok", OLD_EPOCHS))

    # The old searcher went on in the study beside the moved folder; nothing went to the old one.
    assert not saved_at.exists()
    study = optuna.load_study(
        study_name="tune", storage=f"sqlite:///{tmp_path / 'tune' / 'tune' / 'optuna.db'}"
    )
    assert len(study.trials) == 8
    assert json.loads((tmp_path / "tune" / "tune" / "study.json").read_text())["study_storage"] == (
        f"sqlite:///{tmp_path / 'tune' / 'tune' / 'optuna.db'}"
    )
    # The front and the report take every row: the old stopped trial at its values then, old
    # rows' compute by its rule (epochs x GFLOPs).
    assert result.pareto.equals(pareto_rows(rows, metric="d2s_recall1"))
    curve = anytime_front(rows, "d2s_recall1")
    assert set(curve["trial_id"]) == set(rows.filter(pl.col("d2s_recall1").is_not_null())["trial_id"])
    assert curve["compute_spent"][-1] == pytest.approx((rows["epochs"] * rows["gflops"]).sum())
    from geodistill.leaderboard.report import write_report

    report = write_report(board, tmp_path / "report", experiment="tune", anchors=None)["md"].read_text()
    assert "Compute spent and the anytime front" in report and "over 8 trial(s)" in report
    assert "early stopping now ranks trials on (metric, GFLOPs)" in printed


@pytest.mark.slow  # the interrupted trial runs again on a 1-worker TorchTrainer: ~1 min on 2 cores
def test_ray_train_trials_of_a_search_saved_before_pareto_asha_leave_its_bare_rung_values_aside(
    ray_local, tmp_path
):
    """Ray Train trials stop themselves by the rung rule; the old rule's FileRungStore holds bare
    numbers. The trial the interrupt cut runs again and records (value, GFLOPs) pairs beside them:
    not compared with them (by the metric alone they would have stopped it at epoch 2), no crash."""
    import polars as pl
    from trivial_search import search

    def objective(cfg, *, context):
        from geodistill.train.loop import TrainResult

        metrics, stopped = {}, False
        for epoch in range(1, cfg.train.epochs + 1):
            metrics = {"epoch": epoch, "d2s_recall1": cfg.train.lr * 1000 * epoch + 5 * cfg.data.views}
            context.report(metrics)
            if context.should_stop(epoch, metrics):
                stopped = True
                break
        return TrainResult(
            epochs_done=int(metrics["epoch"]), metrics=metrics, checkpoint=None, stopped_early=stopped,
            skipped_media=0,
        )  # fmt: skip

    dirs = unpack_old_searches(tmp_path)
    rungs_file = tmp_path / "tune" / "train" / "rungs" / "rungs.json"
    old_rungs = json.loads(rungs_file.read_text())
    assert all(isinstance(v, float) for rung in old_rungs.values() for v in rung.values())
    result = search(
        old_space("train", **{"scaling.num_workers": 1}), experiment="train", num_samples=OLD_INTERRUPTED_AT,
        sampler="random", seed=0, resume=True, **dirs, max_concurrent=1, reduction_factor=2, objective=objective,
    )  # fmt: skip
    rows = result.rows
    assert rows.height == OLD_INTERRUPTED_AT and not result.interrupted
    again = rows.filter(~pl.col("trial_id").is_in([t for rung in old_rungs.values() for t in rung]))
    assert again.height == 1
    row = again.row(0, named=True)
    assert (row["status"], row["epochs"]) == ("ok", OLD_EPOCHS)
    assert row["compute"] == pytest.approx(OLD_EPOCHS * row["gflops"]) and row["wall_seconds"] > 0
    rungs = json.loads(rungs_file.read_text())
    for milestone, old in old_rungs.items():  # the old values kept; the new trial's a pair beside them
        value = old_precision(row["lr"], row["views"], int(milestone))
        assert rungs[milestone] == {
            **old,
            row["trial_id"]: [pytest.approx(value), pytest.approx(row["gflops"])],
        }
    # Compared with the old values on the metric alone, it would have stopped at epoch 2 (below their median).
    assert old_precision(row["lr"], row["views"], 2) < statistics.median(old_rungs["2"].values())
    assert set(result.pareto["trial_id"]) <= set(rows["trial_id"])


def test_saved_state_naming_code_this_version_lacks_stops_in_one_line_before_anything_runs(
    tmp_path, monkeypatch
):
    import sys

    from ray import cloudpickle

    from geodistill.errors import ConfigError
    from geodistill.platform.search.tuner import SearchPaths, restore_tuner

    (tmp_path / "gone_sampler.py").write_text("class Sampler:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import gone_sampler

    exp = tmp_path / "tune" / "exp"
    exp.mkdir(parents=True)
    state = {"_storage": None, "_sampler": gone_sampler.Sampler()}  # saved by a release that had it
    (exp / f"searcher-state-{SESSION}.pkl").write_bytes(cloudpickle.dumps(state))
    del sys.modules["gone_sampler"]
    (tmp_path / "gone_sampler.py").unlink()
    where = SearchPaths(
        storage_root=str(exp.parent), local=True, experiment_path=str(exp),
        study_url=f"sqlite:///{exp / 'optuna.db'}", leaderboard=str(tmp_path / "lb"),
    )  # fmt: skip
    with pytest.raises(
        ConfigError, match=r"cannot read \(ModuleNotFoundError.*start a new --experiment"
    ) as err:
        restore_tuner(where, "exp", plan=None, trainable=None, callback=None, verbose=0)
    assert "\n" not in str(err.value)

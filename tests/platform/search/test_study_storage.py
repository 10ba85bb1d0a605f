"""``--study-storage``: the Optuna study outlives its driver (PostgreSQL, a journal file, SQLite).

The PostgreSQL tests run a real server (``services.postgres_server``: initdb in a temporary
directory, 127.0.0.1 on a free port); one crashes and restarts it under a search. The kill test SIGKILLs a real ``geodistill search``
driver mid-search and resumes it from a new process that is told nothing but ``--resume``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest
from services import free_port, postgres_server
from trivial_search import search, search_dirs, trivial_space

from geodistill.errors import ConfigError
from geodistill.leaderboard import Leaderboard
from geodistill.platform.cli import main
from geodistill.platform.search import study_storage as study
from geodistill.platform.search.study import TRIAL_ID_ATTR

TIMEOUT_S = 600


def test_urls_are_normalised_and_printed_without_passwords(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert study.normalise("sqlite:///rel/optuna.db") == f"sqlite:///{tmp_path}/rel/optuna.db"
    assert study.normalise("journal://shared/s.log") == f"journal://{tmp_path}/shared/s.log"
    assert study.normalise("postgresql://u@db:5432/x") == "postgresql://u@db:5432/x"
    assert study.public_url("postgresql://u:hunter2@db:5432/x") == "postgresql://u@db:5432/x"
    with pytest.raises(ConfigError, match="must be a URL"):
        study.normalise("optuna.db")


def test_the_study_url_is_recorded_and_a_different_one_on_resume_is_refused(tmp_path):
    exp = tmp_path / "tune" / "exp"
    journal = f"journal://{tmp_path}/shared/study.log"
    kwargs = dict(experiment="exp", experiment_path=str(exp), storage_root=str(tmp_path / "tune"), local=True)
    assert study.resolve(journal, resume=False, **kwargs) == journal
    study.record_url(str(exp), journal, study_name="exp")
    # A fresh driver's --resume finds it without being told; the default is SQLite beside Tune's state.
    assert study.resolve(None, resume=True, **kwargs) == journal
    assert study.resolve(None, resume=False, **kwargs) == f"sqlite:///{exp}/optuna.db"
    with pytest.raises(ConfigError, match=r"keeps its Optuna study in journal://.*differs"):
        study.resolve(f"sqlite:///{tmp_path}/other.db", resume=True, **kwargs)


def test_a_moved_experiment_resumes_with_the_study_beside_it(tmp_path):
    old, moved = tmp_path / "old" / "exp", tmp_path / "moved" / "exp"
    study.record_url(str(moved), f"sqlite:///{old}/optuna.db", study_name="exp")  # recorded, then moved
    kwargs = dict(experiment="exp", experiment_path=str(moved), storage_root=str(moved.parent), resume=True)
    with pytest.raises(ConfigError, match="cannot open"):  # neither file: one line, as before
        study.open_storage(study.resolve(None, local=True, **kwargs))
    optuna.create_study(study_name="exp", storage=f"sqlite:///{moved}/optuna.db")
    assert study.resolve(None, local=True, **kwargs) == f"sqlite:///{moved}/optuna.db"
    old.mkdir(parents=True)
    optuna.create_study(study_name="exp", storage=f"sqlite:///{old}/optuna.db")  # not moved: the recorded one
    assert study.resolve(None, local=True, **kwargs) == f"sqlite:///{old}/optuna.db"


def test_a_journal_study_on_a_shared_file_works_and_survives_reopening(tmp_path):
    url = f"journal://{tmp_path}/shared/study.log"
    first = optuna.create_study(
        storage=study.open_storage(url), study_name="j", directions=["maximize", "minimize"]
    )
    first.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=3)
    again = optuna.load_study(study_name="j", storage=study.open_storage(url))  # another process would
    assert [t.state.name for t in again.trials] == ["COMPLETE"] * 3


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://nobody:s3cret@127.0.0.1:{port}/optuna",  # nothing listens there
        "sqlite:////nonexistent-dir-geodistill/x/optuna.db",
        "nosuchdb://x/y",
    ],
)
def test_unreachable_study_storage_is_one_line_exit_2_before_ray_starts(url, tmp_path, capsys):
    import ray

    url = url.format(port=free_port())
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "meta.json").write_text("{}")  # a checkpoint's marker: the storage is what fails
    code = main(
        [
            "search",
            "search_space=smoke",
            "preset=smoke",
            "--teacher",
            str(teacher),
            "--experiment",
            "unreachable",
            "--storage",
            str(tmp_path / "tune"),
            "--leaderboard",
            str(tmp_path / "lb"),
            "--study-storage",
            url,
        ]
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert "cannot open the Optuna study storage" in err[0] and "s3cret" not in err[0]
    assert not ray.is_initialized()
    assert not (tmp_path / "tune" / "unreachable" / "study.json").exists()


@pytest.fixture(scope="module")
def pg():
    with postgres_server() as server:
        yield server


@pytest.mark.slow
def test_a_search_keeps_its_study_in_postgres_and_resume_refuses_another(pg, ray_local, tmp_path):
    def objective(cfg, *, context):
        context.report({"epoch": 1, "d2s_recall1": cfg.train.lr * 1000})

    space = trivial_space(1, name="pg")
    kwargs = dict(
        experiment="pg",
        sampler="random",
        **search_dirs(tmp_path),
        early_stopping=False,
        objective=objective,
    )
    result = search(space, num_samples=3, study_storage=pg.url(), **kwargs)
    assert result.study_url == pg.url() and result.rows.height == 3
    trials = optuna.load_study(study_name="pg", storage=study.open_storage(pg.url())).trials
    assert sorted(t.values[0] for t in trials) == pytest.approx(sorted(result.rows["d2s_recall1"]))
    assert not (tmp_path / "tune" / "pg" / "optuna.db").exists()  # nothing on the driver's disk
    with pytest.raises(ConfigError, match="keeps its Optuna study in postgresql://"):
        search(space, num_samples=4, resume=True, study_storage=f"sqlite:///{tmp_path}/x.db", **kwargs)


def _start(tmp: Path, experiment: str, *extra: str) -> subprocess.Popen:
    """``geodistill search --smoke-test`` as a user starts it, in its own session."""
    env = {**os.environ, "GEODISTILL_LEADERBOARD": str(tmp / "leaderboard"), "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable, "-m", "geodistill", "search", "--smoke-test", "--experiment", experiment,
        "--storage", str(tmp / "search"), "--max-concurrent", "1", "--num-samples", "3",
        "--no-report", *extra,
    ]  # fmt: skip
    log = open(tmp / f"{experiment}.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _stop_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


@pytest.mark.slow
def test_killed_driver_resumes_from_a_fresh_process_with_the_study_in_postgres(pg, tmp_path):
    exp, url = "pg-killed", pg.url()
    lb = Leaderboard(tmp_path / "leaderboard")
    proc = _start(tmp_path, exp, "--study-storage", url)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not ((tmp_path / "leaderboard").exists() and lb.keys(exp)):  # the first trial's row
            assert proc.poll() is None, (tmp_path / f"{exp}.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no trial finished"
            time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        _stop_group(proc)
    assert lb.read(exp).height < 3  # killed mid-search
    # The new driver is told nothing about the study: it is recorded with the experiment.
    resumed = _start(tmp_path, exp, "--resume")
    try:
        assert resumed.wait(timeout=TIMEOUT_S) == 0, (tmp_path / f"{exp}.log").read_text()[-3000:]
    finally:
        _stop_group(resumed)
    assert f"optuna study {url}" in (tmp_path / f"{exp}.log").read_text()

    rows = lb.read(exp)
    students = rows.filter(rows["stage"] == "student")
    assert students.height == 3 and students["trial_id"].n_unique() == 3
    keys = []
    for path in (tmp_path / "leaderboard" / Leaderboard.partition_name(exp)).glob("*.parquet"):
        keys += pq.read_table(path, columns=["row_key"]).column("row_key").to_pylist()
    assert sorted(keys) == sorted(students["row_key"]), "a row was written twice"
    # The study in PostgreSQL holds every finished trial exactly once, with the rows' GFLOPs.
    trials = optuna.load_study(study_name=exp, storage=study.open_storage(url)).trials
    finished = [t for t in trials if t.state.is_finished()]
    assert len(finished) == 3, [(t.number, t.state.name) for t in trials]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in finished)
    assert sorted(t.values[1] for t in finished) == pytest.approx(sorted(students["gflops"]))
    assert not (tmp_path / "search" / exp / "optuna.db").exists()


@pytest.mark.slow
def test_a_search_outlives_its_postgres_restarting_and_loses_no_trial(pg, ray_local, tmp_path, caplog):
    """PostgreSQL crashes (``-m immediate``) while trials run and the driver talks to it, and comes
    back on the same port: the search retries its study calls and finishes every trial once."""
    import threading

    def objective(cfg, *, context):
        time.sleep(2.0)  # the driver's study calls of the next trials fall into the outage
        context.report({"epoch": 1, "d2s_recall1": cfg.train.lr * 1000})

    exp, samples = "pg-restart", 4
    lb = Leaderboard(tmp_path / "lb")
    outage: dict[str, float] = {}

    def restart() -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not ((tmp_path / "lb").exists() and lb.keys(exp)) and time.monotonic() < deadline:
            time.sleep(0.2)
        outage["rows_before"] = len(lb.keys(exp)) if (tmp_path / "lb").exists() else -1
        pg.stop()
        outage["down"] = time.monotonic()
        time.sleep(6.0)  # longer than a trial: a trial ends and the next is asked for while it is down
        pg.start()
        outage["up"] = time.monotonic()

    restarter = threading.Thread(target=restart, daemon=True)
    restarter.start()
    result = search(
        trivial_space(1, name="pg-restart"),
        num_samples=samples,
        max_concurrent=1,
        experiment=exp,
        sampler="random",
        study_storage=pg.url(),
        early_stopping=False,
        objective=objective,
        **search_dirs(tmp_path),
    )
    restarter.join(timeout=120)
    assert "up" in outage and 0 < outage["rows_before"] < samples, outage  # restarted mid-search
    assert "Optuna study storage unreachable" in caplog.text  # the driver did call it while it was down
    rows = lb.read(exp)
    assert rows.height == samples and rows["trial_id"].n_unique() == samples
    assert set(rows["status"]) == {"ok"}, rows.select("trial_id", "status", "error")
    keys = []
    for path in (tmp_path / "lb" / Leaderboard.partition_name(exp)).glob("*.parquet"):
        keys += pq.read_table(path, columns=["row_key"]).column("row_key").to_pylist()
    assert sorted(keys) == sorted(rows["row_key"]), "a row was written twice"
    trials = optuna.load_study(study_name=exp, storage=study.open_storage(pg.url())).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * samples, [
        (t.number, t.state.name) for t in trials
    ]
    assert sorted(t.user_attrs[TRIAL_ID_ATTR] for t in trials) == sorted(rows["trial_id"])
    assert sorted(t.values[0] for t in trials) == pytest.approx(sorted(rows["d2s_recall1"]))
    assert result.rows.height == samples

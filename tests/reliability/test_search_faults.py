"""Faults during a search, on a real local Ray head started by the real CLI in a child process.

- a trial process SIGKILLed mid-training: the search goes on, the trial is recorded as failed;
- the search driver SIGKILLed, then ``--resume``: no finished trial lost, re-run or duplicated;
- while it runs: every socket the CLI's Ray head listens on is bound to 127.0.0.1, and a
  credential in the environment never reaches the leaderboard, the Tune state or the logs.

Each search is ``geodistill search --smoke-test`` (tiny models, two steps per epoch).
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from geodistill.config_files import CONF_DIR
from geodistill.leaderboard import Leaderboard
from geodistill.platform.runtime.ray_local import listening_addresses

FAKE_SECRET = "AKIAFAKEGEODISTILL0000/sEcReT+value+never+persist"
TIMEOUT_S = 420


def start_search(tmp: Path, experiment: str, *extra: str) -> subprocess.Popen:
    """``geodistill search --smoke-test`` as a user would start it, in its own session."""
    env = {
        **os.environ,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
        "GEODISTILL_LEADERBOARD": str(tmp / "leaderboard"),
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [
        sys.executable, "-m", "geodistill", "search", "--smoke-test",
        "--experiment", experiment, "--storage", str(tmp / "search"),
        "--max-concurrent", "1", "--no-report", *extra,
    ]  # fmt: skip
    log = open(tmp / f"{experiment}.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_for(predicate, *, proc: subprocess.Popen, what: str, timeout: float = TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"search exited ({proc.returncode}) before {what}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def trial_processes(driver: subprocess.Popen) -> list[psutil.Process]:
    """Ray worker processes of the driver's local head that are running a Tune trial right now."""
    found = []
    for child in psutil.Process(driver.pid).children(recursive=True):
        try:
            if "ImplicitFunc" in " ".join(child.cmdline()):  # Tune's function-trainable actor
                found.append(child)
        except psutil.Error:
            continue
    return found


def is_loopback(address: str) -> bool:
    """127.0.0.1 and ::1, also written IPv4-mapped (``::ffff:127.0.0.1``)."""
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def stop_group(proc: subprocess.Popen) -> None:
    """Kill what this test started (its own process group) if anything is left of it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def log_text(tmp: Path, experiment: str) -> str:
    return (tmp / f"{experiment}.log").read_text(errors="replace")


def raw_row_keys(root: Path, experiment: str) -> list[str]:
    """Row keys over every visible Parquet file, before the reader's dedup: duplicates show here."""
    keys = []
    for path in (root / Leaderboard.partition_name(experiment)).glob("*.parquet"):
        keys += pq.read_table(path, columns=["row_key"]).column("row_key").to_pylist()
    return keys


def assert_secret_never_written(*folders: Path) -> None:
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and path.stat().st_size < 50_000_000:
                assert FAKE_SECRET.encode() not in path.read_bytes(), f"credential written to {path}"


@pytest.mark.slow  # end to end: the second tier
def test_killed_trial_is_recorded_failed_and_the_search_goes_on(tmp_path: Path):
    exp = "trial-killed"
    proc = start_search(tmp_path, exp, "--num-samples", "2")
    try:
        victims = wait_for(lambda: trial_processes(proc), proc=proc, what="a running trial")
        time.sleep(1.0)  # let it get into training
        victim_pid = victims[0].pid
        victims[0].kill()
        assert proc.wait(timeout=TIMEOUT_S) == 0, log_text(tmp_path, exp)[-3000:]
    finally:
        stop_group(proc)
    rows = Leaderboard(tmp_path / "leaderboard").read(exp)
    students = rows.filter(rows["stage"] == "student")
    assert students.height == 2, students
    statuses = sorted(students["status"].to_list())
    assert statuses[0] == "failed" and statuses[1] in ("ok", "stopped"), (statuses, victim_pid)
    failed = students.filter(students["status"] == "failed").row(0, named=True)
    assert failed["error"] and "\n" not in failed["error"]
    assert sorted(raw_row_keys(tmp_path / "leaderboard", exp)) == sorted(students["row_key"].to_list())


@pytest.mark.slow  # end to end: the second tier
def test_killed_driver_resumes_without_losing_or_duplicating_trials(tmp_path: Path):
    exp = "driver-killed"
    lb = Leaderboard(tmp_path / "leaderboard")
    proc = start_search(tmp_path, exp, "--num-samples", "3")
    try:
        # Security, while the CLI's own head is up: loopback only.
        wait_for(lambda: trial_processes(proc), proc=proc, what="a running trial")
        ray_pids = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        addresses = listening_addresses(ray_pids)
        assert addresses and all(is_loopback(a) for a in addresses), addresses
        # Crash the driver once the first trial has its leaderboard row.
        wait_for(
            lambda: lb.keys(exp) if (tmp_path / "leaderboard").exists() else None, proc=proc, what="a row"
        )
        first = lb.read(exp).sort("created_at").row(0, named=True)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        stop_group(proc)
    resumed = start_search(tmp_path, exp, "--num-samples", "3", "--resume")
    try:
        assert resumed.wait(timeout=TIMEOUT_S) == 0, log_text(tmp_path, exp)[-3000:]
    finally:
        stop_group(resumed)
    rows = lb.read(exp)
    students = rows.filter(rows["stage"] == "student")
    assert students.height == 3, students
    keys = raw_row_keys(tmp_path / "leaderboard", exp)
    assert len(keys) == len(set(keys)), f"duplicated rows: {keys}"
    again = rows.filter(rows["row_key"] == first["row_key"]).row(0, named=True)
    assert again["created_at"] == first["created_at"], "a finished trial was re-run"
    assert_secret_never_written(tmp_path)
    assert FAKE_SECRET not in log_text(tmp_path, exp)


@pytest.mark.parametrize("path", ["README.md", "clusters", "docker", "src", "benchmarks"])
def test_no_credentials_in_the_repository(path: str):
    """Nothing shaped like a cloud key or private key is committed."""
    import re

    root = Path(__file__).resolve().parents[2] / path
    pattern = re.compile(
        rb"AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY-----|ghp_[A-Za-z0-9]{36}|xox[bp]-[0-9]"
    )
    files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
    assert files
    for file in files:
        assert not pattern.search(file.read_bytes()), f"credential-like string in {file}"


@pytest.mark.slow  # end to end: the second tier
def test_a_second_search_into_a_running_experiment_stops_in_one_line_and_the_first_loses_nothing(
    tmp_path: Path,
):
    exp = "twice"
    lb = Leaderboard(tmp_path / "leaderboard")
    # Trials long enough that the second search, slow to start on a busy machine, meets the first running.
    space = tmp_path / "smoke_8.yaml"
    space.write_text(
        (CONF_DIR / "search_space" / "smoke.yaml").read_text().replace("train.epochs: 2", "train.epochs: 8")
    )
    first = start_search(tmp_path, exp, "--num-samples", "3", f"search_space={space}")
    try:
        wait_for(lambda: trial_processes(first), proc=first, what="a running trial")
        teacher = sorted((tmp_path / "search" / exp / "teacher").rglob("*.safetensors"))
        stamps = [p.stat().st_mtime_ns for p in teacher]
        second = subprocess.run(
            [sys.executable, "-m", "geodistill", "search", f"search_space={space}", "--smoke-test", "--experiment", exp,
             "--storage", str(tmp_path / "search"), "--num-samples", "3", "--no-report"],
            env={**os.environ, "GEODISTILL_LEADERBOARD": str(tmp_path / "leaderboard")},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert second.returncode == 2, second.stderr[-3000:]
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "is being run by another search" in lines[0] and str(first.pid) in lines[0]
        assert "training a tiny teacher" not in second.stdout  # refused before touching the first's teacher
        assert [p.stat().st_mtime_ns for p in teacher] == stamps
        assert first.poll() is None, "the first search had ended: nothing was run at once"
        assert first.wait(timeout=TIMEOUT_S) == 0, log_text(tmp_path, exp)[-3000:]
    finally:
        stop_group(first)
    rows = lb.read(exp)
    students = rows.filter(rows["stage"] == "student")
    assert students.height == 3 and students["trial_id"].n_unique() == 3, students
    keys = raw_row_keys(tmp_path / "leaderboard", exp)
    assert len(keys) == len(set(keys)), f"duplicated rows: {keys}"
    # The lock went with the first driver: the next one (a --resume) may take the experiment.
    from geodistill.platform.search.experiment_lock import hold_experiment, released_after

    released_after(hold_experiment)(exp, str(tmp_path / "search" / exp))

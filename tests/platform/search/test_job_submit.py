"""`ray job submit ... -- geodistill search ...` against a real loopback head that this test starts and stops.

The head is started with `ray start --head` bound to 127.0.0.1 on free ports and its own temp
dir; teardown stops exactly the processes whose command line names that temp dir (never a
broad `ray stop`, which would also stop other Ray instances of this user).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from loopback_head import free_ports, pids_naming, stop_head

from geodistill.leaderboard import Leaderboard

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


@pytest.fixture
def head():
    temp_dir = tempfile.mkdtemp(prefix="gdj", dir="/tmp")  # short: unix socket paths are limited
    gcs, dashboard, client, agent, metrics = free_ports(5)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keep every process on 127.0.0.1
        "OMP_NUM_THREADS": "1",
        # Token auth, with a token of this test's own (head, job driver and CLI clients share it).
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    env.pop("RAY_ADDRESS", None)
    start = [
        str(BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
        "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard), "--include-dashboard", "true",
        "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent),
        "--metrics-export-port", str(metrics), "--num-cpus", "2", "--temp-dir", temp_dir,
        "--disable-usage-stats",
    ]  # fmt: skip
    try:
        proc = subprocess.run(start, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        yield {"address": f"http://127.0.0.1:{dashboard}", "env": env, "temp_dir": temp_dir}
    finally:
        stop_head(temp_dir)
    assert not pids_naming(temp_dir)


@pytest.mark.slow  # end to end: the second tier
def test_search_runs_unchanged_as_a_ray_job(head, tmp_path):
    storage, lb = tmp_path / "tune", tmp_path / "lb"
    submit = [
        str(BIN / "ray"), "job", "submit", "--address", head["address"], "--working-dir", str(REPO),
        "--submission-id", "geodistill-smoke", "--",
        "geodistill", "search", "search_space=smoke", "--smoke-test", "--num-samples", "2",
        "--experiment", "job", "--storage", str(storage), "--leaderboard", str(lb), "--no-report",
    ]  # fmt: skip
    # Blocks until the job ends, streaming its logs.
    proc = subprocess.run(submit, env=head["env"], capture_output=True, text=True, timeout=500, cwd=REPO)
    logs = proc.stdout + proc.stderr
    status = subprocess.run(
        [str(BIN / "ray"), "job", "status", "--address", head["address"], "geodistill-smoke"],
        env=head["env"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "Job 'geodistill-smoke' succeeded" in status.stdout + status.stderr, logs[-4000:]
    assert "Pareto set" in logs and "experiment job: 2 leaderboard rows" in logs

    rows = Leaderboard(lb).read("job")
    assert rows.height == 2 and set(rows["status"]) <= {"ok", "stopped"}
    assert (rows["stage"] == "student").all() and rows["gflops"].min() > 0
    # The driver joined the job's head (its RAY_ADDRESS) instead of starting a second local Ray.
    assert "Started a local Ray instance" not in logs

"""`ray up clusters/rehearsal.yaml`: the cloud files' node types, scaled by Ray's real autoscaler on loopback.

The cluster is launched and torn down with `ray up` / `ray down` (through the project's wrapper,
which only adds a private folder, free ports and a token), starts with no worker, and a search
submitted with `ray job submit` (the README's recipe) must make the autoscaler add a
`gpu_worker` (48 CPUs, 4 declared GPUs, as in aws.yaml / gcp.yaml). Four one-GPU trials then run
at once on it, each seeing a different CUDA_VISIBLE_DEVICES; the idle node is removed after the
search; `ray down` leaves no process, no folder and nothing in the temp directory. Every socket
of every process of the cluster is checked on 127.0.0.1 while it runs.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest
from rehearsal import REPO

from geodistill.config_files import CONF_DIR
from geodistill.leaderboard import Leaderboard
from geodistill.platform.clusters import loopback as lc
from geodistill.platform.runtime.ray_local import listening_addresses

CONFIG = str(REPO / "clusters/rehearsal.yaml")
# What a rehearsal, a launcher or a crashed run of either could leave in the temp directory.
LEFTOVERS = ("gdup", "gdreh", "ray-config-", "ray-bootstrap-")


def _temp_entries() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).iterdir() if p.name.startswith(LEFTOVERS)}


def _exposed(folder: str) -> set[str]:
    pids = [p.pid for p in lc.cluster_processes(folder)]
    assert pids, "no process of the cluster found"
    return {
        a
        for a in listening_addresses(pids)
        if not ipaddress.ip_address(a.removeprefix("::ffff:")).is_loopback
    }


def _workers(folder: str) -> dict[str, dict]:
    nodes = json.loads((Path(folder) / "nodes.json").read_text())
    return {n: d for n, d in nodes.items() if n.startswith("worker")}


def _ray(env: dict[str, str], *args: str, timeout: float = 300):
    return lc.ray_cli(*args, env={**env, **lc.client_env(env)}, timeout=timeout)


def _status(env: dict[str, str], job: str) -> str:
    code = (
        "import sys; from ray.job_submission import JobSubmissionClient; "
        "print(JobSubmissionClient(sys.argv[1]).get_job_status(sys.argv[2]).value)"
    )
    import subprocess

    full = {**os.environ, **env, **lc.client_env(env)}
    run = subprocess.run([sys.executable, "-c", code, full["RAY_ADDRESS"], job], env=full, capture_output=True,
                         text=True, timeout=120, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout.strip().splitlines()[-1]


def _launch_times(folder: Path) -> str:
    """From the autoscaler's log: its decision to add a gpu_worker -> that node running Ray; idle -> removed."""
    from datetime import datetime

    def at(line: str) -> datetime:
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")

    lines = (folder / "r/session_latest/logs/monitor.log").read_text().splitlines()
    added = next(at(x) for x in lines if "Adding 1 node(s) of type gpu_worker" in x)
    running = next(at(x) for x in lines if "->RAY_RUNNING" in x and "type=gpu_worker" in x)
    removing = next(at(x) for x in lines if "Removing 1 nodes of type gpu_worker (idle)" in x)
    stopped = next(at(x) for x in lines if "->RAY_STOPPED" in x and "type=gpu_worker" in x)
    return (
        f"autoscaler: add decision -> gpu_worker running Ray {(running - added).total_seconds():.1f} s; "
        f"idle removal -> Ray stopped on it {(stopped - removing).total_seconds():.1f} s"
    )


@pytest.mark.slow  # the second tier; `make test-cluster` too
@pytest.mark.cluster
@pytest.mark.timeout(1200)
def test_ray_up_scales_the_gpu_worker_for_a_search_and_ray_down_leaves_nothing(tmp_path: Path, monkeypatch):
    before = _temp_entries()
    # The head's `ray start` and the job's driver run `ray`/`python` from PATH; the autoscaler imports the provider.
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    monkeypatch.setenv("PYTHONPATH", str(REPO / "src"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    env = lc.prepare()
    folder = env[lc.DIR_ENV]
    try:
        assert Path(folder).stat().st_mode & 0o777 == 0o700
        assert Path(env["RAY_AUTH_TOKEN_PATH"]).stat().st_mode & 0o777 == 0o600
        up = lc.up(CONFIG, env)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert _workers(folder) == {}, "the cluster must start with no worker"
        assert not _exposed(folder), "a process of the cluster listens beyond 127.0.0.1"

        # The smoke space with longer trials, so the four overlap on a loaded machine.
        space = tmp_path / "smoke_6.yaml"
        space.write_text(
            (CONF_DIR / "search_space" / "smoke.yaml")
            .read_text()
            .replace("train.epochs: 2", "train.epochs: 6")
        )
        search = [
            "python", "-m", "geodistill", "search", f"search_space={space}", "--smoke-test", "--experiment", "gpus",
            "--num-samples", "4", "--max-concurrent", "4", "--gpus-per-trial", "1", "--no-report",
            "--no-early-stopping", "--storage", str(tmp_path / "search"), "--leaderboard", str(tmp_path / "lb"),
        ]  # fmt: skip
        submitted = time.monotonic()
        sub = _ray(env, "job", "submit", "--no-wait", "--working-dir", ".", "--runtime-env-json",
                   '{"py_modules": ["src/geodistill"]}', "--", *search)  # fmt: skip
        assert sub.returncode == 0, sub.stdout[-3000:] + sub.stderr[-3000:]
        job = next(
            w for w in (sub.stdout + sub.stderr).replace("'", " ").split() if w.startswith("raysubmit_")
        )
        joined = None
        deadline = time.monotonic() + 900
        while (status := _status(env, job)) not in ("SUCCEEDED", "FAILED", "STOPPED"):
            assert time.monotonic() < deadline, f"job still {status}"
            if joined is None and any(d.get("pid") for d in _workers(folder).values()):
                joined = time.monotonic() - submitted
                assert not _exposed(folder), "a process of the cluster listens beyond 127.0.0.1"
            time.sleep(1)
        logs = _ray(env, "job", "logs", job).stdout
        assert status == "SUCCEEDED", logs[-4000:]
        workers = _workers(folder)
        assert (
            len(workers) == 1 and next(iter(workers.values()))["tags"]["ray-user-node-type"] == "gpu_worker"
        )
        print(f"demand to a gpu_worker joining: {joined:.1f} s")

        rows = Leaderboard(tmp_path / "lb").read("gpus")
        assert rows.height == 4 and rows["trial_id"].n_unique() == 4, rows
        assert set(rows["status"]) <= {"ok", "stopped"}, rows.select("trial_id", "status", "error")
        assert rows["node_id"].n_unique() == 1  # all on the one gpu_worker the autoscaler added
        seen, spans = {}, {}
        for result in (tmp_path / "search" / "gpus").glob("*/result.json"):
            last = json.loads(result.read_text().splitlines()[-1])
            seen[last["trial_id"]] = last["cuda_visible_devices"]
            spans[last["trial_id"]] = (last["timestamp"] - last["time_total_s"], last["timestamp"])
        assert set(seen) == set(rows["trial_id"])
        assert set(seen.values()) <= {"0", "1", "2", "3"}, seen  # one declared GPU each
        # Trials running at the same time (by more than the 1 s resolution of Tune's timestamps) hold different GPUs.
        together = [
            (a, b) for a in spans for b in spans
            if a < b and min(spans[a][1], spans[b][1]) - max(spans[a][0], spans[b][0]) > 1.5
        ]  # fmt: skip
        assert together, f"no two trials ran at once: {spans}"
        assert all(seen[a] != seen[b] for a, b in together), (seen, spans)
        print(f"GPUs seen: {seen}; trials running together: {len(together)} pairs")

        # idle_timeout_minutes: 0.5 -> the idle worker goes, the head stays.
        deadline = time.monotonic() + 240
        while _workers(folder):
            assert time.monotonic() < deadline, f"idle worker not removed: {_workers(folder)}"
            time.sleep(2)
        assert lc.cluster_processes(folder), "the head went with the worker"
        print(_launch_times(Path(folder)))
        assert not rows.filter(pl.col("checkpoint_uri").is_not_null()).is_empty()
    finally:
        down = lc.down(CONFIG, env)
    assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-3000:]
    assert not lc.cluster_processes(folder), "processes of the cluster left after ray down"
    assert not Path(folder).exists(), "the rehearsal's folder (and its token) outlived the cluster"
    assert _temp_entries() <= before, f"left in the temp directory: {_temp_entries() - before}"


def _sleeper(**env: str):
    import subprocess

    return subprocess.Popen(["sleep", "120"], env={**os.environ, **env})


def test_the_folder_is_private_and_ray_stop_stops_this_cluster_only():
    env = lc.prepare()
    folder = Path(env[lc.DIR_ENV])
    ours, theirs = _sleeper(**{lc.DIR_ENV: str(folder)}), _sleeper(**{lc.DIR_ENV: "/tmp/gdup-someone-else"})
    try:
        assert folder.stat().st_mode & 0o777 == 0o700
        assert Path(env["RAY_AUTH_TOKEN_PATH"]).stat().st_mode & 0o777 == 0o600
        assert Path(env["RAY_AUTH_TOKEN_PATH"]).parent == folder  # the token goes with the folder
        assert len({env[f"GD_{name}_PORT"] for name in lc.PORTS}) == len(lc.PORTS)
        assert [p.pid for p in lc.cluster_processes(folder)] == [ours.pid]
        runner = lc.LoopbackCommandRunner(folder)
        assert runner.run("echo $HOME", with_output=True).decode().strip() == str(folder / "home")
        # What `ray down` sends the head: never the real `ray stop` (every Ray of this user here).
        runner.run("export RAY_X=1; ray stop")
        assert ours.wait(timeout=30) is not None
        assert theirs.poll() is None
    finally:
        for proc in (ours, theirs):
            proc.kill()
            proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


def test_the_next_start_removes_what_a_killed_rehearsal_left():
    stale = Path(tempfile.mkdtemp(prefix=lc.PREFIX, dir="/tmp"))
    live = Path(tempfile.mkdtemp(prefix=lc.PREFIX, dir="/tmp"))
    (stale / "auth_token").write_text("secret")
    old = time.time() - 3600
    for folder in (stale, live):
        os.utime(folder, (old, old))
    running = _sleeper(**{lc.DIR_ENV: str(live)})  # a cluster still running (its processes name it)
    try:
        removed = lc.sweep_stale(lc.PREFIX)
        assert stale in removed and not stale.exists()
        assert live.exists() and live not in removed
    finally:
        running.kill()
        running.wait()
        shutil.rmtree(live, ignore_errors=True)

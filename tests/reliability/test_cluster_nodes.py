"""A real three-node Ray cluster on loopback (`geodistill cluster rehearse`): spread, node loss, driver loss.

Every search is submitted with `ray job submit` (the README's recipe) to the rehearsal head's
dashboard, with token auth on. Storage and leaderboard are one shared directory (this machine's
file system is every node's). The nodes: a head with no CPU (the job's driver runs there) and
node_a, node_b with one CPU each, so two concurrent trials must use both.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl
import psutil
import pytest
from rehearsal import Rehearsal

from geodistill.config_files import CONF_DIR
from geodistill.leaderboard import Leaderboard

# The second tier (`make test-e2e`, CI); `make test-cluster` runs these alone.
pytestmark = [pytest.mark.slow, pytest.mark.cluster]

SMOKE = (CONF_DIR / "search_space" / "smoke.yaml").read_text()


def _space(tmp: Path, epochs: int) -> Path:
    """The smoke space with longer trials (a node can be killed while one runs)."""
    path = tmp / f"smoke_{epochs}.yaml"
    path.write_text(SMOKE.replace("train.epochs: 2", f"train.epochs: {epochs}"))
    return path


def _search(tmp: Path, experiment: str, space: Path, *extra: str) -> list[str]:
    return [
        "python", "-m", "geodistill", "search", f"search_space={space}", "--smoke-test",
        "--experiment", experiment, "--max-concurrent", "2", "--no-report",
        "--storage", str(tmp / "search"), "--leaderboard", str(tmp / "lb"), *extra,
    ]  # fmt: skip


def _job_id(submitted) -> str:
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    for word in (submitted.stdout + submitted.stderr).replace("'", " ").split():
        if word.startswith("raysubmit_"):
            return word
    raise AssertionError(submitted.stdout)


def _wait_job(cluster: Rehearsal, job: str, timeout: float = 420) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = cluster.job_status(job)
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            return status
        time.sleep(2)
    raise AssertionError(f"job {job} still {status} after {timeout} s\n{_logs(cluster, job)[-3000:]}")


def _logs(cluster: Rehearsal, job: str) -> str:
    return cluster.ray("job", "logs", "--address", cluster.dashboard, job).stdout


def _reports(tmp: Path, experiment: str) -> dict[str, list[dict]]:
    """Each trial's results as Tune saved them in the shared storage (trial dir -> result.json lines)."""
    out = {}
    for result in (tmp / "search" / experiment).glob("*/result.json"):
        lines = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        if lines:
            out[lines[-1]["trial_id"]] = lines
    return out


def _one_row_per_trial(rows: pl.DataFrame, n: int) -> None:
    assert rows.height == n, rows.select("trial_id", "status", "error")
    assert rows["trial_id"].n_unique() == n
    assert set(rows["status"]) <= {"ok", "stopped", "failed"}
    failed = rows.filter(pl.col("status") == "failed")
    assert failed["error"].is_not_null().all()


@pytest.mark.timeout(900)
def test_search_spreads_over_both_nodes_and_survives_losing_its_driver(tmp_path: Path):
    with Rehearsal(tmp_path / "cluster") as cluster:
        a, b = cluster.node_id("node_a"), cluster.node_id("node_b")
        assert not cluster.exposed(), "a process of the rehearsal cluster listens beyond 127.0.0.1"

        # Spread: six trials, two at a time, one CPU per node.
        space = _space(tmp_path, 2)
        job = _job_id(cluster.submit(*_search(tmp_path, "spread", space, "--num-samples", "6")))
        assert _wait_job(cluster, job) == "SUCCEEDED", _logs(cluster, job)[-4000:]
        rows = Leaderboard(tmp_path / "lb").read("spread")
        _one_row_per_trial(rows, 6)
        assert set(rows["node_id"]) == {a, b}, rows.select("trial_id", "node_id")
        # Checkpoints written on either node are in the shared storage, not a node's local disk.
        kept = rows.filter(pl.col("checkpoint_uri").is_not_null())
        assert kept.height >= 1
        for uri in kept["checkpoint_uri"]:
            assert Path(uri).is_relative_to(tmp_path / "search" / "spread") and Path(uri).is_dir(), uri
        assert not cluster.exposed()

        # Driver loss: SIGKILL the job's driver once a trial has finished, then --resume from a new job.
        job = _job_id(cluster.submit(*_search(tmp_path, "driverloss", space, "--num-samples", "4")))
        board = Leaderboard(tmp_path / "lb")
        deadline = time.monotonic() + 300
        while board.read("driverloss").height < 1:
            assert time.monotonic() < deadline, _logs(cluster, job)[-4000:]
            time.sleep(1)
        first = board.read("driverloss")
        drivers = [
            p for p in cluster.processes()
            if "geodistill" in " ".join(_cmdline(p)) and "driverloss" in " ".join(_cmdline(p))
        ]  # fmt: skip
        assert drivers, "the job's driver process was not found"
        for p in drivers:
            p.kill()
        assert _wait_job(cluster, job) in ("FAILED", "STOPPED")
        assert board.read("driverloss").height < 4, "the search had finished before its driver was killed"
        job = _job_id(
            cluster.submit(*_search(tmp_path, "driverloss", space, "--num-samples", "4", "--resume"))
        )
        assert _wait_job(cluster, job) == "SUCCEEDED", _logs(cluster, job)[-4000:]
        rows = board.read("driverloss")
        _one_row_per_trial(rows, 4)
        raw = pl.read_parquet(board.files("driverloss"))
        assert raw["row_key"].n_unique() == raw.height, "a trial's row was written twice"
        again = rows.filter(pl.col("trial_id").is_in(first["trial_id"].to_list()))
        assert again["created_at"].to_list() == first["created_at"].to_list(), "a finished trial was re-run"
    assert not cluster.left_behind, f"processes left after teardown: {cluster.left_behind}"


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


@pytest.mark.timeout(900)
def test_search_survives_losing_a_node_and_retries_its_trial_on_the_other(tmp_path: Path):
    epochs = 4
    with Rehearsal(tmp_path / "cluster") as cluster:
        a, b = cluster.node_id("node_a"), cluster.node_id("node_b")
        space = _space(tmp_path, epochs)
        command = _search(tmp_path, "nodeloss", space, "--num-samples", "6", "--max-failures", "1")
        job = _job_id(cluster.submit(*command, "--no-early-stopping"))

        # Kill node_b while one of its trials is part-way through (an epoch reported, not the last).
        deadline = time.monotonic() + 420
        victim = None
        while victim is None:
            assert time.monotonic() < deadline, _logs(cluster, job)[-4000:]
            for trial, reports in _reports(tmp_path, "nodeloss").items():
                last = reports[-1]
                if last.get("node_id") == b and 1 <= last.get("epoch", 0) < epochs:
                    victim = trial
            time.sleep(0.3)
        killed = cluster.kill_node("node_b")
        assert len(killed) >= 2  # the raylet and at least the trial's worker

        assert _wait_job(cluster, job, timeout=600) == "SUCCEEDED", _logs(cluster, job)[-4000:]
        rows = Leaderboard(tmp_path / "lb").read("nodeloss")
        _one_row_per_trial(rows, 6)
        # The trial that was running on node_b was retried and finished on node_a.
        row = rows.filter(pl.col("trial_id") == victim).row(0, named=True)
        assert row["status"] == "ok" and row["node_id"] == a, row
        nodes = [r.get("node_id") for r in _reports(tmp_path, "nodeloss")[victim]]
        assert nodes[0] == b and nodes[-1] == a, nodes
        # Nothing after the kill ran on node_b.
        assert set(rows["node_id"]) <= {a, b}
        assert not cluster.exposed()
    assert not cluster.left_behind, f"processes left after teardown: {cluster.left_behind}"


@pytest.mark.timeout(900)
def test_two_worker_training_spreads_and_resumes_from_its_checkpoint_after_losing_a_node(tmp_path: Path):
    """scaling.placement_strategy=SPREAD: one rank per node; node_b killed after epoch 1 is persisted.

    Two CPUs per node, so the restarted group of two fits on the surviving node (SPREAD is a preference).
    """
    from geodistill.platform.runtime.train_driver import worker_nodes, worker_pids

    epochs, out = 6, tmp_path / "runs"
    run_dir = out / "spread"
    with Rehearsal(tmp_path / "cluster", cpus_per_node=2) as cluster:
        a, b = cluster.node_id("node_a"), cluster.node_id("node_b")
        job = _job_id(
            cluster.submit(
                "python", "-m", "geodistill", "train", "preset=smoke", "scaling=cpu2",
                "scaling.placement_strategy=SPREAD", f"train.epochs={epochs}", f"output_dir={out}",
                "run_name=spread", "--max-failures", "2", "--leaderboard", str(tmp_path / "lb"),
            )
        )  # fmt: skip
        snapshot = run_dir / "checkpoints" / "checkpoint_manager_snapshot.json"
        deadline = time.monotonic() + 420
        while not (snapshot.is_file() and "epoch_0001" in snapshot.read_text()):
            assert time.monotonic() < deadline, _logs(cluster, job)[-4000:]
            time.sleep(0.1)
        spread = worker_nodes(run_dir)
        first_pids = worker_pids(run_dir)
        assert sorted(spread) == [0, 1] and set(spread.values()) == {a, b}, spread
        cluster.kill_node("node_b")

        assert _wait_job(cluster, job, timeout=600) == "SUCCEEDED", _logs(cluster, job)[-4000:]
        # The driver joined the job's cluster (RAY_ADDRESS) instead of starting a Ray of its own.
        assert "Started a local Ray instance" not in _logs(cluster, job)
        lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        logged = [int(line["epoch"]) for line in lines]
        assert logged[0] == 1 and logged.count(1) == 1, f"training restarted from epoch 1: {logged}"
        assert logged[-1] == epochs and sorted(set(logged)) == list(range(1, epochs + 1)), logged
        assert set(worker_nodes(run_dir).values()) == {a}, "the restarted group is not on the surviving node"
        assert worker_pids(run_dir) != first_pids
        # The checkpoints are in the shared run directory whichever node wrote them.
        assert (run_dir / "checkpoints" / f"epoch_{epochs:04d}").is_dir()
        assert not cluster.exposed()
    assert not cluster.left_behind, f"processes left after teardown: {cluster.left_behind}"

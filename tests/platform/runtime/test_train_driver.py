"""run_training: in-process and on Ray Train (2 CPU workers), resume, early stop, a killed worker."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from trivial_search import equal_recalls_fit

from geodistill.errors import CheckpointError, ConfigError
from geodistill.models import GeoModel
from geodistill.platform.compose import compose_run_config
from geodistill.platform.runtime.ray_local import listening_addresses, local_ray_pids
from geodistill.platform.runtime.train_driver import _user_error_in, prepare_config, run_training, worker_pids
from geodistill.train.checkpoint import load_checkpoint, read_meta

METRIC_KEYS = {
    "epoch",
    "loss",
    "loss_task",
    "d2s_recall1",
    "d2s_ap",
    "s2d_recall1",
    "s2d_ap",
    "epoch_seconds",
}


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory) -> Path:
    """One output dir per module: the synthetic set under it is generated once and shared."""
    return tmp_path_factory.mktemp("runs")


def _cfg(out_dir: Path, *overrides: str):
    return compose_run_config(["preset=smoke", f"output_dir={out_dir}", *overrides])


def _epochs_logged(run_dir: Path) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [int(json.loads(line)["epoch"]) for line in lines]


class StopAfter:
    """A picklable rung rule: stop once ``epochs`` epochs are done."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def __call__(self, epoch: int, metrics: dict[str, float]) -> bool:
        return epoch >= self.epochs


def test_in_process_run_stops_on_the_rule_then_resumes_where_it_stopped(out_dir):
    cfg = _cfg(out_dir, "run_name=local", "train.epochs=2")
    first = run_training(cfg, should_stop=StopAfter(1))
    run_dir = out_dir / "local"
    assert (first.epochs_done, first.stopped_early) == (1, True)
    assert METRIC_KEYS <= set(first.metrics)
    assert first.checkpoint == run_dir / "checkpoints" / "epoch_0001"
    assert read_meta(first.checkpoint)["epoch"] == 1

    second = run_training(cfg)  # same run name: resumes from epoch_0001
    assert (second.epochs_done, second.stopped_early) == (2, False)
    assert _epochs_logged(run_dir) == [1, 2]  # never restarted from epoch 1
    assert second.checkpoint == run_dir / "checkpoints" / "epoch_0002"
    model, meta = load_checkpoint(second.checkpoint)
    assert meta["epoch"] == 2 and meta["config"]["run_name"] == "local"


@pytest.mark.slow
def test_a_run_keeps_its_last_and_best_checkpoints_only_unless_asked(out_dir):
    """Issue 29: a teacher kept all its epochs (129 MB each with the training state); by default
    a run keeps the last epoch whole (resume needs its state) and the best one's weights."""
    cfg = _cfg(out_dir, "run_name=keep", "train.epochs=4")
    result = run_training(cfg)
    ckpts = out_dir / "keep" / "checkpoints"
    recall = {
        int(json.loads(line)["epoch"]): json.loads(line)["d2s_recall1"]
        for line in (out_dir / "keep" / "metrics.jsonl").read_text().splitlines()
    }
    best = max(sorted(recall), key=lambda e: recall[e])  # the earliest of equal bests
    kept = sorted(p.name for p in ckpts.iterdir())
    assert kept == sorted({f"epoch_{best:04d}", "epoch_0004"}) and result.checkpoint == ckpts / "epoch_0004"
    assert (ckpts / "epoch_0004" / "train_state.pt").is_file()
    if best != 4:
        assert not (ckpts / f"epoch_{best:04d}" / "train_state.pt").exists()
        load_checkpoint(ckpts / f"epoch_{best:04d}")  # still a loadable checkpoint
    every = run_training(_cfg(out_dir, "run_name=every", "train.epochs=3", "train.keep_checkpoints=all"))
    assert sorted(p.name for p in every.checkpoint.parent.iterdir()) == [f"epoch_000{i}" for i in (1, 2, 3)]


def test_prepare_config_names_the_run_and_makes_paths_absolute(out_dir, monkeypatch):
    monkeypatch.chdir(out_dir)
    cfg = prepare_config(compose_run_config(["model=resnet18", "output_dir=rel"]))
    assert cfg.run_name == "teacher_resnet18"
    assert cfg.output_dir == str(out_dir.resolve() / "rel")
    with pytest.raises(ConfigError, match="run_name must be a plain name"):
        prepare_config(compose_run_config(["run_name=a/b"]))


def test_student_needs_an_existing_teacher_before_anything_starts(out_dir):
    with pytest.raises(ConfigError, match=r"^stage=student needs distill.teacher_checkpoint=PATH"):
        run_training(_cfg(out_dir, "stage=student"))
    # composition checks the path on disk (the declared rule), before run_training does anything
    with pytest.raises(ConfigError, match="^distill.teacher_checkpoint does not exist; got '.*nowhere'$"):
        run_training(_cfg(out_dir, "stage=student", f"distill.teacher_checkpoint={out_dir / 'nowhere'}"))
    (out_dir / "empty_run").mkdir(exist_ok=True)
    with pytest.raises(CheckpointError, match="empty_run: no checkpoint here"):
        run_training(_cfg(out_dir, "stage=student", f"distill.teacher_checkpoint={out_dir / 'empty_run'}"))
    with pytest.raises(ConfigError, match="^data.root does not exist"):
        run_training(_cfg(out_dir, f"data.root={out_dir / 'no_data'}"))


def _is_loopback(address: str) -> bool:
    import ipaddress

    ip = ipaddress.ip_address(address)
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


@pytest.mark.slow  # end to end: the second tier
def test_ray_ddp_survives_a_killed_worker_and_resumes_from_its_checkpoint(out_dir, ray_local):
    """Rank 1 is SIGKILLed after epoch 1 is persisted; Ray restarts the group, fit resumes at epoch 2."""
    cfg = _cfg(out_dir, "run_name=ray_ddp", "train.epochs=3", "scaling=cpu2", "train.strategy=ddp")
    run_dir = out_dir / "ray_ddp"
    seen: dict = {}

    # Ray resumes from the last checkpoint its controller has registered (it polls the workers;
    # reports are queued one deep, so the workers are at most one report ahead). Kill once the
    # controller's snapshot lists epoch 1: the workers are then in epoch 2 or 3, never done.
    snapshot = out_dir / "ray_ddp" / "checkpoints" / "checkpoint_manager_snapshot.json"

    def kill_rank1_after_first_epoch() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if snapshot.is_file() and "epoch_0001" in snapshot.read_text():
                pids = worker_pids(run_dir)
                seen["pids"] = pids
                # While training runs: every Ray process, Train workers (gloo) included, on loopback only.
                seen["addresses"] = listening_addresses(local_ray_pids())
                os.kill(pids[1], signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_rank1_after_first_epoch, daemon=True)
    killer.start()
    result = run_training(cfg, max_failures=2)
    killer.join(timeout=5)

    assert "pids" in seen, "the first epoch was never logged"
    assert sorted(seen["pids"]) == [0, 1]
    restarted = worker_pids(run_dir)
    assert restarted[1] != seen["pids"][1], "the killed worker was not replaced"
    epochs = _epochs_logged(run_dir)
    assert epochs[0] == 1 and epochs.count(1) == 1, f"training restarted from scratch: {epochs}"
    assert epochs[-1] == 3 and sorted(set(epochs)) == [1, 2, 3]
    assert result.epochs_done == 3 and not result.stopped_early
    assert result.checkpoint == out_dir / "ray_ddp" / "checkpoints" / "epoch_0003"  # the in-process layout
    _, meta = load_checkpoint(result.checkpoint)
    assert meta["epoch"] == 3
    exposed = sorted(a for a in seen["addresses"] if not _is_loopback(a))
    assert not exposed, f"a Ray/Train process listens beyond loopback on {exposed}"


@pytest.mark.slow  # end to end: the second tier
def test_ray_deepspeed_two_workers_stop_on_the_rung_rule_with_a_full_checkpoint(out_dir, ray_local):
    cfg = _cfg(
        out_dir,
        "run_name=ray_ds",
        "scaling=cpu2",
        "train.strategy=deepspeed",
        "train.zero_stage=2",
        "train.epochs=3",
    )
    import sys

    from ray import cloudpickle

    # Ray workers cannot import this test module; ship StopAfter by value (a real rule lives in a package).
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        result = run_training(
            cfg, max_failures=0, should_stop=StopAfter(1)
        )  # the rule travels to the workers
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert (result.epochs_done, result.stopped_early) == (1, True)
    assert METRIC_KEYS <= set(result.metrics)
    assert result.checkpoint == out_dir / "ray_ds" / "checkpoints" / "epoch_0001"
    model, meta = load_checkpoint(result.checkpoint)
    assert meta["config"]["train"]["strategy"] == "deepspeed"
    with torch.device("meta"):
        reference = GeoModel(cfg.model, num_classes=meta["num_classes"])  # what a 1-process run builds
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())
    assert _epochs_logged(out_dir / "ray_ds") == [1]


def test_more_workers_than_the_local_head_has_cpus_is_refused_at_once(out_dir, ray_local):
    cfg = _cfg(out_dir, "run_name=too_big", "scaling.num_workers=3")
    with pytest.raises(
        ConfigError, match=r"^scaling asks for 3 CPU\(s\) \(3 worker\(s\)\) but this machine's Ray has 2;"
    ):
        run_training(cfg)
    if ray_local.cluster_resources().get("GPU", 0) >= 1:
        return  # a GPU box can place it
    with pytest.raises(ConfigError, match=r"asks for 1 GPU\(s\)"):
        run_training(_cfg(out_dir, "run_name=no_gpu", "scaling=gpu1", "scaling.cpus_per_worker=1"))


def test_user_errors_wrapped_by_ray_are_rebuilt_as_their_own_one_line_class():
    from ray.exceptions import RayTaskError
    from ray.train import WorkerGroupError

    try:
        raise CheckpointError("teacher has the wrong shape")
    except CheckpointError as err:
        wrapped = RayTaskError("fit", "Traceback (most recent call last):\n...", err).as_instanceof_cause()
    failure = WorkerGroupError("rank 1 failed", {0: RuntimeError("gloo: connection reset"), 1: wrapped})
    rebuilt = _user_error_in(failure)
    assert type(rebuilt) is CheckpointError and str(rebuilt) == "teacher has the wrong shape"
    assert _user_error_in(WorkerGroupError("crash", {0: RuntimeError("segfault")})) is None


@pytest.mark.slow  # one more worker-group start; the translation itself is tested just above
def test_a_user_error_raised_in_a_ray_worker_comes_back_as_one_line(out_dir, ray_local):
    # What fit raises when a data set leaves a rank without a building: the composed config passes
    # every check made before Ray starts, so the error is first seen inside the workers.
    def fit(cfg, *, context):
        raise ConfigError(
            f"data.batch_size ({cfg.data.batch_size}) over 1 training buildings leaves "
            f"fewer than one building per rank ({context.world_size} ranks)"
        )

    cfg = _cfg(out_dir, "run_name=ray_bad", "scaling=cpu2")
    with pytest.raises(ConfigError) as info:
        run_training(cfg, max_failures=0, fit_fn=fit)
    assert str(info.value) == (
        f"data.batch_size ({cfg.data.batch_size}) over 1 training buildings leaves "
        "fewer than one building per rank (2 ranks)"
    )


def test_a_run_keeps_its_config_and_refuses_to_resume_with_a_different_one(out_dir):
    calls = []

    def fit(cfg, *, context):  # records what would have trained; the refusal must come first
        calls.append(cfg.train.lr)
        return cfg.train.lr

    name = "knows_its_config"
    run_training(_cfg(out_dir, f"run_name={name}", "train.lr=0.001"), fit_fn=fit)
    saved = json.loads((out_dir / name / "config.json").read_text())
    assert saved["train"]["lr"] == 0.001 and saved["run_name"] == name
    # Same config (and a longer run: train.epochs may differ) resumes.
    run_training(_cfg(out_dir, f"run_name={name}", "train.lr=0.001", "train.epochs=5"), fit_fn=fit)
    assert calls == [0.001, 0.001]
    with pytest.raises(ConfigError) as err:
        run_training(_cfg(out_dir, f"run_name={name}", "train.lr=0.0003", "data.views=2"), fit_fn=fit)
    assert str(err.value) == (
        f"run {name} exists with data.views=1, train.lr=0.001; this run has data.views=2, train.lr=0.0003 — "
        "pass train.resume=force to resume anyway, or choose another run_name"
    )
    assert calls == [0.001, 0.001]  # refused before any compute
    run_training(_cfg(out_dir, f"run_name={name}", "train.lr=0.0003", "train.resume=force"), fit_fn=fit)
    assert calls == [0.001, 0.001, 0.0003]
    assert json.loads((out_dir / name / "config.json").read_text())["train"]["lr"] == 0.0003  # now recorded


def test_train_cli_refuses_a_changed_config_in_one_line(out_dir, capsys):
    from geodistill.platform.cli import main

    name = "cli_knows_its_config"
    (out_dir / name).mkdir()
    cfg = prepare_config(_cfg(out_dir, f"run_name={name}"))
    (out_dir / name / "config.json").write_text(json.dumps(cfg.to_dict()))
    argv = ["train", "preset=smoke", f"output_dir={out_dir}", f"run_name={name}", "train.lr=0.0003"]
    assert main([*argv, "--no-leaderboard"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"geodistill train: error: run {name} exists with train.lr=")
    assert "this run has train.lr=0.0003 — pass train.resume=force" in err[-1]
    assert not (out_dir / name / "checkpoints").exists()


def test_train_cli_prepares_its_config_once_and_trains_that_config(out_dir, monkeypatch):
    """`geodistill train` prepares (names the run, resolves paths, checks the teacher) once; the
    config it prints and files its row under is the one trained."""
    import geodistill.eval
    from geodistill.platform.cli import main
    from geodistill.platform.runtime import train_driver
    from geodistill.train.loop import TrainResult

    prepared, trained = [], []
    real_prepare = train_driver.prepare_config

    def counting_prepare(cfg):
        prepared.append(cfg.run_name)
        return real_prepare(cfg)

    def fit(cfg, *, context):  # what would have trained
        trained.append(cfg)
        return TrainResult(
            epochs_done=1, metrics={"loss": 1.0}, checkpoint=None, stopped_early=False, skipped_media=0
        )

    monkeypatch.setattr(train_driver, "prepare_config", counting_prepare)
    monkeypatch.setattr(geodistill.eval, "fit_evaluated", fit)
    monkeypatch.chdir(out_dir)
    assert main(["train", "preset=smoke", "output_dir=rel", "run_name=once", "--no-leaderboard"]) == 0
    assert prepared == ["once"]  # it was prepared twice: by the command and again by run_training
    assert [(c.run_name, c.output_dir) for c in trained] == [("once", str(out_dir / "rel"))]
    with pytest.raises(ValueError, match="prepare_config's output"):
        run_training(_cfg(out_dir, "output_dir=rel"), prepared=True, fit_fn=fit)


def test_a_ray_run_begun_before_checkpoints_were_scored_keeps_every_epoch_when_resumed(out_dir, tmp_path):
    """Ray ranks checkpoints by ``checkpoint_score``; a snapshot of checkpoints without it (a run
    begun before) would make Ray log an error for each and delete them all but the new latest."""
    from geodistill.platform.runtime.train_driver import (
        CHECKPOINT_SCORE,
        RAY_SNAPSHOT_FILE,
        _keep_checkpoints,
    )

    cfg = _cfg(out_dir)
    snapshot = tmp_path / "run" / RAY_SNAPSHOT_FILE
    assert _keep_checkpoints(cfg, str(tmp_path), "run") == "last_best"  # a new run
    snapshot.parent.mkdir()
    scored = {"checkpoint_dir_name": "epoch_0001", "metrics": {"epoch": 1.0, CHECKPOINT_SCORE: -1.0}}
    snapshot.write_text(json.dumps({"checkpoint_results": [scored]}))
    assert _keep_checkpoints(cfg, str(tmp_path), "run") == "last_best"
    old = {"checkpoint_dir_name": "epoch_0002", "metrics": {"epoch": 2.0, "d2s_recall1": 50.0}}
    snapshot.write_text(json.dumps({"checkpoint_results": [scored, old]}))
    assert _keep_checkpoints(cfg, str(tmp_path), "run") == "all"
    assert _keep_checkpoints(cfg, "s3://bucket/runs", "run") == "last_best"  # not read remotely
    snapshot.write_text("{not json")
    assert _keep_checkpoints(cfg, str(tmp_path), "run") == "last_best"


def _kept(checkpoints: Path) -> dict[str, list[str]]:
    return {
        p.name: sorted(f.name for f in p.iterdir())
        for p in sorted(checkpoints.iterdir())
        if p.name.startswith("epoch_")
    }


@pytest.mark.slow  # one Ray Train worker group: ~20 s
def test_on_equal_recall_both_runners_keep_the_earlier_epoch_as_the_best(out_dir, ray_local):
    """docs/design.md: of equal bests the earlier epoch is kept (reached with less training);
    Ray's own rule would keep the later one."""
    expected = {
        "epoch_0001": ["meta.json", "model.safetensors"],  # the best: weights only
        "epoch_0003": ["meta.json", "model.safetensors", "train_state.pt"],  # the latest, whole
    }
    run_training(_cfg(out_dir, "run_name=tie_local", "train.epochs=3"), fit_fn=equal_recalls_fit)
    assert _kept(out_dir / "tie_local" / "checkpoints") == expected
    cfg = _cfg(out_dir, "run_name=tie_ray", "train.epochs=3", "scaling.num_workers=1")
    on_ray = run_training(cfg, max_failures=0, fit_fn=equal_recalls_fit)
    assert on_ray.checkpoint == out_dir / "tie_ray" / "checkpoints" / "epoch_0003"
    assert _kept(on_ray.checkpoint.parent) == expected

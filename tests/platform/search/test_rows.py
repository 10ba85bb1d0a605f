"""A trial's leaderboard row names its checkpoint by a URI a user opens, and a Ray Train trial the
time budget cut (it reported nothing to Tune) gets its row from the run folder its trainer wrote,
or from its newest checkpoint on the storage (a path or s3://) when that folder is on another machine."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from trivial_search import trivial_space

from geodistill.leaderboard import Leaderboard
from geodistill.platform.compose import compose_run_config
from geodistill.platform.search.plan import SearchPlan
from geodistill.platform.search.rows import LeaderboardCallback, checkpoint_uri


def test_a_checkpoint_on_uri_storage_is_named_with_its_scheme_and_the_storages_options(tmp_path):
    from ray.train import Checkpoint  # over the pyarrow file system its URI opens (no network)

    storage = "s3://b/tune?endpoint_override=127.0.0.1:9000&scheme=http&region=us-east-1"
    ckpt = Checkpoint(
        "s3://b/tune/exp/trial_1/checkpoint_000002?endpoint_override=127.0.0.1:9000&region=us-east-1"
    )
    assert (ckpt.filesystem.type_name, ckpt.path) == ("s3", "b/tune/exp/trial_1/checkpoint_000002")
    assert checkpoint_uri(ckpt, storage) == (
        "s3://b/tune/exp/trial_1/checkpoint_000002?endpoint_override=127.0.0.1:9000&scheme=http&region=us-east-1"
    )
    assert (
        checkpoint_uri(ckpt) == "s3://b/tune/exp/trial_1/checkpoint_000002"
    )  # no storage: the bucket is kept
    local = Checkpoint(str(tmp_path / "tune" / "exp" / "c"))
    assert checkpoint_uri(local, str(tmp_path / "tune")) == str(tmp_path / "tune" / "exp" / "c")
    assert checkpoint_uri(None, storage) is None


def test_a_checkpoint_whose_path_lost_its_account_is_named_only_through_the_storage(caplog):
    """pyarrow's path on abfs drops the account (as on hdfs the namenode): without Tune's storage
    no URI names the checkpoint, and the row says none rather than one that opens nowhere."""
    from ray.train import Checkpoint

    storage = "abfss://c@acct.dfs.core.windows.net/tune?credential_kind=anonymous"
    ckpt = Checkpoint("abfss://c@acct.dfs.core.windows.net/tune/exp/trial_1/checkpoint_000002")
    assert (ckpt.filesystem.type_name, ckpt.path) == ("abfs", "c/tune/exp/trial_1/checkpoint_000002")
    assert checkpoint_uri(ckpt, storage) == (
        "abfss://c@acct.dfs.core.windows.net/tune/exp/trial_1/checkpoint_000002?credential_kind=anonymous"
    )
    with caplog.at_level("WARNING"):
        assert checkpoint_uri(ckpt) is None
    assert "checkpoint c/tune/exp/trial_1/checkpoint_000002 on abfs not named" in caplog.text


def _cut_ray_train_trial(tmp_path: Path, *, keep_epoch: int | None) -> tuple[SearchPlan, dict]:
    """A Ray Train trial the budget cut after 5 epochs, evaluated every 2nd (and its rows' plan)."""
    base = compose_run_config(["preset=smoke", f"output_dir={tmp_path / 'work'}"])
    plan = SearchPlan.build(trivial_space(8, **{"scaling.num_workers": 1}), base, check_teacher=False)
    run = tmp_path / "work" / "t1"  # <output_dir>/<trial_id>: run_training's run folder
    run.mkdir(parents=True)
    (run / "trial.json").write_text(json.dumps({"gflops": 0.25, "params_m": 1.5, "node_id": "n1"}))
    epochs = [{"epoch": e, "loss": 1.0 / e, "epoch_seconds": 2.0} for e in range(1, 6)]
    for e in epochs:
        if e["epoch"] % 2 == 0:
            e.update(d2s_recall1=10.0 * e["epoch"], s2d_recall1=5.0 * e["epoch"])
    lines = [json.dumps(e) for e in epochs] + ['{"epoch": 6, "lo']  # the line the cut interrupted
    (run / "metrics.jsonl").write_text("\n".join(lines))
    trainers = tmp_path / "tune" / "exp" / "trainers" / "t1"
    for e in (2, 5) if keep_epoch is None else (keep_epoch, 5):
        (trainers / f"epoch_{e:04d}").mkdir(parents=True, exist_ok=True)
        (trainers / f"epoch_{e:04d}" / "meta.json").write_text("{}")
    if keep_epoch is None:
        (trainers / "epoch_0005" / "meta.json").unlink()  # the latest, half written
    trial = SimpleNamespace(
        trial_id="t1", config={"train.lr": 0.005}, status="TERMINATED", last_result={"trial_id": "t1"},
        checkpoint=None, storage=None,
    )  # fmt: skip
    callback = LeaderboardCallback(str(tmp_path / "lb"), "exp", plan, storage=str(tmp_path / "tune"))
    assert callback.write(trial)
    return plan, Leaderboard(tmp_path / "lb").read("exp").row(0, named=True)


@pytest.mark.parametrize("kept", [4, None])
def test_a_ray_train_trial_the_budget_cut_gets_its_last_evaluated_epoch_from_its_run_folder(tmp_path, kept):
    _, row = _cut_ray_train_trial(tmp_path, keep_epoch=kept)
    assert row["status"] == "stopped" and row["error"] is None
    assert (row["d2s_recall1"], row["s2d_recall1"]) == (40.0, 20.0)  # epoch 4, the last evaluated
    assert row["epochs"] == 5  # epochs trained: 5 (the 6th was cut)
    assert row["gflops"] == 0.25 and row["compute"] == pytest.approx(5 * 0.25)  # compute_units
    assert row["wall_seconds"] == pytest.approx(10.0) and row["node_id"] == "n1"
    named = tmp_path / "tune" / "exp" / "trainers" / "t1" / "epoch_0004"
    assert row["checkpoint_uri"] == (str(named) if kept else None)  # only a complete one it kept


def test_a_ray_train_trial_cut_before_its_first_evaluation_gets_its_epochs_and_cost(tmp_path):
    base = compose_run_config(["preset=smoke", f"output_dir={tmp_path / 'work'}"])
    plan = SearchPlan.build(trivial_space(8, **{"scaling.num_workers": 1}), base, check_teacher=False)
    run = tmp_path / "work" / "t3"
    run.mkdir(parents=True)
    (run / "trial.json").write_text(json.dumps({"gflops": 0.5}))
    (run / "metrics.jsonl").write_text("\n".join(json.dumps({"epoch": e, "loss": 1.0}) for e in (1, 2)))
    trial = SimpleNamespace(
        trial_id="t3", config={"train.lr": 0.005}, status="TERMINATED", last_result={}, checkpoint=None,
        storage=None,
    )  # fmt: skip
    LeaderboardCallback(str(tmp_path / "lb"), "exp", plan, storage=str(tmp_path / "tune")).write(trial)
    row = Leaderboard(tmp_path / "lb").read("exp").row(0, named=True)
    assert row["status"] == "stopped" and row["epochs"] == 2 and row["compute"] == pytest.approx(1.0)
    assert row["d2s_recall1"] is None and row["checkpoint_uri"] is None


def test_a_cut_ray_train_trial_without_its_run_folder_keeps_an_empty_stopped_row(tmp_path):
    base = compose_run_config(["preset=smoke", f"output_dir={tmp_path / 'work'}"])
    plan = SearchPlan.build(trivial_space(8, **{"scaling.num_workers": 1}), base, check_teacher=False)
    trial = SimpleNamespace(
        trial_id="t2", config={"train.lr": 0.005}, status="TERMINATED", last_result={}, checkpoint=None,
        storage=None,
    )  # fmt: skip
    LeaderboardCallback(str(tmp_path / "lb"), "exp", plan, storage=str(tmp_path / "tune")).write(trial)
    row = Leaderboard(tmp_path / "lb").read("exp").row(0, named=True)
    assert row["status"] == "stopped" and row["epochs"] is None and row["checkpoint_uri"] is None


def _checkpoints(folder: Path, cfg, epochs: int) -> None:
    """``epochs`` epoch_NNNN folders as the training loop writes them (``save_checkpoint``, its
    metrics; every 2nd epoch evaluated), then one the cut left without its meta.json."""
    from geodistill.models import model_from_config
    from geodistill.train.checkpoint import save_checkpoint

    model = model_from_config(cfg.model, 8)
    for e in range(1, epochs + 1):
        metrics = {"epoch": float(e), "loss": 1.0 / e, "skipped_media": 0.0, "train_samples": 32.0}
        metrics.update(train_sample_gflops=0.5, epoch_seconds=2.0)
        if e % 2 == 0:
            metrics.update(d2s_recall1=10.0 * e, s2d_recall1=5.0 * e)
        save_checkpoint(folder / f"epoch_{e:04d}", model, config=cfg, metrics=metrics, epoch=e)
    (folder / f"epoch_{epochs + 1:04d}").mkdir()
    (folder / f"epoch_{epochs + 1:04d}" / "model.safetensors").write_bytes(b"half written")


def _cut_row_from_storage(tmp_path: Path, storage: str, write) -> tuple[dict, float]:
    """The row of Ray Train trial t4, cut after 4 epochs, whose run folder is not on this machine
    (a relative output_dir); ``write(cfg)`` puts its checkpoints under ``storage``. (row, GFLOPs)."""
    from geodistill.models.cost import config_cost

    base = compose_run_config(["preset=smoke", "output_dir=work"])  # relative: the trial's own cwd
    plan = SearchPlan.build(trivial_space(8, **{"scaling.num_workers": 1}), base, check_teacher=False)
    cfg = plan.config({"train.lr": 0.005})
    write(cfg)
    trial = SimpleNamespace(
        trial_id="t4", config={"train.lr": 0.005}, status="TERMINATED", last_result={}, checkpoint=None,
        storage=None,
    )  # fmt: skip
    assert LeaderboardCallback(str(tmp_path / "lb"), "exp", plan, storage=storage).write(trial)
    row = Leaderboard(tmp_path / "lb").read("exp").row(0, named=True)
    return row, config_cost(cfg.model, cfg.data.views)["gflops"]


def _assert_newest_checkpoint_row(row: dict, gflops: float, named: str) -> None:
    assert row["status"] == "stopped" and row["epochs"] == 4  # the newest complete checkpoint's
    assert (row["d2s_recall1"], row["s2d_recall1"]) == (40.0, 20.0)  # its meta's metrics
    assert row["checkpoint_uri"] == named
    assert row["gflops"] == pytest.approx(gflops) and row["compute"] == pytest.approx(4 * gflops)
    assert row["train_gflops"] == pytest.approx(4 * 32 * 0.5)  # epochs x samples x per sample
    assert row["wall_seconds"] is None and row["node_id"] is None  # not in a checkpoint: unknown


def test_a_cut_ray_train_trial_whose_run_folder_is_elsewhere_gets_its_newest_checkpoint(tmp_path):
    trainers = tmp_path / "tune" / "exp" / "trainers" / "t4"
    row, gflops = _cut_row_from_storage(
        tmp_path, str(tmp_path / "tune"), lambda cfg: _checkpoints(trainers, cfg, 4)
    )
    _assert_newest_checkpoint_row(row, gflops, str(trainers / "epoch_0004"))


def test_a_cut_ray_train_trial_on_s3_gets_its_newest_checkpoint_from_the_bucket(s3, tmp_path):
    import pyarrow.fs as pafs

    def upload(cfg) -> None:
        _checkpoints(tmp_path / "t4", cfg, 4)
        dest = f"{s3.bucket}/tune/exp/trainers/t4"
        pafs.copy_files(str(tmp_path / "t4"), dest, destination_filesystem=s3.filesystem())

    row, gflops = _cut_row_from_storage(tmp_path, s3.uri("tune"), upload)
    _assert_newest_checkpoint_row(row, gflops, s3.uri("tune/exp/trainers/t4/epoch_0004"))

"""Experiment tracking, read back through each tool's own reader.

TensorBoard event files through TensorBoard's ``EventAccumulator``, the MLflow SQLite store
through ``MlflowClient``, W&B offline runs (``WANDB_MODE=offline``) from the run's transaction
log (``run-<id>.wandb``, W&B's record protos in LevelDB-log framing). One real training run
writes to all three at once, and so does a tiny search with a trivial objective.
"""

from __future__ import annotations

import glob
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from geodistill.errors import ConfigError
from geodistill.platform import tracking
from geodistill.platform.compose import SMOKE_OVERRIDES, compose_run_config
from geodistill.platform.tracking import MissingExtra, parse_loggers, require

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ readers


def tensorboard_scalars(folder: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def tensorboard_tags(folder: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return set(acc.Tags()["tensors"])


def wandb_records(run_dir: Path) -> dict:
    """history rows, run config and summary of one offline W&B run folder."""
    from wandb.proto import wandb_internal_pb2 as pb

    (log,) = glob.glob(str(run_dir / "run-*.wandb"))
    data = Path(log).read_bytes()
    assert data[:4] == b":W&B"
    chunks, pos, block, buf = [], 7, 32768, b""
    while pos + 7 <= len(data):  # LevelDB log framing: 32 KiB blocks of (crc, length, type) records
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:
            chunks.append(chunk)
        elif kind in (2, 3):
            buf = chunk if kind == 2 else buf + chunk
        elif kind == 4:
            chunks.append(buf + chunk)
            buf = b""
    out = {"history": [], "config": {}, "summary": {}, "run": None}
    for raw in chunks:
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            out["history"].append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "run":
            out["run"] = record.run
            out["config"].update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif kind == "summary":
            out["summary"].update({_key(i): json.loads(i.value_json) for i in record.summary.update})
    return out


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)  # W&B stores a key in one field or the other


# ------------------------------------------------------------------ choosing loggers


def test_logger_choice_parses_validates_and_names_the_missing_extra(monkeypatch):
    assert parse_loggers("tensorboard, mlflow") == ("tensorboard", "mlflow")
    assert parse_loggers(["none"]) == () and parse_loggers(None) == ()
    with pytest.raises(ConfigError, match="logger must be among"):
        parse_loggers("tensorbored")
    assert compose_run_config(["logger='tensorboard,mlflow'"]).logger == ["tensorboard", "mlflow"]
    assert compose_run_config(["logger=[wandb]"]).logger == ["wandb"]
    with pytest.raises(ConfigError, match="logger must be one of"):
        compose_run_config(["logger=neptune"])
    # A library that is not installed: one line naming the extra.
    monkeypatch.setitem(tracking.REQUIRES, "wandb", ("geodistill_no_such_module", "wandb"))
    with pytest.raises(MissingExtra, match=r"pip install 'geodistill\[wandb\]'"):
        require(["tensorboard", "wandb"])


@pytest.mark.slow  # 10-30 s: the second tier (CI runs it), keeping `make test` under 8 minutes
def test_cli_refuses_an_unknown_logger_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "geodistill", "train", "--smoke-test", "logger=tensorbored"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        timeout=600,  # a loaded shared machine imports torch slowly; the check itself is instant
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "geodistill train: error: logger must be one of none, tensorboard, mlflow, wandb; got 'tensorbored'"
    )


# ------------------------------------------------------------------ a training run


@pytest.mark.slow
def test_a_training_run_writes_losses_metrics_cost_and_config_to_all_three(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from geodistill.models.cost import config_cost
    from geodistill.platform.runtime.train_driver import prepare_config, run_training

    cfg = compose_run_config(
        [
            *SMOKE_OVERRIDES,
            f"output_dir={tmp_path}",
            "train.epochs=2",
            "run_name=tracked",
            "experiment=trk",
            "logger='tensorboard,mlflow,wandb'",
        ]
    )
    result = run_training(cfg)
    history = [json.loads(line) for line in (tmp_path / "tracked" / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2] and result.epochs_done == 2
    prepared = prepare_config(cfg)
    cost = config_cost(prepared.model, prepared.data.views)

    # TensorBoard: every epoch's loss and metric at step = epoch, the cost, the config text.
    scalars = tensorboard_scalars(tmp_path / "tracked" / "tensorboard")
    for key in ("loss", "loss_task", "d2s_recall1", "s2d_ap"):
        assert scalars[key] == pytest.approx({h["epoch"]: h[key] for h in history})
    assert scalars["cost/gflops"][0] == pytest.approx(cost["gflops"])
    assert scalars["cost/params_m"][0] == pytest.approx(cost["params_m"])
    assert "config/text_summary" in tensorboard_tags(tmp_path / "tracked" / "tensorboard")

    # MLflow: a local SQLite store, one run named after the run, its metrics and resolved config.
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("trk")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "tracked" and run.info.status == "FINISHED"
    losses = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "loss")}
    assert losses == pytest.approx({h["epoch"]: h["loss"] for h in history})
    assert run.data.metrics["cost/gflops"] == pytest.approx(cost["gflops"])
    assert run.data.params["train.epochs"] == "2" and run.data.params["model.backbone"] == "vit_tiny"

    # W&B offline: the run folder under the run dir, its history and config.
    (offline,) = glob.glob(str(tmp_path / "tracked" / "wandb" / "offline-run-*"))
    wb = wandb_records(Path(offline))
    assert wb["run"].display_name == "tracked" and wb["run"].run_group == "trk"
    epochs = [row for row in wb["history"] if "loss" in row]
    assert [row["loss"] for row in epochs] == pytest.approx([h["loss"] for h in history])
    assert [row["epoch"] for row in epochs] == [1, 2] and [row["_step"] for row in epochs] == [1, 2]
    assert wb["config"]["train"]["epochs"] == 2 and wb["summary"]["cost/gflops"] == pytest.approx(
        cost["gflops"]
    )


# ------------------------------------------------------------------ a search


@pytest.mark.slow
def test_a_search_tracks_every_trial_through_tunes_logger_callbacks(ray_local, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = _tracked_search(tmp_path, "tracked", loggers="tensorboard,mlflow,wandb", verbose=0)
    rows = {r["trial_id"]: r for r in result.rows.iter_rows(named=True)}
    assert len(rows) == 2
    experiment_dir = Path(result.experiment_path)

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{experiment_dir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tracked").experiment_id])
    assert len(runs) == 2
    for trial_id, row in rows.items():
        lr = row["lr"]
        (trial_dir,) = [Path(p) for p in glob.glob(str(experiment_dir / f"*{trial_id}*")) if Path(p).is_dir()]
        expected = {1: lr * 1000, 2: lr * 2000}
        # TensorBoard (Tune's TBXLoggerCallback): per-iteration metric and the trial's cost.
        scalars = tensorboard_scalars(trial_dir)
        assert scalars["ray/tune/d2s_recall1"] == pytest.approx(expected)
        assert list(scalars["ray/tune/gflops"].values()) == pytest.approx([row["gflops"]] * 2)
        assert "config/text_summary" in tensorboard_tags(trial_dir)
        # MLflow (MLflowLoggerCallback): a run per trial, the metric per step, the resolved config.
        (run,) = [r for r in runs if trial_id in r.info.run_name]
        history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "d2s_recall1")}
        assert history == pytest.approx(expected)
        assert run.data.metrics["params_m"] == pytest.approx(row["params_m"])
        assert run.data.params["cfg.train.epochs"] == "2" and float(run.data.params["cfg.train.lr"]) == lr
        # W&B (WandbLoggerCallback), offline: a run folder in the trial dir.
        (offline,) = glob.glob(str(trial_dir / "wandb" / "offline-run-*"))
        wb = wandb_records(Path(offline))
        assert wb["run"].run_group == "tracked"
        logged = [h["d2s_recall1"] for h in wb["history"] if "d2s_recall1" in h]
        assert logged == pytest.approx([expected[1], expected[2]])
        assert wb["config"]["run_config"]["train"]["lr"] == lr


@pytest.mark.slow
def test_logger_none_writes_no_event_files_but_keeps_tunes_results(ray_local, tmp_path, capsys):
    """Issue 29: Tune's automatic TensorBoard logger wrote event files under --logger none and
    printed a "To visualize your results with TensorBoard" line pointing into Ray's session
    folder. Now only --logger tensorboard writes events; result.json/progress.csv stay."""
    result = _tracked_search(tmp_path, "untracked", loggers="none", verbose=1)
    assert result.rows.height == 2
    experiment_dir = Path(result.experiment_path)
    assert list(experiment_dir.rglob("events.out.tfevents*")) == []
    trial_dirs = [p.parent for p in experiment_dir.glob("*/result.json")]
    assert len(trial_dirs) == 2 and all((d / "progress.csv").is_file() for d in trial_dirs)
    assert "To visualize your results with TensorBoard" not in capsys.readouterr().out


def _tracked_search(tmp_path, experiment: str, *, loggers: str, verbose: int):
    """Two random trials of two epochs each, one at a time, every trial to its end."""
    from trivial_search import search, trivial_space

    def objective(cfg, *, context) -> None:  # defined here: it travels to Ray's workers by value
        for epoch in range(1, cfg.train.epochs + 1):
            context.report({"epoch": epoch, "loss": 1.0 / epoch, "d2s_recall1": cfg.train.lr * 1000 * epoch})

    return search(
        trivial_space(2),
        experiment=experiment,
        num_samples=2,
        sampler="random",
        storage=str(tmp_path / "tune"),
        leaderboard=str(tmp_path / "lb"),
        max_concurrent=1,
        objective=objective,
        early_stopping=False,
        loggers=loggers,
        verbose=verbose,
    )

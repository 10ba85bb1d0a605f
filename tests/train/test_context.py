"""The in-process training context: checkpoints persisted as epoch_NNNN, metrics logged, resume point, stop rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from geodistill.train.context import (
    InProcessContext,
    TrainContext,
    default_device,
    drop_stale_state,
    latest_checkpoint_in,
    prune_checkpoints,
)


def _scratch(tmp_path: Path, name: str, *, meta: bool = True) -> Path:
    folder = tmp_path / "scratch" / name
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights of " + name.encode())
    if meta:
        (folder / "meta.json").write_text("{}")
    return folder


def test_rank0_persists_each_checkpoint_and_logs_every_report(tmp_path):
    ctx = InProcessContext(tmp_path / "run", rank=0, world_size=2, device="cpu")
    assert isinstance(ctx, TrainContext) and ctx.latest_checkpoint() is None
    ctx.report({"epoch": 1.0, "loss": 2.5}, _scratch(tmp_path, "a"))
    ctx.report({"epoch": 2.0, "loss": 1.5}, _scratch(tmp_path, "b"))
    ctx.report({"epoch": 2.0, "loss": 1.0})  # metrics only
    saved = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in saved.iterdir()) == ["epoch_0001", "epoch_0002"]  # no .tmp left
    assert (saved / "epoch_0002" / "model.safetensors").read_bytes() == b"weights of b"
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["loss"] for line in lines] == [2.5, 1.5, 1.0]
    assert ctx.history == [
        {"epoch": 1.0, "loss": 2.5},
        {"epoch": 2.0, "loss": 1.5},
        {"epoch": 2.0, "loss": 1.0},
    ]
    assert ctx.latest_checkpoint() == saved / "epoch_0002"
    # the same epoch reported again replaces its checkpoint whole
    ctx.report({"epoch": 2.0}, _scratch(tmp_path, "c"))
    assert (saved / "epoch_0002" / "model.safetensors").read_bytes() == b"weights of c"


def test_other_ranks_write_nothing(tmp_path):
    ctx = InProcessContext(tmp_path / "run", rank=1, world_size=2, device="cpu")
    ctx.report({"epoch": 1.0}, _scratch(tmp_path, "a"))
    assert not (tmp_path / "run").exists() and ctx.history == []


def test_latest_checkpoint_is_the_highest_complete_epoch(tmp_path):
    folder = tmp_path / "checkpoints"
    assert latest_checkpoint_in(folder) is None
    for name, complete in (
        ("epoch_0009", True),
        ("epoch_10000", True),
        ("epoch_20000", False),
        ("epoch_12", True),
    ):
        (folder / name).mkdir(parents=True)
        if complete:
            (folder / name / "meta.json").write_text("{}")
    (folder / ".epoch_30000.tmp").mkdir()
    # epoch_20000 has no meta.json (written last: an interrupted save), epoch_12 is not a 4-digit name
    assert latest_checkpoint_in(folder) == folder / "epoch_10000"


def _epochs(folder: Path, recall: dict[int, float | None]) -> None:
    for epoch, value in recall.items():
        path = folder / f"epoch_{epoch:04d}"
        path.mkdir(parents=True)
        (path / "model.safetensors").write_bytes(b"w")
        (path / "train_state.pt").write_bytes(b"s")
        metrics = {} if value is None else {"d2s_recall1": value}
        (path / "meta.json").write_text(json.dumps({"epoch": epoch, "metrics": metrics}))


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_prune_keeps_the_latest_whole_and_the_best_weights_only(tmp_path):
    folder = tmp_path / "checkpoints"
    _epochs(folder, {1: None, 2: 60.0, 3: 80.0, 4: 80.0, 5: 50.0})
    removed = prune_checkpoints(folder)
    assert sorted(p.name for p in removed) == ["epoch_0001", "epoch_0002", "epoch_0004"]
    assert _files(folder) == [  # equal recall: the earlier epoch
        "epoch_0003/meta.json",
        "epoch_0003/model.safetensors",
        "epoch_0005/meta.json",
        "epoch_0005/model.safetensors",
        "epoch_0005/train_state.pt",
    ]


def test_drop_stale_state_keeps_the_training_state_of_one_checkpoint(tmp_path):
    folder = tmp_path / "checkpoints"
    _epochs(folder, {1: 10.0, 2: 20.0, 3: 30.0})
    (folder / "epoch_0004").mkdir()  # incomplete (no meta.json): not a checkpoint, left alone
    (folder / "epoch_0004" / "train_state.pt").write_bytes(b"s")
    gone = drop_stale_state(folder)
    assert sorted(p.parent.name for p in gone) == ["epoch_0001", "epoch_0002"]
    assert [p for p in _files(folder) if p.endswith("train_state.pt")] == [
        "epoch_0003/train_state.pt",
        "epoch_0004/train_state.pt",
    ]
    drop_stale_state(folder, keep=folder / "epoch_0001")  # the one a Ray result names
    assert not (folder / "epoch_0003" / "train_state.pt").exists()
    assert drop_stale_state(tmp_path / "missing") == []


def test_stop_after_and_a_rule():
    assert not InProcessContext("r", device="cpu").should_stop(5, {})
    assert InProcessContext("r", device="cpu", stop_after=2).should_stop(2, {})
    assert not InProcessContext("r", device="cpu", stop_after=2).should_stop(1, {})
    rule = InProcessContext("r", device="cpu", rule=lambda epoch, m: m["ap"] < 10.0)
    assert rule.should_stop(1, {"ap": 5.0}) and not rule.should_stop(1, {"ap": 50.0})


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU fallback")
def test_default_device_without_a_gpu_and_identity_without_a_group():
    assert default_device() == torch.device("cpu")
    ctx = InProcessContext("r")
    assert (ctx.rank, ctx.world_size, ctx.device) == (0, 1, torch.device("cpu"))

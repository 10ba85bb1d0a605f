"""The in-process training context: checkpoints persisted as epoch_NNNN, metrics logged, resume point, stop rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from geodistill.train.context import InProcessContext, TrainContext, default_device, latest_checkpoint_in


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

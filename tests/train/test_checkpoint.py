"""Checkpoint save/load: round trip, run-dir resolution, refusal of pickled code and wrong shapes."""

from __future__ import annotations

import json
import os

import pytest
import torch

from geodistill.errors import CheckpointError
from geodistill.models import ModelConfig, extract_descriptors, model_from_config, save_model
from geodistill.train.checkpoint import FORMAT, load_checkpoint, load_train_state, save_checkpoint
from geodistill.train.config import RunConfig

torch.set_num_threads(1)  # 2 shared cores: keep each test to one


def tiny_run(**model) -> RunConfig:
    return RunConfig.from_dict(
        {"model": {"backbone": "convnext_atto", "embed_dim": 32, **model}, "data": {"img_size": 32}}
    )


def trained_like_model(cfg: RunConfig, classes: int = 5):
    torch.manual_seed(1)
    model = model_from_config(cfg.model, classes)
    with torch.no_grad():  # move BN running stats off their init so they must round-trip too
        model(torch.randn(4, 2, 3, 32, 32), torch.randn(4, 3, 32, 32))
    return model.eval()


def test_round_trip_gives_identical_descriptors_and_meta(tmp_path):
    cfg = tiny_run()
    model = trained_like_model(cfg)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 1, 3, 32, 32), torch.randn(4, 3, 32, 32)).drone_embedding.sum().backward()
    opt.step()
    out = save_checkpoint(
        tmp_path / "ck",
        model,
        config=cfg,
        metrics={"d2s_recall1": 50.0},
        epoch=3,
        optimizer_state={"optimizer": opt.state_dict()},
    )
    meta = json.loads((out / "meta.json").read_text())
    assert meta["format"] == FORMAT and meta["epoch"] == 3 and meta["num_classes"] == 5
    assert meta["metrics"] == {"d2s_recall1": 50.0}
    assert RunConfig.from_dict(meta["config"]) == cfg
    # meta.json is the last file written: its mtime is not older than the weights'
    assert os.stat(out / "meta.json").st_mtime_ns >= os.stat(out / "model.safetensors").st_mtime_ns

    loaded, lmeta = load_checkpoint(out)
    images = torch.randn(3, 3, 32, 32)
    video = torch.randn(2, 3, 3, 32, 32)
    assert torch.equal(extract_descriptors(model, images), extract_descriptors(loaded, images))
    assert torch.equal(extract_descriptors(model, video), extract_descriptors(loaded, video))
    assert lmeta["model_sha256"] == meta["model_sha256"]
    state = load_train_state(out)
    assert set(state["optimizer"]["state"]) == set(opt.state_dict()["state"])


def test_run_dir_resolves_to_latest_complete_epoch(tmp_path):
    cfg = tiny_run()
    model = trained_like_model(cfg)
    ckpts = tmp_path / "run" / "checkpoints"
    save_checkpoint(ckpts / "epoch_0001", model, config=cfg, metrics={}, epoch=1)
    save_checkpoint(ckpts / "epoch_0002", model, config=cfg, metrics={}, epoch=2)
    (ckpts / "epoch_0003").mkdir()  # incomplete: no meta.json yet
    _, meta = load_checkpoint(tmp_path / "run")
    assert meta["epoch"] == 2
    # a bare model.safetensors beside its meta.json loads as the directory
    _, meta = load_checkpoint(ckpts / "epoch_0001" / "model.safetensors")
    assert meta["epoch"] == 1


def test_bare_safetensors_from_save_model(tmp_path):
    cfg = tiny_run()
    model = trained_like_model(cfg, classes=7)
    save_model(model, tmp_path / "m.safetensors")
    loaded, meta = load_checkpoint(tmp_path / "m.safetensors")
    assert meta["num_classes"] == 7 and loaded.cfg.backbone == "convnext_atto"
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(extract_descriptors(model, x), extract_descriptors(loaded, x))


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_refuses_pickled_code_with_one_line(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "x": Evil()}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert "refusing to load" in str(err.value) and "\n" not in str(err.value)
    # the same inside a checkpoint dir's train_state.pt
    cfg = tiny_run()
    out = save_checkpoint(tmp_path / "ck", trained_like_model(cfg), config=cfg, metrics={}, epoch=1)
    torch.save({"x": Evil()}, out / "train_state.pt")
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_train_state(out)


def test_wrong_shape_names_the_first_mismatch(tmp_path):
    cfg = tiny_run()
    out = save_checkpoint(tmp_path / "ck", trained_like_model(cfg), config=cfg, metrics={}, epoch=1)
    meta = json.loads((out / "meta.json").read_text())
    meta["config"]["model"]["embed_dim"] = 48  # the model rebuilt from meta no longer fits
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(out)
    msg = str(err.value)
    assert "shape mismatch for 'heads.0.add_block.0.weight'" in msg and "(32, 320)" in msg and "\n" not in msg


def test_missing_path_and_tampered_weights(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint here"):
        load_checkpoint(tmp_path / "empty")
    cfg = tiny_run()
    model = trained_like_model(cfg)
    out = save_checkpoint(tmp_path / "ck", model, config=cfg, metrics={}, epoch=1)
    # same shapes, other weights, swapped in behind meta.json's back
    other = model_from_config(ModelConfig(backbone="convnext_atto", embed_dim=32, img_size=32), 5)
    save_checkpoint(tmp_path / "ck2", other, config=cfg, metrics={}, epoch=1)
    (out / "model.safetensors").write_bytes((tmp_path / "ck2" / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        load_checkpoint(out)


def test_scratch_checkpoints_of_a_killed_run_are_removed_at_the_next_start(tmp_path, monkeypatch):
    """Issue 29: a run killed between writing an epoch's scratch checkpoint and handing it over
    left it in the temp directory (130 MB each; they once filled it). The next run removes the
    ones whose process is gone and leaves a live process's alone."""
    import subprocess
    import sys
    import tempfile

    from geodistill.train.checkpoint import scratch_checkpoint_dir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f"geodistill-ckpt-{int(dead.stdout)}-abc"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "model.safetensors").write_bytes(b"x" * 1000)
    live = tmp_path / f"geodistill-ckpt-{os.getpid()}-old"
    live.mkdir()
    other = tmp_path / "geodistill-ckpt-notapid"  # not ours to judge
    other.mkdir()
    fresh = scratch_checkpoint_dir()
    assert fresh.parent == tmp_path and fresh.name.startswith(f"geodistill-ckpt-{os.getpid()}-")
    assert not stale.exists() and live.is_dir() and other.is_dir()


def test_a_search_trial_folder_resolves_to_its_latest_checkpoint(tmp_path):
    """Issue 29: `geodistill export <trial folder>` was refused though its help says "run dir"."""
    from geodistill.train.checkpoint import resolve_checkpoint

    cfg = RunConfig()
    model = model_from_config(ModelConfig(backbone="resnet18", img_size=32, embed_dim=16), 3)
    trial = tmp_path / "run_trial_abc_1_data_views=4"
    for n in (0, 2):
        save_checkpoint(trial / f"checkpoint_00000{n}", model, config=cfg, metrics={}, epoch=n + 1)
    (trial / "checkpoint_000003").mkdir()  # being written: no meta.json yet
    assert resolve_checkpoint(trial) == trial / "checkpoint_000002"


def test_a_linked_copy_shares_the_weights_on_disk_and_outlives_its_source(tmp_path, monkeypatch):
    import shutil

    from geodistill.train.checkpoint import copy_checkpoint

    cfg = tiny_run()
    source = save_checkpoint(
        tmp_path / "trial" / "checkpoint_000001",
        trained_like_model(cfg),
        config=cfg,
        metrics={"d2s_recall1": 50.0},
        epoch=1,
        optimizer_state={"step": torch.zeros(1000)},
    )
    weights = (source / "model.safetensors").stat()
    linked = copy_checkpoint(source, tmp_path / "student", with_state=False, link=True)
    assert sorted(p.name for p in linked.iterdir()) == ["meta.json", "model.safetensors"]
    assert (linked / "model.safetensors").stat().st_ino == weights.st_ino  # one copy of the bytes
    assert (linked / "model.safetensors").stat().st_nlink == 2
    copied = copy_checkpoint(source, tmp_path / "copy", with_state=False)  # the default copies
    assert (copied / "model.safetensors").stat().st_ino != weights.st_ino
    # Deleting the trial's folder (a later search pruning it) leaves the linked one loadable.
    shutil.rmtree(tmp_path / "trial")
    model, meta = load_checkpoint(linked)
    assert meta["epoch"] == 1 and (linked / "model.safetensors").stat().st_size == weights.st_size

    # Where the file system refuses hard links, it copies.
    def no_links(*_: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    again = copy_checkpoint(linked, tmp_path / "elsewhere", with_state=False, link=True)
    assert (again / "model.safetensors").stat().st_ino != (linked / "model.safetensors").stat().st_ino
    assert load_checkpoint(again)[1]["epoch"] == 1

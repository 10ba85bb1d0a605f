"""A small geodistill run folder to export, and an exported folder loaded back with plain timm."""

from __future__ import annotations

import json
from pathlib import Path

import timm
import torch

from geodistill.models import model_from_config
from geodistill.train.checkpoint import save_checkpoint
from geodistill.train.config import RunConfig


def export_run(tmp_path: Path, **model) -> Path:
    """A run folder (one epoch checkpoint, trained-looking BatchNorm statistics) of a 32 px model."""
    cfg = RunConfig.from_dict({"model": {"img_size": 32, "embed_dim": 24, **model}})
    torch.manual_seed(0)
    net = model_from_config(cfg.model, num_classes=5)
    bn = net.heads[0].add_block[1]
    with torch.no_grad():  # trained-looking BatchNorm statistics, so the folding is exercised
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.bias.uniform_(-0.1, 0.1)
    run = tmp_path / "run" / "checkpoints" / "epoch_0001"
    save_checkpoint(run, net, config=cfg, metrics={}, epoch=1)
    return tmp_path / "run"


def timm_load(folder: Path, *, local_dir: bool) -> torch.nn.Module:
    """The exported encoder via `local-dir:` or via its config.json and model.safetensors."""
    if local_dir:
        return timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    cfg = json.loads((folder / "config.json").read_text())
    return timm.create_model(
        cfg["architecture"],
        pretrained=True,
        pretrained_cfg_overlay=dict(cfg["pretrained_cfg"], file=str(folder / "model.safetensors")),
        **cfg["model_args"],
    ).eval()

"""`geodistill export`: a checkpoint's encoders in timm's layout, loaded back with plain timm."""

from __future__ import annotations

import json

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from geodistill.models import model_from_config
from geodistill.platform.cli import main
from geodistill.train.checkpoint import load_checkpoint, save_checkpoint
from geodistill.train.config import RunConfig


def _checkpoint(tmp_path, **model):
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


def _timm_load(folder, *, local_dir: bool):
    if local_dir:
        return timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    cfg = json.loads((folder / "config.json").read_text())
    return timm.create_model(
        cfg["architecture"],
        pretrained=True,
        pretrained_cfg_overlay=dict(cfg["pretrained_cfg"], file=str(folder / "model.safetensors")),
        **cfg["model_args"],
    ).eval()


@pytest.mark.parametrize(
    "model,local_dir",
    [
        ({"backbone": "resnet18", "pooling": "avg"}, False),
        ({"backbone": "vit_tiny", "pooling": "token"}, True),
    ],
)
def test_exported_encoder_gives_the_checkpoint_descriptors(tmp_path, capsys, model, local_dir):
    run = _checkpoint(tmp_path, **model)
    out = tmp_path / "export"
    assert main(["export", str(run), "--out", str(out), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["view"] for r in rows] == ["shared"] and rows[0]["descriptor_head"] is True
    cfg = json.loads((out / "config.json").read_text())
    assert (
        cfg["architecture"] == {"resnet18": "resnet18", "vit_tiny": "vit_tiny_patch16_224"}[model["backbone"]]
    )
    assert cfg["num_classes"] == 24 and cfg["pretrained_cfg"]["input_size"] == [3, 32, 32]
    geo, _ = load_checkpoint(run)
    assert list(cfg["pretrained_cfg"]["mean"]) == pytest.approx(geo.image_config.mean)
    exported = _timm_load(out, local_dir=local_dir)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            F.normalize(exported(x), dim=-1), geo.eval().encode(x), atol=2e-5, rtol=1e-4
        )


@pytest.mark.slow
def test_separate_encoders_and_a_headless_export(tmp_path, capsys):
    run = _checkpoint(tmp_path, backbone="convnext_atto", pooling="avg", share=False)
    out = tmp_path / "export"
    assert main(["export", str(run), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "drone: " in text and "satellite: " in text and "headless" in text
    geo, _ = load_checkpoint(run)
    geo.eval()
    x = torch.randn(2, 3, 32, 32)
    for view in ("drone", "satellite"):
        folder = out / view
        enc = _timm_load(folder, local_dir=False)
        head = load_file(str(folder / "descriptor_head.safetensors"))
        with torch.no_grad():
            # ConvNeXt's own head adds a norm after pooling, so the descriptor starts from the map.
            pooled = enc.forward_features(x).mean(dim=(2, 3))  # [B,C]
            torch.testing.assert_close(pooled, geo.encoder(view)(x)[0], atol=1e-5, rtol=1e-5)
            desc = F.normalize(pooled @ head["weight"].T + head["bias"], dim=-1)
            torch.testing.assert_close(desc, geo.encode(x, view=view), atol=2e-5, rtol=1e-4)
    assert main(["export", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "argument RUN_OR_CHECKPOINT: does not exist" in capsys.readouterr().err

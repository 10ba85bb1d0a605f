"""Exported encoders in timm's layout give the checkpoint's descriptors when loaded back with plain timm."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from export_run import export_run, timm_load

from geodistill.platform.cli import main
from geodistill.train.checkpoint import load_checkpoint


@pytest.mark.parametrize(
    "model,local_dir",
    [
        ({"backbone": "resnet18", "pooling": "avg"}, False),
        ({"backbone": "vit_tiny", "pooling": "token"}, True),
    ],
)
def test_exported_encoder_gives_the_checkpoint_descriptors(tmp_path, capsys, model, local_dir):
    run = export_run(tmp_path, **model)
    out = tmp_path / "export"
    assert main(["export", str(run), "--out", str(out), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["view"] for r in rows] == ["shared"] and rows[0]["descriptor_head"] is True
    cfg = json.loads((out / "config.json").read_text())
    assert (
        cfg["architecture"] == {"resnet18": "resnet18", "vit_tiny": "vit_tiny_patch16_224"}[model["backbone"]]
    )
    assert cfg["num_classes"] == 24 and cfg["pretrained_cfg"]["input_size"] == [3, 32, 32]
    # issue 29: randomly initialised weights carry no timm pretrained tag (it said `a1_in1k` etc.)
    assert "tag" not in cfg["pretrained_cfg"] and cfg["geodistill"]["initialised_from"] == "random"
    geo, _ = load_checkpoint(run)
    assert list(cfg["pretrained_cfg"]["mean"]) == pytest.approx(geo.image_config.mean)
    exported = timm_load(out, local_dir=local_dir)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            F.normalize(exported(x), dim=-1), geo.eval().encode(x), atol=2e-5, rtol=1e-4
        )

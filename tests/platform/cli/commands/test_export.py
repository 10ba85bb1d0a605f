"""`geodistill export`: separate and headless encoders in text mode, and its one-line errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from export_run import export_run, timm_load
from safetensors.torch import load_file

from geodistill.platform.cli import main
from geodistill.train.checkpoint import load_checkpoint


@pytest.mark.slow
def test_separate_encoders_and_a_headless_export(tmp_path, capsys):
    run = export_run(tmp_path, backbone="convnext_atto", pooling="avg", share=False)
    out = tmp_path / "export"
    assert main(["export", str(run), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "drone: " in text and "satellite: " in text and "headless" in text
    geo, _ = load_checkpoint(run)
    geo.eval()
    x = torch.randn(2, 3, 32, 32)
    for view in ("drone", "satellite"):
        folder = out / view
        enc = timm_load(folder, local_dir=False)
        head = load_file(str(folder / "descriptor_head.safetensors"))
        with torch.no_grad():
            # ConvNeXt's own head adds a norm after pooling, so the descriptor starts from the map.
            pooled = enc.forward_features(x).mean(dim=(2, 3))  # [B,C]
            torch.testing.assert_close(pooled, geo.encoder(view)(x)[0], atol=1e-5, rtol=1e-5)
            desc = F.normalize(pooled @ head["weight"].T + head["bias"], dim=-1)
            torch.testing.assert_close(desc, geo.encode(x, view=view), atol=2e-5, rtol=1e-4)
    assert main(["export", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "argument RUN_OR_CHECKPOINT: does not exist" in capsys.readouterr().err


def test_export_refuses_a_file_as_out_and_a_missing_checkpoint(tmp_path, capsys):
    run = export_run(tmp_path, backbone="resnet18", pooling="avg")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["export", str(run), "--out", str(blocker)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"geodistill export: error: argument --out: is not a directory; got '{blocker}' (see geodistill export --help)"
    )
    assert "\n" not in err and blocker.read_text() == "x"
    assert main(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("geodistill export: error: argument RUN_OR_CHECKPOINT: does not exist")
    assert not (tmp_path / "out").exists()
    assert main(["export", str(run)]) == 2
    assert "the following arguments are required: --out" in capsys.readouterr().err


def test_export_prints_one_line_per_encoder_and_how_to_load_it(tmp_path, capsys):
    run = export_run(tmp_path, backbone="resnet18", pooling="avg")
    out = tmp_path / "export"
    assert main(["export", str(run), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(
        f"shared: {out} (resnet18; F.normalize(model(x)) is the descriptor; checked to "
    )
    assert lines[1] == f"load with: timm.create_model('local-dir:{out}', pretrained=True)"
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()

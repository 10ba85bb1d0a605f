"""Exported encoders give the checkpoint's descriptors when loaded back with plain timm, and the
exported descriptor program gives the evaluated ones on real images with neither geodistill nor timm."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from export_run import export_run, timm_load

from geodistill.data import ViewDataset, open_index
from geodistill.eval.evaluation import descriptors
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
    assert rows[0]["program"] == str(out / "descriptor.pt2") and rows[0]["program_max_abs_diff"] < 1e-5
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


# Run by a child where importing geodistill or timm fails: the one file must be all a user needs.
_LOAD_WITH_TORCH_ONLY = """
import json, sys
sys.modules["geodistill"] = None
sys.modules["timm"] = None
import torch
batches = torch.load(sys.argv[2])
meta = {"geodistill.json": ""}
net = torch.export.load(sys.argv[1], extra_files=meta).module()
with torch.no_grad():
    out = {k: net(v) for k, v in batches.items()}
    out["one"] = net(batches["satellite"][:1])
torch.save(out, sys.argv[3])
print(meta["geodistill.json"])
"""


@pytest.mark.slow  # three torch.export traces and a child process that imports torch: about 40 s here
def test_descriptor_program_gives_the_evaluated_descriptors_of_real_images(tmp_path, synth_univ):
    """convnext_atto (timm's head cannot hold the descriptor), resnet18 and a ViT: descriptor.pt2,
    loaded with torch alone, equals what `evaluate` (the leaderboard's numbers) computes."""
    index = open_index(synth_univ)
    cases = {
        "convnext_atto": {"backbone": "convnext_atto", "pooling": "avg"},
        "resnet18": {"backbone": "resnet18", "pooling": "avg"},
        "vit_tiny": {"backbone": "vit_tiny", "pooling": "token"},
    }
    for name, model in cases.items():
        run = export_run(tmp_path / name, **model)
        out = tmp_path / name / "export"
        assert main(["export", str(run), "--out", str(out)]) == 0
        geo, _ = load_checkpoint(run)
        want, batches = {}, {}
        for subset in ("satellite", "drone"):
            items = index.select(subset=f"query_{subset}", split="test")[:5]
            want[subset], _ = descriptors(geo, items, views=1, img_size=32)  # evaluate's own path
            data = ViewDataset(items, views=1, img_size=32, image=geo.image_config)
            batches[subset] = torch.stack([data[i][0] for i in range(len(data))]).reshape(-1, 3, 32, 32)
        torch.save(batches, tmp_path / name / "batches.pt")
        child = subprocess.run(
            [sys.executable, "-c", _LOAD_WITH_TORCH_ONLY, str(out / "descriptor.pt2"),
             str(tmp_path / name / "batches.pt"), str(tmp_path / name / "got.pt")],
            capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert child.returncode == 0, child.stderr[-3000:]
        got = torch.load(tmp_path / name / "got.pt")
        for subset in ("satellite", "drone"):
            assert got[subset].shape == (5, 24)
            torch.testing.assert_close(
                got[subset], want[subset], atol=1e-5, rtol=1e-5, msg=f"{name} {subset}"
            )
        torch.testing.assert_close(got["one"], want["satellite"][:1], atol=1e-5, rtol=1e-5)  # a batch of 1
        meta = json.loads(child.stdout.strip().splitlines()[-1])
        assert meta["input_size"] == [3, 32, 32] and meta["mean"] == pytest.approx(geo.image_config.mean)
        assert meta["geodistill"]["backbone"] == model["backbone"]

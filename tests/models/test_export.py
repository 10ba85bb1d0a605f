"""Exported encoders in timm's layout give the checkpoint's descriptors when loaded back with plain timm."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from export_run import export_run, timm_load
from safetensors.torch import load_file

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
    geo, _ = load_checkpoint(run)
    assert list(cfg["pretrained_cfg"]["mean"]) == pytest.approx(geo.image_config.mean)
    exported = timm_load(out, local_dir=local_dir)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            F.normalize(exported(x), dim=-1), geo.eval().encode(x), atol=2e-5, rtol=1e-4
        )


# The child dies of SIGXFSZ (CPython ignores it; the limit makes the kernel kill it) at the first
# write past 64 KiB: in the middle of model.safetensors, as `kill -9` during the write would.
_KILLED_MID_WRITE = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
from geodistill.platform.cli import main
sys.exit(main(["export", sys.argv[1], "--out", sys.argv[2]]))
"""


@pytest.mark.slow  # a child process that imports torch: about 12 s here
def test_export_killed_mid_write_leaves_no_half_written_output(tmp_path):
    import signal
    import subprocess
    import sys

    run = export_run(tmp_path, backbone="resnet18", pooling="avg")
    out = tmp_path / "export"
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_MID_WRITE, str(run), str(out)],
        env={**__import__("os").environ, "PYTHONDONTWRITEBYTECODE": "1"}, capture_output=True, text=True,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGXFSZ, killed.stderr[-2000:]
    assert not out.exists(), sorted(out.rglob("*"))  # nothing half-written where the user looks
    assert len(list(tmp_path.glob(".export.tmp-*"))) == 1  # it died while writing its staging folder

    # The same export again: complete, and it clears what the killed one left.
    assert main(["export", str(run), "--out", str(out)]) == 0
    assert not list(tmp_path.glob(".export.tmp-*"))
    assert load_file(out / "model.safetensors")  # whole: safetensors reads its header and every tensor
    assert (out / "model.safetensors").stat().st_size > 65536  # so the killed one cannot have finished it
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]


def test_export_over_a_previous_export_replaces_each_file_whole(tmp_path):
    run = export_run(tmp_path, backbone="resnet18", pooling="avg")
    out = tmp_path / "export"
    out.mkdir()
    (out / "notes.txt").write_text("kept")
    assert main(["export", str(run), "--out", str(out)]) == 0
    assert main(["export", str(run), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "notes.txt"]
    assert not list(tmp_path.glob(".export.tmp-*"))


def test_export_onto_a_full_disk_is_one_line_and_keeps_the_previous_export_whole(tmp_path, capsys):
    """A real full disk: a tmpfs that holds one export and a half, so the second one runs out of space."""
    import subprocess

    run = export_run(tmp_path, backbone="resnet18", pooling="avg")
    probe = tmp_path / "probe"
    assert main(["export", str(run), "--out", str(probe)]) == 0
    size = sum(p.stat().st_size for p in probe.rglob("*") if p.is_file())
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size * 3 // 2}", "tmpfs", str(disk)],
                             capture_output=True, text=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        out = disk / "export"
        assert main(["export", str(run), "--out", str(out)]) == 0
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        capsys.readouterr()
        assert main(["export", str(run), "--out", str(out)]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and "No space left on device" in err[0], err
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # every file whole, as it was
        assert sorted(p.name for p in disk.iterdir()) == ["export"]  # the staging folder went too
    finally:
        subprocess.run(["umount", str(disk)], check=False)

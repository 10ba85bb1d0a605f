"""`geodistill export`: separate and headless encoders with their descriptor programs, and one-line errors."""

from __future__ import annotations

import pytest
import torch
from export_run import export_run, timm_load
from safetensors.torch import load_file

from geodistill.models import extract_descriptors
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
    descriptors = {}
    for view in ("drone", "satellite"):
        folder = out / view
        # issue 29: no separate head file; the descriptor is the one-file program beside the encoder
        assert sorted(p.name for p in folder.iterdir()) == [
            "config.json",
            "descriptor.pt2",
            "model.safetensors",
        ]
        enc = timm_load(folder, local_dir=False)
        with torch.no_grad():
            # ConvNeXt's own head adds a norm after pooling: the timm encoder is headless, and its
            # map is still the GeoModel's (so the timm folder is the trained backbone).
            pooled = enc.forward_features(x).mean(dim=(2, 3))  # [B,C]
            torch.testing.assert_close(pooled, geo.encoder(view)(x)[0], atol=1e-5, rtol=1e-5)
            descriptors[view] = torch.export.load(folder / "descriptor.pt2").module()(x)
        torch.testing.assert_close(
            descriptors[view], extract_descriptors(geo, x, view=view), atol=1e-5, rtol=1e-5
        )
    assert (descriptors["drone"] - descriptors["satellite"]).abs().max() > 1e-2  # each view its own encoder
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
    assert lines[1].startswith(
        f"shared: {out / 'descriptor.pt2'} (the evaluated descriptor, flip TTA included; checked to "
    )
    assert lines[2] == f"load with: timm.create_model('local-dir:{out}', pretrained=True)"
    assert lines[3] == f"descriptors: torch.export.load('{out / 'descriptor.pt2'}').module()(images)"
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "descriptor.pt2", "model.safetensors"]


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
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "descriptor.pt2", "model.safetensors"]


def test_export_over_a_previous_export_replaces_each_file_whole(tmp_path):
    run = export_run(tmp_path, backbone="resnet18", pooling="avg")
    out = tmp_path / "export"
    out.mkdir()
    (out / "notes.txt").write_text("kept")
    assert main(["export", str(run), "--out", str(out)]) == 0
    assert main(["export", str(run), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "descriptor.pt2",
        "model.safetensors",
        "notes.txt",
    ]
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

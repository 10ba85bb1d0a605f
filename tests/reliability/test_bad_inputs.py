"""Bad input from a user ends in one clear line on stderr and a non-zero exit, never a traceback.

Each case drives the real CLI entry point (``geodistill.platform.cli``) with what a user
would type; tests/reliability/README.md lists the cases and what happened.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def assert_one_line_error(result, *, code: int, command: str, contains: str) -> str:
    assert result.code == code, (result.code, result.stderr)
    lines = result.error_lines
    assert len(lines) == 1, f"expected one line, got:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    assert lines[0].startswith(f"geodistill {command}: error: "), lines[0]
    assert contains in lines[0], lines[0]
    return lines[0]


def test_dataset_path_that_does_not_exist(cli, tmp_path: Path):
    missing = tmp_path / "no_such_dataset"
    line = assert_one_line_error(cli("data", "check", missing), code=2, command="data", contains=str(missing))
    assert "does not exist" in line


def test_wrong_layout(cli, tmp_path: Path):
    (tmp_path / "photos" / "holiday").mkdir(parents=True)
    (tmp_path / "photos" / "holiday" / "a.jpeg").write_bytes(b"")
    assert_one_line_error(
        cli("data", "check", tmp_path / "photos"), code=2, command="data", contains="not a UniV"
    )


def test_corrupt_jpeg_is_named_by_data_check(cli, corrupt_jpeg_univ):
    root, bad = corrupt_jpeg_univ
    assert_one_line_error(cli("data", "check", root), code=2, command="data", contains=str(bad))


def test_truncated_mp4_is_named_by_data_check(cli, truncated_mp4_univ):
    root, bad = truncated_mp4_univ
    assert_one_line_error(cli("data", "check", root), code=2, command="data", contains=str(bad))


@pytest.mark.parametrize("name", ["vit_gigantic", "resnet"])
def test_unknown_backbone(cli, name: str):
    line = assert_one_line_error(cli("profile", "--backbone", name), code=2, command="profile", contains=name)
    assert "known: " in line and "vit_tiny" in line  # says what would have worked


def test_console_script_exit_code_and_single_line(tmp_path: Path):
    """The installed entry point, as a separate process: exit status 2 and exactly one stderr line."""
    missing = tmp_path / "nowhere"
    proc = subprocess.run(
        [sys.executable, "-m", "geodistill", "data", "check", str(missing)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"geodistill data: error: dataset path does not exist: {missing}"
    ]


# ---------------------------------------------------------------- configs a user edits


def test_malformed_search_space(cli, tmp_path: Path):
    bad = tmp_path / "space.yaml"
    bad.write_text(
        "objectives: {metric: d2s_recall1, efficiency: gflops}\n"
        "params:\n  distill.temperature: {type: loguniform, low: 0.0, high: 8.0}\n"
    )
    line = assert_one_line_error(
        cli("search", f"search_space={bad}"), code=2, command="search", contains="temperature"
    )
    assert "low" in line or "positive" in line or "> 0" in line


def test_search_space_that_is_not_yaml(cli, tmp_path: Path):
    bad = tmp_path / "space.yaml"
    bad.write_text("params: [unclosed\n")
    assert_one_line_error(
        cli("search", f"search_space={bad}"), code=2, command="search", contains="space.yaml"
    )


def test_malformed_cluster_yaml(cli, tmp_path: Path):
    bad = tmp_path / "cluster.yaml"
    bad.write_text("cluster_name: x\nprovider: {type: aws, region: us-west-2\n")  # unclosed flow mapping
    result = cli("cluster", "validate", bad)
    assert result.code == 2 and "Traceback" not in result.stderr
    assert len(result.error_lines) == 1 and str(bad) in result.error_lines[0], result.stderr


# ---------------------------------------------------------------- checkpoints


class CodeOnLoad:
    """A pickle that would create ``marker`` if it were ever unpickled with code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_pickled_code_is_refused_and_never_run(cli, tmp_path: Path, synth_univ: Path):
    import torch

    marker = tmp_path / "code_ran"
    evil = tmp_path / "net_059.pth"
    torch.save({"logit_scale": torch.zeros(()), "payload": CodeOnLoad(marker)}, evil)
    for flag in ("--checkpoint", "--video2bev"):
        line = assert_one_line_error(
            cli("eval", flag, evil, "--data", synth_univ), code=2, command="eval", contains=str(evil)
        )
        assert "refusing to load" in line
    assert not marker.exists(), "the checkpoint's pickled code was executed"


def test_checkpoint_with_wrong_shapes_names_the_first_mismatch(cli, tmp_path: Path, synth_univ: Path):
    import json

    import torch

    from geodistill.models import model_from_config
    from geodistill.train.checkpoint import save_checkpoint
    from geodistill.train.config import RunConfig

    cfg = RunConfig.from_dict({"model": {"backbone": "resnet18", "embed_dim": 32}, "data": {"img_size": 32}})
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "ck", model_from_config(cfg.model, 6), config=cfg, metrics={}, epoch=1)
    meta = json.loads((ckpt / "meta.json").read_text())
    meta["config"]["model"]["embed_dim"] = 64  # what the file says no longer matches the weights
    (ckpt / "meta.json").write_text(json.dumps(meta))
    line = assert_one_line_error(
        cli("eval", "--checkpoint", ckpt, "--data", synth_univ), code=2, command="eval", contains="shape"
    )
    assert "heads.0" in line  # names the first tensor that does not fit


def test_baseline_naming_a_missing_checkpoint(cli, tmp_path: Path, synth_univ: Path):
    baseline = tmp_path / "baseline.yaml"
    baseline.write_text(
        "name: missing\n"
        f"dataset: {{name: synth, root: {synth_univ}, elevation: 45, fps: 2, views: 1, img_size: 32}}\n"
        "checkpoints:\n"
        "  - {name: student, kind: geodistill, path: runs/never_trained, sha256: null}\n"
    )
    line = assert_one_line_error(
        cli("regress", "--baseline", baseline), code=2, command="regress", contains="never_trained"
    )
    assert "not found" in line or "does not exist" in line or "missing" in line


# ---------------------------------------------------------------- the leaderboard directory


@pytest.mark.parametrize("command", ["search", "train", "demo"])
def test_unwritable_leaderboard_fails_before_any_compute(cli, tmp_path: Path, command: str):
    """A root under a regular file is unwritable even for root: one line, exit 2, nothing trained."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    root = blocker / "leaderboard"
    argv = {
        "search": ("search", "--smoke-test", "--leaderboard", root, "--storage", tmp_path / "s"),
        "train": ("train", "--leaderboard", root, "--smoke-test", f"output_dir={tmp_path / 'runs'}"),
        "demo": ("demo", "--smoke-test", "--out", blocker / "demo"),
    }[command]
    line = assert_one_line_error(cli(*argv), code=2, command=command, contains="cannot")
    assert "a_file" in line
    assert not (tmp_path / "runs").exists() and not (tmp_path / "s").exists()  # nothing started

"""Bad input from a user ends in one clear line on stderr and a non-zero exit, never a traceback.

Each case drives the real CLI entry point (``geodistill.platform.cli.main``) with what a user
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
    assert_one_line_error(cli("data", "check", tmp_path / "photos"), code=2, command="data", contains="not a UniV")


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
    assert proc.stderr.strip().splitlines() == [f"geodistill data: error: dataset path does not exist: {missing}"]

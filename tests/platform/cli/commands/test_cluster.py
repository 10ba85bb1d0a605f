"""`geodistill cluster validate|rehearse`: one line per bad file and exit 2, every shipped file ok, flag bounds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from geodistill.platform.cli import main

REPO = Path(__file__).resolve().parents[4]
SHIPPED = sorted((REPO / "clusters").rglob("*.yaml"))


def test_cli_reports_each_bad_file_in_one_line_and_exits_2(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("cluster_name: x\nprovider: {type: aws\n")
    not_a_map = tmp_path / "list.yaml"
    not_a_map.write_text("- a\n- b\n")
    rc = main(["cluster", "validate", str(REPO / "clusters/aws.yaml"), str(broken), str(not_a_map)])
    out, err = capsys.readouterr()
    assert rc == 2
    assert "ok  " in out and "aws.yaml" in out
    lines = err.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"geodistill cluster: error: {broken}: malformed YAML (line ")
    assert lines[1] == f"geodistill cluster: error: {not_a_map}: expected a YAML mapping at the top level"


def test_console_script_validates_every_shipped_file():
    proc = subprocess.run(
        [sys.executable, "-m", "geodistill", "cluster", "validate", *map(str, SHIPPED)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("ok  ") == len(SHIPPED)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # the bound is the node names' (node_a .. node_z), declared once in platform/clusters/rehearse.py
        (
            ["cluster", "rehearse", "--workers", "27"],
            "geodistill cluster rehearse: error: argument --workers: must be >= 1 and <= 26; got 27",
        ),
        (
            ["cluster", "rehearse", "--cpus-per-node", "0"],
            "geodistill cluster rehearse: error: argument --cpus-per-node: must be >= 1 and <= 64; got 0",
        ),
        (["cluster"], "geodistill cluster: error: the following arguments are required: ACTION"),
        (
            ["cluster", "validate"],
            "geodistill cluster validate: error: the following arguments are required: FILE",
        ),
    ],
)
def test_user_errors_exit_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message), err
    assert len(err.splitlines()) == 1

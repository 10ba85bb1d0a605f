"""Fixtures of the command tests: a smoke teacher trained through the CLI (train, eval) and a small leaderboard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from geodistill.leaderboard import Leaderboard, make_row


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    """One smoke teacher trained through the CLI (JSON output), shared by the eval tests."""
    out = tmp_path_factory.mktemp("cli_runs")
    capture = subprocess.run(
        [
            sys.executable,
            "-m",
            "geodistill",
            "train",
            "--smoke-test",
            "--json",
            f"output_dir={out}",
            "run_name=cli",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "GEODISTILL_LEADERBOARD": str(out / "leaderboard")},
    )
    assert capture.returncode == 0, capture.stderr[-2000:]
    return out, json.loads(capture.stdout)


@pytest.fixture()
def root(tmp_path, monkeypatch) -> Path:
    """Five rows in experiments a (t1 written twice, t3 failed) and b, in five files; the default root."""
    lb = Leaderboard(tmp_path / "lb")
    rows = [
        make_row(
            experiment="a", trial_id="t1", stage="student", backbone="resnet18", d2s_recall1=40.0, gflops=2.0
        ),
        make_row(
            experiment="a", trial_id="t2", stage="student", backbone="vit_tiny", d2s_recall1=60.0, gflops=4.0
        ),
        make_row(experiment="a", trial_id="t3", stage="student", status="failed", error="worker died"),
        make_row(
            experiment="b", trial_id="t1", stage="teacher", backbone="vit_small", d2s_recall1=70.0, gflops=9.0
        ),
    ]
    for r in rows:
        lb.write([r])
    lb.write(
        [
            make_row(
                experiment="a",
                trial_id="t1",
                stage="student",
                backbone="resnet18",
                d2s_recall1=45.0,
                gflops=2.0,
            )
        ]
    )
    monkeypatch.setenv("GEODISTILL_LEADERBOARD", str(tmp_path / "lb"))
    return tmp_path / "lb"

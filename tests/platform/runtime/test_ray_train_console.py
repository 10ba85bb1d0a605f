"""What `geodistill train` on Ray Train prints: each epoch line once, no per-worker report lines.

Ray Train 2.60 patches ``print`` in its workers to log every line as well as print it, so each
printed line reached the console twice, and it logs every rank's every report at INFO
("Reporting training result N: TrainingReport(...)"). ``train_driver`` turns both off.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow  # a 2-worker Ray Train run through the CLI on its own Ray head: ~50 s
def test_a_ray_train_run_prints_each_epoch_line_once_and_no_report_lines(synth_univ: Path, tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_TRAIN_ENABLE_PRINT_PATCH"}
    proc = subprocess.run(
        [
            sys.executable, "-m", "geodistill", "train", "preset=smoke", "scaling=cpu2",
            f"data.root={synth_univ}", f"output_dir={tmp_path}", "train.epochs=2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    for epoch in (1, 2):
        lines = [line for line in output.splitlines() if f"epoch {epoch}/2 loss " in line]
        assert len(lines) == 1, lines  # rank 0's line, once
    assert "Reporting training result" not in output
    assert "done: 2 epoch(s)" in proc.stdout

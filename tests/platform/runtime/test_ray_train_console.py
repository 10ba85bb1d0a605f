"""What `geodistill train` on Ray Train prints and keeps: each epoch line once, no per-worker
report lines, and the checkpoints ``train.keep_checkpoints=last_best`` names, no more.

Ray Train 2.60 patches ``print`` in its workers to log every line as well as print it, so each
printed line reached the console twice; it logs every rank's every report at INFO ("Reporting
training result N: TrainingReport(...)") and every checkpoint it persists ("Checkpoint
successfully created at: ..."), and starting its PreemptionWatcher logs a C++ error line.
``train_driver`` and ``train_worker`` turn these off. A Ray Train run used to keep every epoch's
checkpoint with its training state; it now keeps the latest (whole) and the best (weights only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from geodistill.leaderboard import Leaderboard
from geodistill.train.checkpoint import load_checkpoint


@pytest.mark.slow  # a 2-worker Ray Train run through the CLI on its own Ray head: ~50 s
def test_a_ray_train_run_prints_each_epoch_line_once_and_keeps_the_latest_and_best_checkpoints(
    synth_univ: Path, tmp_path: Path
):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_TRAIN_ENABLE_")}
    proc = subprocess.run(
        [
            sys.executable, "-m", "geodistill", "train", "preset=smoke", "scaling=cpu2",
            f"data.root={synth_univ}", f"output_dir={tmp_path}", "train.epochs=3",
            "train.eval_every=2",  # epoch 1 is not evaluated: Ray must still rank its checkpoint
            "run_name=ray3", "--leaderboard", str(tmp_path / "lb"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    for epoch in (1, 2, 3):
        lines = [line for line in output.splitlines() if f"epoch {epoch}/3 loss " in line]
        assert len(lines) == 1, lines  # rank 0's line, once
    for noise in ("Reporting training result", "Checkpoint successfully created", "PreemptionWatcher"):
        assert noise not in output
    assert "Result dict has no key" not in output  # every checkpoint carried Ray's score
    assert "done: 3 epoch(s)" in proc.stdout

    # Kept: the latest (whole: resuming needs its training state) and the best evaluated epoch
    # (weights only); on equal recall the earlier epoch, as an in-process run keeps it.
    run_dir = tmp_path / "ray3"
    recall = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        metrics = json.loads(line)
        recall[int(metrics["epoch"])] = metrics.get("d2s_recall1")
    assert recall[1] is None and None not in (recall[2], recall[3])
    best = 2 if recall[2] >= recall[3] else 3
    ckpts = run_dir / "checkpoints"
    kept = sorted(p.name for p in ckpts.iterdir() if p.name.startswith("epoch_"))
    assert kept == sorted({f"epoch_{best:04d}", "epoch_0003"})
    assert (ckpts / "epoch_0003" / "train_state.pt").is_file()
    assert not (ckpts / f"epoch_{best:04d}" / "train_state.pt").exists() or best == 3
    load_checkpoint(ckpts / f"epoch_{best:04d}")

    row = Leaderboard(tmp_path / "lb").read().row(0, named=True)
    assert row["checkpoint_uri"] == str(ckpts / "epoch_0003")  # the row names the latest
    model, meta = load_checkpoint(row["checkpoint_uri"])
    assert meta["epoch"] == 3 and meta["config"]["run_name"] == "ray3"

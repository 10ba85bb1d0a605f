"""`geodistill demo --smoke-test`: the main job end to end, as CI runs it (a real local Ray head)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from geodistill.leaderboard import Leaderboard
from geodistill.leaderboard.pareto import pareto_rows


@pytest.mark.slow  # end to end: the second tier
def test_demo_smoke_test_end_to_end(tmp_path: Path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "geodistill", "demo", "--smoke-test", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    text = proc.stdout
    for step in range(1, 6):
        assert f"[{step}/5]" in text  # progress through every step
    assert "Pareto front" in text and "more views, same teacher" in text

    rows = Leaderboard(out / "leaderboard").read("demo")
    stages = sorted(rows["stage"].to_list())
    # The trained teacher (1 view) and the same checkpoint re-evaluated at 4 views: the report's reference curve.
    assert stages == ["student"] * 3 + ["teacher"] * 2, stages
    teachers = rows.filter(rows["stage"] == "teacher").sort("views")
    assert teachers["views"].to_list() == [1, 4] and teachers["trial_id"].to_list() == [
        "teacher",
        "teacher_4views",
    ]
    assert (teachers["status"] == "ok").all() and teachers["d2s_recall1"].is_not_null().all()
    assert teachers["gflops"][1] > 3.5 * teachers["gflops"][0] > 0  # four frames cost about four times one
    assert teachers["checkpoint_uri"].n_unique() == 1
    students = rows.filter(rows["stage"] == "student")
    assert set(students["status"].to_list()) <= {"ok", "stopped"}
    assert all(g > 0 for g in students["gflops"].to_list())

    html = (out / "report" / "report.html").read_text()
    assert "<figure id='pareto'" in html and "<img" not in html  # every plot inline SVG, offline
    assert "teacher" in html and "4 views" in html  # the teacher's reference points are drawn
    assert (out / "report" / "report.md").is_file()
    # The closing summary points at what it wrote.
    assert str(out / "report" / "report.html") in text
    # Issue 29: the distillation story, the best student at a fixed path, and the disk it takes.
    assert "distillation           best student " in text and "of its GFLOPs per query" in text
    assert "knobs that mattered    " in text
    assert (out / "student" / "model.safetensors").is_file() and not (
        out / "student" / "train_state.pt"
    ).exists()
    assert list((out / "search").rglob("train_state.pt")) == []  # ended trials keep weights only
    # Only the front's trials keep a checkpoint (--keep-checkpoints front); the others' rows say none.
    front = set(pareto_rows(students)["trial_id"])
    kept = {r["trial_id"] for r in students.iter_rows(named=True) if r["checkpoint_uri"] is not None}
    assert kept == front and all(Path(uri).is_dir() for uri in students["checkpoint_uri"].drop_nulls())
    assert len(list((out / "search").rglob("checkpoint_*"))) == len(front)
    # demo_out/student is the best front trial's checkpoint, hard-linked: its weights are on disk once.
    student = (out / "student" / "model.safetensors").stat()
    trial_weights = {p.stat().st_ino for p in (out / "search").rglob("checkpoint_*/model.safetensors")}
    assert student.st_ino in trial_weights and student.st_nlink == 2
    # Each file counted once, as du counts: 167 MB measured (181 MB with a copied student).
    size = sum({p.stat().st_ino: p.stat().st_size for p in out.rglob("*") if p.is_file()}.values())
    assert size < 190 * 2**20, f"demo_out takes {size / 2**20:.0f} MiB"

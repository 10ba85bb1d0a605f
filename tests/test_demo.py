"""`geodistill demo --smoke-test`: the main job end to end, as CI runs it (a real local Ray head)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from geodistill.leaderboard import Leaderboard


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
    assert stages == ["student"] * 3 + ["teacher"], stages
    teacher = rows.filter(rows["stage"] == "teacher").row(0, named=True)
    assert teacher["status"] == "ok" and teacher["d2s_recall1"] is not None and teacher["gflops"] > 0
    students = rows.filter(rows["stage"] == "student")
    assert set(students["status"].to_list()) <= {"ok", "stopped"}
    assert all(g > 0 for g in students["gflops"].to_list())

    html = (out / "report" / "report.html").read_text()
    assert "data:image/png;base64," in html
    assert (out / "report" / "report.md").is_file()
    # The closing summary points at what it wrote.
    assert str(out / "report" / "report.html") in text

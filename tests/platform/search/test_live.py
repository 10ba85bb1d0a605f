"""The live view of a search: a table of trials on the console, worker output in trial files.

The rendering is checked on a hand-fed ``LiveTable``; the whole path (Ray started by the search
itself, worker output off the console) in a fresh driver process, whose stdout and stderr are
exactly what a user would see.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from geodistill.platform.search.live import LiveTable

REPO = Path(__file__).resolve().parents[3]


def _trial(trial_id, status="RUNNING", last_result=None):
    return SimpleNamespace(trial_id=trial_id, status=status, last_result=last_result or {})


def test_the_table_shows_status_epoch_metric_gflops_elapsed_and_budget_left():
    out = io.StringIO()
    table = LiveTable(metric="d2s_recall1", num_samples=3, time_budget_s=100, stream=out, tty=False)
    table.setup()
    a, b = _trial("a_00000"), _trial("b_00001")
    table.on_trial_start(0, [], a)
    table.on_trial_result(
        0, [], a, {"epoch": 2, "epochs_planned": 4, "d2s_recall1": 12.345, "gflops": 0.0123}
    )
    table.on_trial_start(0, [], b)
    b.last_result = {"epoch": 4, "epochs_planned": 4, "d2s_recall1": 40.0, "gflops": 0.5, "compute": 2.0}
    table.on_trial_complete(0, [], b)  # a trial ending prints a snapshot at once
    text = out.getvalue()
    lines = text.strip().splitlines()
    assert lines[0].startswith("[search] trials 1/3 done, 1 running, 2 left; elapsed ")
    assert "time budget left" in lines[0]
    assert lines[0].endswith("; compute 2 GFLOPs x epochs")  # 4 epochs x 0.5 GFLOPs spent so far
    assert lines[1].split() == ["trial", "status", "epoch", "d2s_recall1", "GFLOPs", "elapsed"]
    assert lines[2].split()[:5] == ["a_00000", "RUNNING", "2/4", "12.35", "0.0123"]
    assert lines[3].split()[:5] == ["b_00001", "TERMINATED", "4/4", "40.00", "0.5000"]
    # Over-budget trials report a placeholder metric: the table shows none.
    c = _trial("c_00002", last_result={"epoch": 0, "d2s_recall1": 0.0, "over_budget": 1, "gflops": 9.0})
    table.on_trial_complete(0, [], c)
    assert table.rows()[-1][:5] == ("c_00002", "TERMINATED", "0", "-", "9.0000")


SCRIPT = """
import sys
from geodistill.platform.compose import compose_run_config
from geodistill.platform.search import SearchOptions, run_search
from geodistill.platform.search.space import parse_space

def objective(cfg, *, context):
    for epoch in range(1, cfg.train.epochs + 1):
        print(f"epoch {epoch}/{cfg.train.epochs} WORKER-LINE", file=sys.stderr, flush=True)
        print(f"WORKER-STDOUT {epoch}", flush=True)
        context.report({"epoch": epoch, "d2s_recall1": 10.0 * epoch})

space = parse_space(
    {"fixed": {"stage": "teacher", "train.epochs": 2},
     "params": {"train.lr": {"type": "uniform", "low": 0.001, "high": 0.01}}},
    name="trivial",
)
options = SearchOptions(experiment="live", num_samples=2, sampler="random", storage=sys.argv[1],
                        leaderboard=sys.argv[2], max_concurrent=1, objective=objective,
                        early_stopping=False, verbose=1)
run_search(space, compose_run_config([]), options)
"""


@pytest.mark.slow
def test_a_search_shows_the_table_and_keeps_worker_lines_in_trial_files(tmp_path):
    from geodistill.leaderboard import Leaderboard

    script = tmp_path / "search.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "GEODISTILL_RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "tune"), str(tmp_path / "lb")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = proc.stdout + proc.stderr
    assert "WORKER-LINE" not in console and "WORKER-STDOUT" not in console
    rows = Leaderboard(tmp_path / "lb").read("live")
    assert rows.height == 2
    assert proc.stdout.count("[search] trials 2/2 done") == 1  # issue 29: a pipe printed the end twice
    final = proc.stdout[proc.stdout.rindex("[search] trials 2/2 done") :].splitlines()
    assert final[0].startswith("[search] trials 2/2 done, 0 running, 0 left")
    shown = {line.split()[0]: line.split() for line in final[2:4]}
    for row in rows.iter_rows(named=True):
        cells = shown[row["trial_id"]]
        assert cells[1:5] == ["TERMINATED", "2/2", "20.00", f"{row['gflops']:.4f}"]
        # The trial's own output is in its folder.
        (trial_dir,) = [p for p in (tmp_path / "tune" / "live").iterdir() if row["trial_id"] in p.name]
        assert "epoch 2/2 WORKER-LINE" in (trial_dir / "stderr").read_text()
        assert "WORKER-STDOUT 1" in (trial_dir / "stdout").read_text()

"""`geodistill regress`: its smoke test, the --against front comparison as JSON, and its one-line errors.

The baseline runner behind `regress --baseline` is tested in tests/platform/test_baseline.py.
"""

from __future__ import annotations

import json

import pytest

from geodistill.leaderboard import Leaderboard, make_row
from geodistill.platform.cli import main


def test_regress_smoke_test_passes_its_own_gate(tmp_path, capsys):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["regress", "--smoke-test", "--leaderboard", str(tmp_path / "lb")]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "REGRESSED" not in out and out.count(" ok\n") == 6
    assert Leaderboard(tmp_path / "lb").keys() == {"regress-smoke/smoke/baseline"}


def test_against_prints_the_checks_as_json_and_gates_on_them(tmp_path, capsys):
    board = Leaderboard(tmp_path)
    for experiment, points in (("ref", [(50.0, 1.0), (70.0, 4.0)]), ("new", [(49.0, 1.0), (70.5, 4.0)])):
        board.write(
            [
                make_row(experiment=experiment, trial_id=str(i), stage="student", d2s_recall1=r, gflops=g)
                for i, (r, g) in enumerate(points)
            ]
        )
    argv = ["regress", "--leaderboard", str(tmp_path), "--experiment", "new", "--against", "ref", "--json"]
    assert main(argv) == 1  # at 1 GFLOPs the front falls 1 point, more than the default 0.3
    checks = json.loads(capsys.readouterr().out)
    assert [c["ok"] for c in checks] == [False, True, True]  # 1 GFLOPs, 4 GFLOPs, hypervolume
    assert (checks[0]["expected"], checks[0]["measured"]) == ("50.0000", "49.0000")
    # Hypervolume to (0, 2 x 4 GFLOPs): ref 50 * 3 + 70 * 4 = 430, new 49 * 3 + 70.5 * 4 = 429 (slack 0.3 x 8).
    assert (checks[2]["expected"], checks[2]["measured"], checks[2]["tolerance"]) == ("430", "429", "-2.4")
    assert main([*argv, "--tol", "1.0"]) == 0
    assert [c["ok"] for c in json.loads(capsys.readouterr().out)] == [True, True, True]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["regress"],
            "geodistill regress: error: give exactly one of --baseline NAME|FILE.yaml or --against EXPERIMENT",
        ),
        (
            ["regress", "--against", "ref"],
            "geodistill regress: error: --against needs --experiment (the experiment to check)",
        ),
        (
            ["regress", "--against", "a", "--tol", "-1"],
            "geodistill regress: error: argument --tol: must be >= 0",
        ),
        (
            ["regress", "--baseline", "nope.yaml"],
            "geodistill regress: error: baseline file not found: nope.yaml",
        ),
    ],
)
def test_user_errors_exit_2_with_one_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err, err

"""The regression gate's comparisons: one front against another, point by point and by hypervolume.

Baseline files and the runner that measures checkpoints against them: tests/platform/test_baseline.py.
"""

from __future__ import annotations

from geodistill.leaderboard import Leaderboard, make_row
from geodistill.leaderboard.regress import compare_fronts
from geodistill.platform.cli import main


def _front_rows(experiment: str, points: list[tuple[float, float]]) -> list[dict]:
    return [
        make_row(experiment=experiment, trial_id=str(i), stage="student", d2s_recall1=r, gflops=g)
        for i, (r, g) in enumerate(points)
    ]


def test_front_against_front(tmp_path, capsys):
    board = Leaderboard(tmp_path)
    board.write(_front_rows("ref", [(50.0, 1.0), (60.0, 2.0), (70.0, 4.0), (40.0, 3.0)]))
    board.write(_front_rows("better", [(55.0, 1.0), (60.0, 1.5), (72.0, 4.0)]))
    board.write(_front_rows("worse", [(55.0, 1.0), (62.0, 2.0), (65.0, 4.0)]))  # falls at 4 GFLOPs
    frame = board.read()
    checks = compare_fronts(frame, "better", "ref")
    assert [c.ok for c in checks] == [True, True, True, True]
    checks = compare_fronts(frame, "worse", "ref")
    assert [c.ok for c in checks] == [True, True, False, False]
    assert (checks[2].expected, checks[2].measured) == ("70.0000", "65.0000")
    # Hypervolume under (R@1 0, 8 GFLOPs): ref = 1*50 + 2*60 + 4*70 = 450, worse = 1*55 + 2*62 + 4*65 = 439.
    assert checks[3].expected == "450" and checks[3].measured == "439"
    assert (
        main(["regress", "--leaderboard", str(tmp_path), "--experiment", "better", "--against", "ref"]) == 0
    )
    assert main(["regress", "--leaderboard", str(tmp_path), "--experiment", "worse", "--against", "ref"]) == 1
    assert "REGRESSION: 2 of 4 checks regressed" in capsys.readouterr().err

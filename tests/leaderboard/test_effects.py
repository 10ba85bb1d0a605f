"""leaderboard.effects: knob effect sizes against the trial-to-trial spread, the student's share."""

from __future__ import annotations

import polars as pl
import pytest

from geodistill.leaderboard.effects import format_effects, format_share, knob_effects, student_share


def test_a_knob_that_moves_the_metric_beats_one_that_only_adds_noise():
    # views moves Recall@1 by 20 points; temperature (continuous, split at its median) does not.
    frame = pl.DataFrame(
        {
            "backbone": ["a"] * 8,
            "views": [1, 1, 1, 1, 4, 4, 4, 4],
            "temperature": [1.0, 2.0, 4.0, 8.0, 1.0, 2.0, 4.0, 8.0],
            "d2s_recall1": [30.0, 32.0, 31.0, 29.0, 50.0, 52.0, 49.0, 51.0],
            "gflops": [1.0] * 4 + [4.0] * 4,
        }
    )
    effects = {e.knob: e for e in knob_effects(frame)}
    assert set(effects) == {"views", "temperature"}  # backbone took one value
    assert effects["views"].effect == pytest.approx(50.5 - 30.5) and effects["views"].visible
    assert effects["temperature"].effect < effects["temperature"].noise and not effects["temperature"].visible
    text = format_effects(list(effects.values()))
    assert text.startswith("views 20.0 points; within the trial-to-trial spread (") and "temperature" in text


def test_the_best_student_as_a_share_of_the_teacher():
    students = pl.DataFrame(
        {"backbone": ["x", "y"], "views": [4, 1], "d2s_recall1": [40.0, 30.0], "gflops": [0.5, 0.1]}
    )
    share = student_share(students, teacher_metric=50.0, teacher_gflops=2.0)
    assert (share["backbone"], share["metric_share"], share["gflops_share"]) == ("x", 0.8, 0.25)
    assert format_share(share) == (
        "best student x at 4 view(s): 80% of the teacher's Recall@1 (40.0%) at 25% of its GFLOPs per query"
    )
    assert student_share(students.head(0), 50.0, 2.0) is None

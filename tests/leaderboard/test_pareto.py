"""Pareto front and hypervolume: hand-computed cases, an exact oracle, and Optuna's own front."""

from __future__ import annotations

import itertools

import numpy as np
import optuna
import pytest

from geodistill.leaderboard.pareto import hypervolume, pareto_mask
from oracles import pareto_mask_naive  # benchmarks/oracles.py

# (recall@1 up, GFLOPs down)
POINTS = np.array(
    [
        [80.0, 10.0],  # A front
        [70.0, 5.0],  # B front
        [60.0, 5.0],  # C dominated by B (same cost, lower recall)
        [85.0, 20.0],  # D front
        [80.0, 12.0],  # E dominated by A
        [80.0, 10.0],  # F equal to A: equal points do not dominate each other
        [np.nan, 1.0],  # G unmeasured: never on the front
        [70.0, 30.0],  # H dominated by A, B, D
    ]
)
MAXIMIZE = [True, False]


def test_two_objectives_hand_computed():
    expected = [True, True, False, True, False, True, False, False]
    assert pareto_mask(POINTS, MAXIMIZE).tolist() == expected
    assert pareto_mask_naive(POINTS, MAXIMIZE).tolist() == expected
    # The staircase under (R@1 0, 30 GFLOPs): g in [5,10) reaches 70, [10,20) 80, [20,30] 85.
    assert hypervolume(POINTS, [0.0, 30.0], MAXIMIZE) == pytest.approx(5 * 70 + 10 * 80 + 10 * 85)
    # Points not strictly inside the reference box add nothing.
    assert hypervolume(POINTS, [0.0, 10.0], MAXIMIZE) == pytest.approx(5 * 70)
    assert hypervolume(POINTS[:0], [0.0, 30.0], MAXIMIZE) == 0.0


def test_one_and_three_objectives_hand_computed():
    assert pareto_mask([[3.0], [1.0], [1.0], [2.0]], [False]).tolist() == [False, True, True, False]
    pts = np.array([[1, 2, 3], [2, 1, 3], [3, 3, 1], [3, 3, 3], [1, 2, 3.5]], dtype=float)
    assert pareto_mask(pts, [False] * 3).tolist() == [True, True, True, False, False]
    # Inclusion-exclusion by hand: 6 + 6 + 3 - 4 - 1 - 1 + 1 = 10.
    assert hypervolume(pts, [4, 4, 4], [False] * 3) == pytest.approx(10.0)
    # Directions: maximising the negated points is the same problem.
    assert hypervolume(-pts, [-4, -4, -4], [True] * 3) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="maximize has 2 entries for 3 objectives"):
        pareto_mask(pts, [False, False])


def _hv_inclusion_exclusion(pts: np.ndarray, ref: np.ndarray) -> float:
    """Exact oracle for tiny sets (minimisation): union of boxes [p, ref] by inclusion-exclusion."""
    pts = pts[(pts < ref).all(axis=1)]
    total = 0.0
    for k in range(1, len(pts) + 1):
        for subset in itertools.combinations(range(len(pts)), k):
            corner = pts[list(subset)].max(axis=0)
            total += (-1) ** (k + 1) * np.prod(np.clip(ref - corner, 0, None))
    return total


@pytest.mark.parametrize("m", [2, 3, 4])
def test_random_sets_match_the_naive_front_and_the_exact_oracle(m):
    rng = np.random.default_rng(m)
    for trial in range(30):
        n = int(rng.integers(1, 9))
        pts = rng.integers(0, 5, size=(n, m)).astype(float)  # many ties and duplicates
        maximize = list(rng.integers(0, 2, size=m).astype(bool))
        assert pareto_mask(pts, maximize).tolist() == pareto_mask_naive(pts, maximize).tolist(), trial
        ref = np.where(maximize, -1.0, 5.0)
        sign = np.where(maximize, -1.0, 1.0)
        expected = _hv_inclusion_exclusion(pts * sign, ref * sign)
        assert hypervolume(pts, ref, maximize) == pytest.approx(expected, abs=1e-9), trial
    big = rng.normal(size=(400, m))
    assert (pareto_mask(big, [True] * m) == pareto_mask_naive(big, [True] * m)).all()


def test_front_and_hypervolume_agree_with_optuna():
    """Optuna's own multi-objective study: its best_trials are our front, in both directions."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        directions=["maximize", "minimize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0)
    )

    def objective(trial: optuna.Trial) -> tuple[float, float, float]:
        views = trial.suggest_int("views", 1, 8)
        width = trial.suggest_float("width", 0.25, 2.0)
        recall = round(100 * (1 - np.exp(-0.3 * views * width)), 1)  # rounding makes ties
        return recall, round(views * width**2, 2), float(views)

    study.optimize(objective, n_trials=80)
    values = np.array([t.values for t in study.trials])
    ours = {study.trials[i].number for i in np.flatnonzero(pareto_mask(values, [True, False, False]))}
    assert ours == {t.number for t in study.best_trials}
    two = values[:, :2]
    ours_2d = set(np.flatnonzero(pareto_mask(two, [True, False])).tolist())
    study_2d = optuna.create_study(directions=["maximize", "minimize"])
    study_2d.add_trials(
        [
            optuna.trial.create_trial(params={}, distributions={}, values=list(v))
            for v in two  # same numbers, two objectives
        ]
    )
    assert ours_2d == {t.number for t in study_2d.best_trials}
    # Hypervolume: Optuna keeps its implementation private; compare with it where it exists.
    wfg = pytest.importorskip("optuna._hypervolume")
    ref = np.array([0.0, 10.0, 9.0])
    minimised = values * np.array([-1.0, 1.0, 1.0])
    expected = wfg.compute_hypervolume(
        minimised[(minimised < ref * [-1, 1, 1]).all(axis=1)], ref * [-1, 1, 1]
    )
    assert hypervolume(values, ref, [True, False, False]) == pytest.approx(expected, rel=1e-9)


def test_nondominated_ranks_peel_fronts():
    from geodistill.leaderboard.pareto import nondominated_ranks

    # A, B, D, F on the first front; C (by B) and E (by A) on the second; H (by E too) on the third.
    assert nondominated_ranks(POINTS, MAXIMIZE).tolist() == [0, 0, 1, 0, 1, 0, -1, 2]


def test_front_hypervolume_is_over_log10_gflops():
    from geodistill.leaderboard.pareto import front_hypervolume, front_reference

    values, gflops = [20.0, 80.0, 90.0], [0.01, 0.1, 1.0]
    assert front_reference(values, gflops) == (20.0, pytest.approx(1.1))
    # Reference (0, 10 GFLOPs = log 1): decades [-2,-1) at 20, [-1,0) at 80, [0,1) at 90.
    assert front_hypervolume(values, gflops, (0.0, 10.0)) == pytest.approx(20 + 80 + 90)
    # Linear GFLOPs: the most precise point alone holds 92 % of the same front's volume ...
    linear = hypervolume(np.c_[values, gflops], [0.0, 10.0], MAXIMIZE)
    assert hypervolume(np.array([[90.0, 1.0]]), [0.0, 10.0], MAXIMIZE) / linear > 0.9
    # ... over log GFLOPs 47 %: the cheap end counts.
    assert front_hypervolume([90.0], [1.0], (0.0, 10.0)) / (20 + 80 + 90) == pytest.approx(90 / 190)
    with pytest.raises(ValueError):
        front_hypervolume([1.0], [0.0], (0.0, 10.0))


def test_front_regret_per_budget_of_the_target_front():
    from geodistill.leaderboard.pareto import front_regret

    # Target front: 20 @ 0.01, 80 @ 0.1, 90 @ 1 (70 @ 0.5 is dominated: not a budget).
    target_v, target_g = [20.0, 80.0, 90.0, 70.0], [0.01, 0.1, 1.0, 0.5]
    budgets, regret = front_regret([15.0, 85.0], [0.01, 0.5], target_v, target_g)
    assert budgets.tolist() == [0.01, 0.1, 1.0]
    # Within 0.01: 15 (5 below); within 0.1: still 15 (65 below); within 1: 85 (5 below).
    assert regret.tolist() == [5.0, 65.0, 5.0]
    _, none = front_regret([85.0], [0.5], target_v, target_g)
    assert none.tolist() == [np.inf, np.inf, 5.0]
    _, better = front_regret([25.0], [0.01], target_v, target_g)
    assert better[0] == -5.0  # a found point beats the target there


def test_capped_values_earn_nothing_above_the_target_front():
    from geodistill.leaderboard.pareto import capped_to_front, front_hypervolume

    target_v, target_g = [20.0, 80.0, 90.0, 70.0], [0.01, 0.1, 1.0, 0.5]
    found_v, found_g = [35.0, 85.0, 60.0, 50.0], [0.01, 0.5, 0.1, 0.005]
    # 35 @ 0.01 beats the target's 20 there: capped to 20; 85 @ 0.5 capped to the 80 within 0.5;
    # 60 @ 0.1 is below 80, kept; 50 @ 0.005 is cheaper than any target point: the lowest target, 20.
    assert capped_to_front(found_v, found_g, target_v, target_g).tolist() == [20.0, 80.0, 60.0, 20.0]
    # Uncapped, a cheap overshoot plus a missing top can hold more than the target's whole front.
    reference = (20.0, 1.1)
    target_hv = front_hypervolume(target_v, target_g, reference)
    cheap_overshoot = ([95.0], [0.01])
    assert front_hypervolume(*cheap_overshoot, reference) > target_hv
    capped = capped_to_front(*cheap_overshoot, target_v, target_g)
    assert front_hypervolume(capped, cheap_overshoot[1], reference) == 0.0
    # Cheaper than every target point: the lowest target value (10 here), not the cheapest one's (30).
    assert capped_to_front([50.0], [0.001], [30.0, 10.0], [0.01, 0.1]).tolist() == [10.0]


def test_anytime_hypervolume_follows_arrival_order():
    from geodistill.leaderboard.pareto import anytime_hypervolume

    curve = anytime_hypervolume([90.0, 20.0, 10.0], [1.0, 0.01, 0.01], [0.4, 0.5, 0.7], (0.0, 10.0))
    assert curve[:, 0].tolist() == [0.4, 0.5, 0.7]
    assert curve[:, 1].tolist() == pytest.approx([90.0, 90.0 + 2 * 20, 90.0 + 2 * 20])


def test_pareto_rows_keep_a_stopped_trial_at_its_values_then():
    import polars as pl

    from geodistill.leaderboard.pareto import pareto_rows

    frame = pl.DataFrame(
        {
            "trial_id": ["a", "b", "c", "d", "e"],
            "status": ["ok", "stopped", "ok", "stopped", "failed"],
            "epochs": [9, 1, 9, 0, 2],
            "d2s_ap": [80.0, 30.0, 25.0, None, 99.0],
            "gflops": [0.04, 0.003, 0.01, 0.001, 0.001],
        }
    )
    front = pareto_rows(frame, "d2s_ap")
    # b (stopped at epoch 1) is cheapest with a metric; c is dominated by it; d (over budget,
    # no metric) and e (failed) never take part.
    assert front["trial_id"].to_list() == ["b", "a"]


def test_rows_of_a_search_before_compute_was_recorded_count_by_the_rule():
    import polars as pl

    from geodistill.leaderboard.pareto import anytime_front, counted_compute

    frame = pl.DataFrame(
        {
            "row_key": ["old", "cut", "new"],
            "trial_id": ["old", "cut", "new"],
            "status": ["ok", "stopped", "ok"],
            "created_at": [1, 2, 3],
            "epochs": [4, None, 2],  # "cut": interrupted before its first epoch
            "d2s_recall1": [50.0, None, 40.0],
            "gflops": [0.5, 0.1, 0.01],
            "compute": [None, None, 0.02],  # written before compute was recorded, then after
        }
    )
    assert counted_compute(frame)["compute"].to_list() == [2.0, None, 0.02]
    curve = anytime_front(frame, "d2s_recall1")
    assert curve["trial_id"].to_list() == ["old", "new"] and curve["compute_spent"].to_list() == [2.0, 2.02]
    # A frame where no row recorded compute (rows of `geodistill train` alone) is left as it is.
    before = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("compute"))
    assert (
        counted_compute(before)["compute"].is_null().all() and anytime_front(before, "d2s_recall1").is_empty()
    )

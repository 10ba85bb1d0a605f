"""The rung rule that multi-worker trials use to stop themselves makes ASHA's decisions."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from ray.tune.schedulers import TrialScheduler
from ray.tune.schedulers.async_hyperband import _Bracket  # private: pinned to Ray 2.60's ASHA

from geodistill.platform.search.rung import FileRungStore, RungRule, cutoff, milestones


def test_milestones_match_asha_rungs():
    assert milestones(grace_period=1, reduction_factor=2, max_t=8) == [1, 2, 4, 8]
    assert milestones(grace_period=2, reduction_factor=3, max_t=20) == [2, 6, 18]
    assert milestones(grace_period=1, reduction_factor=4, max_t=3) == [1]
    bracket = _Bracket(min_t=2, max_t=20, reduction_factor=3, s=0)
    assert sorted(m for m, _ in bracket._rungs) == [2, 6, 18]
    with pytest.raises(ValueError):
        milestones(grace_period=0, reduction_factor=2, max_t=4)


def test_cutoff_is_the_upper_quantile_of_earlier_values():
    assert cutoff([], 2) is None
    assert cutoff([10.0, 30.0], 2) == 20.0  # median
    assert cutoff([0.0, 10.0, 20.0, 30.0], 4) == pytest.approx(22.5)  # 75th percentile


class _Trial:
    def __init__(self, trial_id):
        self.trial_id = trial_id


@pytest.mark.parametrize(("mode", "rf"), [("max", 2), ("min", 2), ("max", 3)])
def test_rung_rule_decides_like_rays_asha_bracket(tmp_path, mode, rf):
    """Trials report in an interleaved order; every decision equals Ray's ``_Bracket`` decision."""
    rng = random.Random(7)
    max_t = 9
    bracket = _Bracket(min_t=1, max_t=max_t, reduction_factor=rf, s=0)
    store = FileRungStore(tmp_path / f"rungs-{mode}-{rf}")
    trials = {f"t{i}": rng.uniform(0, 1) for i in range(10)}  # per-trial quality
    rules = {
        t: RungRule(
            store, trial_id=t, metric="m", mode=mode, grace_period=1, reduction_factor=rf, max_t=max_t
        )
        for t in trials
    }
    epoch = dict.fromkeys(trials, 0)
    alive = set(trials)
    stops = 0
    while alive:
        t = rng.choice(sorted(alive))
        epoch[t] += 1
        value = trials[t] * epoch[t] + rng.uniform(0, 0.3)
        ray_value = value if mode == "max" else -value
        ray_stop = bracket.on_result(_Trial(t), epoch[t], ray_value) == TrialScheduler.STOP
        ours = rules[t].should_stop(epoch[t], {"m": value})
        if epoch[t] < max_t:  # at max_t the trial ends anyway; we do not record there
            assert ours == ray_stop, (t, epoch[t])
        if ours or epoch[t] >= max_t:
            alive.discard(t)
            stops += ours
    assert stops >= 3


def test_a_resumed_trial_keeps_its_first_rung_value_and_decision_is_not_repeated(tmp_path):
    store = FileRungStore(tmp_path)
    a = RungRule(store, trial_id="a", metric="m", max_t=4)
    assert a.should_stop(1, {"m": 5.0}) is False
    b = RungRule(store, trial_id="b", metric="m", max_t=4)
    assert b.should_stop(1, {"m": 1.0}) is True
    b_again = RungRule(store, trial_id="b", metric="m", max_t=4)  # the same trial after a restart
    assert b_again.should_stop(1, {"m": 4.0}) is True  # compared with a's 5.0 only, not with itself
    assert b_again.should_stop(1, {"m": 4.0}) is False  # one decision per rung
    assert sorted(store.record(1, "c", 0.0)) == [1.0, 5.0]  # b's first value is the one kept
    assert a.should_stop(3, {}) is False  # metric missing (no evaluation this epoch): no decision


def test_file_store_is_safe_under_concurrent_writers(tmp_path):
    store = FileRungStore(tmp_path)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: store.record(1, f"t{i}", float(i)), range(64)))
    before = store.record(1, "last", 0.0)
    assert sorted(before) == [float(i) for i in range(64)]


def test_pareto_stop_keeps_the_cheap_end_of_the_front():
    from geodistill.platform.search.rung import pareto_stop

    assert not pareto_stop([], (10.0, 1.0), 3)  # the first at a rung goes on
    before = [[80.0, 0.04], [70.0, 0.05], [60.0, 0.06], [50.0, 0.07], [40.0, 0.08]]
    # 20 AP at 0.003 GFLOPs: least precise, yet nothing recorded is as cheap: first front, goes on.
    assert not pareto_stop(before, (20.0, 0.003), 3)
    # 65 at 0.055: dominated by 80 @ 0.04 and 70 @ 0.05 (second front, 2 ahead); n = 6, rf 3:
    # the first ceil(6 / 3) = 2 go on, so it stops; with rf 2 (3 go on) it goes on.
    assert pareto_stop(before, (65.0, 0.055), 3)
    assert not pareto_stop(before, (65.0, 0.055), 2)
    # 35 @ 0.09 is dominated by every recorded point (fronts 0-4 are ahead of it): stops.
    assert pareto_stop(before, (35.0, 0.09), 3)


def test_pareto_stop_puts_the_cheap_end_of_a_front_first():
    """Within a front the cheaper go first, and the first front has no exemption."""
    from geodistill.platform.search.rung import pareto_stop

    cheap_front = [[10.0, 0.001], [20.0, 0.002], [30.0, 0.004], [40.0, 0.008]]
    # 90 @ 0.5 is on the first front (the most precise) but behind its four cheaper members;
    # n = 5, rf 4: ceil(5 / 4) = 2 go on, so it stops (keeping it costs 60 of the cheapest).
    assert pareto_stop(cheap_front, (90.0, 0.5), 4)
    # 25 @ 0.003 is on the same front with two cheaper points ahead: 2 >= 2, stops; 15 @ 0.0015
    # has one cheaper ahead: goes on.
    assert pareto_stop(cheap_front, (25.0, 0.003), 4)
    assert not pareto_stop(cheap_front, (15.0, 0.0015), 4)
    # With rf 2, ceil(5 / 2) = 3 go on: the 0.003 point (2 ahead) goes on too.
    assert not pareto_stop(cheap_front, (25.0, 0.003), 2)


def test_rung_rule_with_cost_records_pairs_and_uses_pareto_stop(tmp_path):
    store = FileRungStore(tmp_path)
    expensive = RungRule(
        store, trial_id="a", metric="m", grace_period=1, reduction_factor=3, max_t=9, cost=0.5
    )
    cheap = RungRule(store, trial_id="b", metric="m", grace_period=1, reduction_factor=3, max_t=9, cost=0.01)
    worse = RungRule(store, trial_id="c", metric="m", grace_period=1, reduction_factor=3, max_t=9, cost=0.6)
    assert not expensive.should_stop(1, {"m": 90.0})
    # Ray's ASHA would stop it (10 < 90); on (metric, cost) it is on the first front.
    assert not cheap.should_stop(1, {"m": 10.0})
    assert worse.should_stop(1, {"m": 50.0})  # dominated by a; 2 ahead of it, ceil(3/3) = 1 go on
    import json

    assert json.loads((tmp_path / "rungs.json").read_text())["1"]["b"] == [10.0, 0.01]


def test_rung_rule_with_cost_ignores_values_of_a_search_before(tmp_path):
    store = FileRungStore(tmp_path)
    store.record(1, "old", 99.0)  # a bare number: written by the single-objective rule
    rule = RungRule(store, trial_id="new", metric="m", grace_period=1, reduction_factor=3, max_t=9, cost=0.1)
    assert not rule.should_stop(1, {"m": 1.0})  # nothing comparable recorded: it goes on


def test_pareto_asha_scheduler_makes_the_rung_rules_decisions():
    """Tune's scheduler and the self-stopping rule decide the same on the same reports."""
    from geodistill.platform.search.rung import MemoryRungs
    from geodistill.platform.search.scheduler import ParetoASHA

    rng = random.Random(3)
    scheduler = ParetoASHA(metric="m", max_t=9, grace_period=1, reduction_factor=3)
    store = MemoryRungs()
    trials = [
        (f"t{i}", rng.choice([0.003, 0.01, 0.05, 0.3]), [rng.uniform(0, 100) for _ in range(9)])
        for i in range(12)
    ]
    rules = {
        tid: RungRule(store, trial_id=tid, metric="m", grace_period=1, reduction_factor=3, max_t=9, cost=cost)
        for tid, cost, _ in trials
    }
    for tid, _, _ in trials:
        scheduler.on_trial_add(None, _Trial(tid))
    stopped = {tid: False for tid, _, _ in trials}
    decisions = []
    for epoch in range(1, 10):
        for tid, cost, curve in trials:
            if stopped[tid]:
                continue
            result = {"epoch": epoch, "m": curve[epoch - 1], "gflops": cost}
            tune_says = scheduler.on_trial_result(None, _Trial(tid), result) == TrialScheduler.STOP
            rule_says = rules[tid].should_stop(epoch, result)
            assert tune_says == rule_says
            stopped[tid] = tune_says
            decisions.append(tune_says)
    assert any(decisions) and not all(decisions)

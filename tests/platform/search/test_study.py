"""The Optuna study of a real (tiny) search, read back through Optuna's own API.

A trivial objective (defined in the test, so Ray pickles it by value) whose precision is known
in advance: ASHA stops some trials, and the study must show named objectives, every epoch's
value, the stopped trials COMPLETE at their values then (labelled with the epoch) with their
Tune trial id, and a Pareto front (``study.best_trials``) equal to the one the report draws from
the leaderboard.
"""

from __future__ import annotations

import optuna
import polars as pl
import pytest
from trivial_search import search, search_dirs, trivial_space

from geodistill.platform.search.study import (
    ANSWERED_FROM_ATTR,
    EPOCH_VALUES_ATTR,
    STOPPED_AT_ATTR,
    TRIAL_ID_ATTR,
    stopped_early,
)

EPOCHS = 4


def test_stopped_early_reads_a_trials_last_result():
    assert stopped_early({"epoch": 1, "epochs_planned": 4})
    assert not stopped_early({"epoch": 4, "epochs_planned": 4})
    assert stopped_early({"epoch": 2, "stopped_early": 1})
    assert not stopped_early({"epoch": 0, "epochs_planned": 4, "over_budget": 1})  # refused, not stopped
    assert not stopped_early(None)


def test_a_slow_define_by_run_space_is_not_reported_as_training_outside_a_trial(monkeypatch):
    """Ray warns when sampling takes over a second ("Ensure that actual computation, training takes
    place inside Tune's train functions"); ours counts GFLOPs there on purpose (costaware.py)."""
    import warnings

    from ray.tune.search.optuna import OptunaSearch, optuna_search

    from geodistill.platform.search.study import StudySearch

    monkeypatch.setattr(optuna_search, "DEFINE_BY_RUN_WARN_THRESHOLD_S", -1)  # every sampling is "slow"

    def space(trial):
        trial.suggest_float("train.lr", 0.001, 0.01)

    def warned(cls: type) -> list[str]:
        searcher = cls(
            space=space, metric=["a", "b"], mode=["max", "min"], sampler=optuna.samplers.RandomSampler(seed=0)
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert "train.lr" in searcher.suggest("t1")
        return [str(w.message) for w in caught]

    assert any(m.startswith("Define-by-run function") for m in warned(OptunaSearch))  # Ray's own does
    assert warned(StudySearch) == []


@pytest.mark.slow
def test_study_has_named_objectives_epoch_values_pruned_trials_and_the_reports_front(ray_local, tmp_path):
    def objective(cfg, *, context):
        # Precision grows with lr and with views (which cost GFLOPs): a real trade-off.
        for epoch in range(1, cfg.train.epochs + 1):
            value = cfg.train.lr * 1000 * epoch + 3 * cfg.data.views
            context.report({"epoch": epoch, "d2s_recall1": value})
            if context.should_stop(epoch, {}):
                break

    space = trivial_space(EPOCHS, params={"data.views": {"type": "choice", "choices": [1, 2, 3]}})
    result = search(
        space,
        experiment="honest",
        num_samples=6,
        sampler="random",
        **search_dirs(tmp_path),
        max_concurrent=1,
        objective=objective,
        seed=3,
    )
    rows = result.rows
    assert rows.height == 6 and not result.interrupted
    stopped = rows.filter(pl.col("status") == "stopped")
    assert stopped.height >= 1, "ASHA stopped no trial: the test would prove nothing"

    study = optuna.load_study(study_name="honest", storage=result.study_url)
    assert study.metric_names == ["d2s_recall1", "gflops"]
    by_id = {t.user_attrs[TRIAL_ID_ATTR]: t for t in study.trials if TRIAL_ID_ATTR in t.user_attrs}
    assert set(by_id) == set(rows["trial_id"])
    for answered in [t for t in study.trials if ANSWERED_FROM_ATTR in t.user_attrs]:
        source = by_id[answered.user_attrs[ANSWERED_FROM_ATTR]]  # a repeat: told, not trained
        assert answered.params == source.params and answered.values == source.values
    for row in rows.iter_rows(named=True):
        trial = by_id[row["trial_id"]]
        lr, views = trial.params["train.lr"], trial.params["data.views"]
        # Every epoch the trial ran is kept, exactly what it reported, and is its intermediate values.
        epoch_values = {int(e): v for e, v in trial.user_attrs[EPOCH_VALUES_ATTR].items()}
        assert sorted(epoch_values) == list(range(1, row["epochs"] + 1))
        for epoch, value in epoch_values.items():
            assert value == pytest.approx(lr * 1000 * epoch + 3 * views)
        # A stopped trial is told its values when stopped (its checkpoint is kept), labelled.
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert trial.values == pytest.approx([row["d2s_recall1"], row["gflops"]])
        assert trial.intermediate_values == pytest.approx(epoch_values)
        if row["status"] == "stopped":
            assert trial.user_attrs[STOPPED_AT_ATTR] == row["epochs"] < EPOCHS
        else:
            assert STOPPED_AT_ATTR not in trial.user_attrs

    # The study's Pareto front is the report's (pareto_rows): the same trials, stopped ones included.
    front = {t.user_attrs.get(TRIAL_ID_ATTR) or t.user_attrs[ANSWERED_FROM_ATTR] for t in study.best_trials}
    assert front == set(result.pareto["trial_id"]) and front


@pytest.mark.slow  # 15-35 s: the second tier (CI runs it), keeping `make test` under 8 minutes
@pytest.mark.parametrize("sampler", ["gp", "tpe"])
def test_the_sampler_keeps_suggesting_after_its_start_up_with_pruned_trials_in_the_study(
    sampler, ray_local, tmp_path
):
    """TPE (the default) and GP past their start-up trials, with ASHA-pruned trials in the study.

    Optuna's TPE ranks PRUNED trials by their last intermediate value through ``study.direction``,
    which raises on a multi-objective study: a pruned trial with intermediate values ended the
    search at the next suggestion (found by the rehearsal-cluster test once TPE's start-up was 4).
    """
    from trivial_search import lr_ramp

    from geodistill.platform.search.tuner import GP_STARTUP_TRIALS, TPE_STARTUP_TRIALS

    n = {"gp": GP_STARTUP_TRIALS, "tpe": TPE_STARTUP_TRIALS}[sampler] + 4
    experiment = f"{sampler}_pruned"
    result = search(
        trivial_space(EPOCHS),
        experiment=experiment,
        num_samples=n,
        sampler=sampler,
        **search_dirs(tmp_path),
        max_concurrent=1,
        objective=lr_ramp,
        seed=0,
    )
    rows = result.rows
    assert rows.height == n and not result.interrupted and set(rows["status"]) <= {"ok", "stopped"}
    study = optuna.load_study(study_name=experiment, storage=result.study_url)
    trained = [t for t in study.trials if TRIAL_ID_ATTR in t.user_attrs]
    assert len(trained) == n and all(t.state == optuna.trial.TrialState.COMPLETE for t in trained)
    stopped_before_last = [t for t in trained[:-1] if STOPPED_AT_ATTR in t.user_attrs]
    assert stopped_before_last, f"no trial was sampled by {sampler} with a stopped trial in the study"

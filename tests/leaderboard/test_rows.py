"""A run's leaderboard row: written with its cost counted, its status read from its last result."""

from __future__ import annotations

import polars as pl
import pytest

from geodistill.leaderboard import Leaderboard
from geodistill.leaderboard.pareto import counted_compute
from geodistill.leaderboard.rows import compute_expr, compute_units, row_status, trial_row, write_run_row
from geodistill.models.cost import config_cost
from geodistill.train.config import RunConfig


def _cfg(**top) -> RunConfig:
    return RunConfig.from_dict(
        {"experiment": "exp", "run_name": "run1", "stage": "teacher", "data": {"img_size": 32}, **top}
    )


def test_a_training_runs_row_has_a_trials_shape_and_its_cost(tmp_path):
    cfg = _cfg()
    key = write_run_row(cfg, {"epoch": 3, "d2s_recall1": 41.5}, checkpoint="/ckpt", root=tmp_path)
    assert key == "exp/run1/teacher"
    row = Leaderboard(tmp_path).read("exp").row(0, named=True)
    cost = config_cost(cfg.model, cfg.data.views)
    assert row["gflops"] == pytest.approx(cost["gflops"]) and row["gflops"] > 0
    assert row["params_m"] == pytest.approx(cost["params_m"])
    assert (row["status"], row["epochs"], row["d2s_recall1"], row["checkpoint_uri"]) == (
        "ok",
        3,
        41.5,
        "/ckpt",
    )


def test_the_cost_follows_the_view_count_and_ignores_weights():
    cfg = _cfg()
    one, four = config_cost(cfg.model, 1), config_cost(cfg.model, 4)
    assert four["gflops"] == pytest.approx(4 * one["gflops"], rel=0.05)
    weighted = RunConfig.from_dict(
        {**cfg.to_dict(), "model": {**cfg.to_dict()["model"], "weights": "/nowhere.pt"}}
    )
    assert config_cost(weighted.model, 1) == one  # counted on the meta device: no file is read


def test_status_of_a_finished_a_short_and_an_over_budget_trial():
    cfg = _cfg(train={"epochs": 2})
    assert row_status({"epoch": 2}, cfg) == ("ok", None)
    assert row_status({"epoch": 1}, cfg) == ("stopped", None)
    status, error = row_status({"over_budget": 1, "gflops": 3.0}, cfg)
    assert status == "stopped" and error.startswith("over the flops budget (3.000")
    row = trial_row(
        experiment="e", trial_id="t", cfg=cfg, result={"over_budget": 1, "d2s_recall1": 0.0}, status=status
    )
    assert row["d2s_recall1"] is None  # a trial refused before training has no precision


def test_train_gflops_is_epochs_x_samples_x_gflops_per_sample_and_compute_stays_the_search_unit(tmp_path):
    """3 epochs x 24 samples x 0.5 GFLOPs a sample = 36 GFLOPs; ``compute`` is left as reported."""
    result = {"epoch": 3, "train_samples": 24.0, "train_sample_gflops": 0.5, "compute": 0.12}
    row = trial_row(experiment="exp", trial_id="t1", cfg=_cfg(), result=result, status="ok")
    assert row["train_gflops"] == pytest.approx(36.0) and row["compute"] == pytest.approx(0.12)
    # A replayed trial (or a row from before the loop reported samples) has no training count.
    row = trial_row(experiment="exp", trial_id="t2", cfg=_cfg(), result={"epoch": 3}, status="ok")
    assert row["train_gflops"] is None
    key = write_run_row(_cfg(), result, checkpoint=None, root=tmp_path)
    assert key == "exp/run1/teacher"
    assert Leaderboard(tmp_path).read("exp")["train_gflops"].to_list() == [pytest.approx(36.0)]


def test_compute_is_one_rule_for_a_trials_reports_and_a_frames_rows():
    """Epochs trained x GFLOPs per query, as a number (what trials report) and over a frame's
    columns (what ``counted_compute`` fills in for rows written without it)."""
    assert compute_units(3, 0.5) == pytest.approx(1.5)
    frame = pl.DataFrame(
        {
            "epochs": pl.Series([3, 9, None], dtype=pl.Int32),
            "gflops": [0.5, 0.01, 0.2],
            "compute": [None, 7.0, None],
        }
    )
    assert frame.select(compute_expr())["epochs"].to_list() == [pytest.approx(1.5), pytest.approx(0.09), None]
    assert counted_compute(frame)["compute"].to_list() == [pytest.approx(compute_units(3, 0.5)), 7.0, None]

"""The worker side of a training run: tracked fit, Ray's per-report lines, atomic small files.

``RayTrainWorkerContext`` and ``train_loop`` need a Ray Train worker: ``test_train_driver`` and
``test_ray_train_console`` run them on a real local cluster (second tier).
"""

from __future__ import annotations

import importlib
import logging

from geodistill.platform.compose import SMOKE_OVERRIDES, compose_run_config
from geodistill.platform.runtime.train_driver import prepare_config
from geodistill.platform.runtime.train_worker import (
    _quiet_report_log,
    atomic_write_text,
    checkpoint_score,
    tracked_fit,
)


class Recording:
    """A TrainContext that keeps what it is given (rank 0, one process)."""

    rank, world_size, device = 0, 1, "cpu"

    def __init__(self) -> None:
        self.reports: list[dict[str, float]] = []

    def report(self, metrics, checkpoint_dir=None) -> None:
        self.reports.append(dict(metrics))


def two_epochs(cfg, *, context):
    for epoch in (1, 2):
        context.report({"epoch": epoch, "loss": 1.0 / epoch, "d2s_recall1": 0.25 * epoch})
    return "done"


def test_tracked_fit_without_loggers_runs_fit_on_the_same_context(tmp_path):
    cfg = prepare_config(compose_run_config([*SMOKE_OVERRIDES, f"output_dir={tmp_path}", "logger=none"]))
    context = Recording()
    assert tracked_fit(two_epochs, cfg, context, tmp_path) == "done"
    assert [r["epoch"] for r in context.reports] == [1, 2]
    assert list(tmp_path.rglob("events.out.tfevents*")) == []


def test_tracked_fit_hands_every_report_to_tensorboard_and_the_context(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = prepare_config(
        compose_run_config([*SMOKE_OVERRIDES, f"output_dir={tmp_path}", "logger=tensorboard"])
    )
    context = Recording()
    assert tracked_fit(two_epochs, cfg, context, tmp_path) == "done"
    assert [r["loss"] for r in context.reports] == [1.0, 0.5]
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {e.step: e.value for e in events.Scalars("d2s_recall1")} == {1: 0.25, 2: 0.5}


def test_ray_trains_per_report_info_lines_are_dropped_and_its_warnings_kept():
    _quiet_report_log()
    context = importlib.import_module("ray.train.v2._internal.execution.context")
    for name in ("ray.train.v2._internal.execution.storage", context.__file__):
        logger = logging.getLogger(name)
        assert not logger.isEnabledFor(logging.INFO) and logger.isEnabledFor(logging.WARNING)


def test_atomic_write_text_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "worker_0.pid"
    atomic_write_text(path, "1\n")
    atomic_write_text(path, "2\n")
    assert path.read_text() == "2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["worker_0.pid"]


def test_checkpoint_score_ranks_equal_recalls_earliest_first_and_unequal_ones_by_recall():
    """Ray keeps the later of equal scores; the score makes it keep the earlier epoch, as
    prune_checkpoints does, without reordering unequal recalls."""
    ranked = [  # best first
        checkpoint_score({"epoch": 4, "d2s_recall1": 62.5}),
        checkpoint_score({"epoch": 1, "d2s_recall1": 50.0}),
        checkpoint_score({"epoch": 2, "d2s_recall1": 50.0}),
        checkpoint_score({"epoch": 900, "d2s_recall1": 50.0}),
        checkpoint_score({"epoch": 3, "d2s_recall1": 49.99}),
        checkpoint_score({"epoch": 1, "d2s_recall1": 0.0}),
        checkpoint_score({"epoch": 2, "d2s_recall1": 0.0}),
    ]
    assert ranked == sorted(ranked, reverse=True) and len(set(ranked)) == len(ranked)
    assert abs(ranked[1] - 50.0) < 1e-12 and ranked[-1] > -1.0
    # Not evaluated (or not a number): -1, below any recall, whatever the epoch.
    assert checkpoint_score({"epoch": 1}) == checkpoint_score({"epoch": 5}) == -1.0
    assert checkpoint_score({"epoch": 2, "d2s_recall1": float("nan")}) == -1.0

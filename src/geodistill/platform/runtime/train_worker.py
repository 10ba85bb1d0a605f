"""What runs where training runs: the Ray Train worker's loop and ``TrainContext``, and the
helpers ``train_driver``'s in-process runner shares with it.

``train_loop`` is ``TorchTrainer``'s ``train_loop_per_worker``: each rank builds a
``RayTrainWorkerContext`` and calls ``fit``; rank 0's ``fit`` runs with the run's trackers
(``tracked_fit``). Rank 0 hands Ray each epoch's checkpoint as ``epoch_NNNN`` with
``CHECKPOINT_SCORE`` among its metrics (``checkpoint_score``: equal recalls, the earlier epoch
first), which ``train_driver.checkpoint_config`` ranks by.
Ray Train's per-report INFO lines are dropped here (``_quiet_report_log``); warnings still print.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from geodistill.train.config import RunConfig
from geodistill.train.context import BEST_METRIC, latest_checkpoint_in

StopRule = Callable[[int, dict[str, float]], bool]  # (epochs done, metrics) -> stop now
FitFn = Callable[..., Any]  # fit(cfg, *, context) -> TrainResult

PID_FILE = "worker_{rank}.pid"
NODE_FILE = "worker_{rank}.node"
CHECKPOINTS_DIR = "checkpoints"  # <output_dir>/<run_name>/checkpoints/epoch_NNNN in both modes
# Ray ranks rank 0's checkpoints by this metric (``checkpoint_score``: BEST_METRIC, equal ones the
# earlier epoch first; -1 for an epoch not evaluated), which every checkpoint's report carries
# (Ray logs an error for each one that does not).
CHECKPOINT_SCORE = "checkpoint_score"


def fetch_teacher(cfg: RunConfig) -> None:
    """Point a URI ``distill.teacher_checkpoint`` at this node's cached copy (``platform.remote``)."""
    if cfg.stage == "student" and cfg.distill.teacher_checkpoint:
        from geodistill.platform.runtime.remote import resolve_teacher

        cfg.distill.teacher_checkpoint = resolve_teacher(cfg.distill.teacher_checkpoint, fetch=True)


def checkpoint_score(metrics: dict[str, float]) -> float:
    """The ``CHECKPOINT_SCORE`` of an epoch's checkpoint: ``BEST_METRIC``, -1 (below any recall)
    when the epoch was not evaluated, so Ray keeps the best as ``context.prune_checkpoints`` does.

    Ray keeps the later of equal scores, ``prune_checkpoints`` the earlier (reached with less
    training): an evaluated epoch's score is lowered by ``epoch`` units in its last place, which
    orders equal recalls earliest first and leaves unequal ones in their order (recalls from
    counted matches differ by far more than an epoch count of last-place units)."""
    score = float(metrics.get(BEST_METRIC, -1.0))
    if not math.isfinite(score) or BEST_METRIC not in metrics:
        return -1.0
    return score - int(metrics.get("epoch", 0)) * math.ulp(score)


class RayTrainWorkerContext:
    """TrainContext inside a Ray Train worker: ``ray.train.report`` / ``get_checkpoint`` / a stop rule.

    Every rank reports every epoch (Ray's reports are a barrier across workers); only rank 0
    passes the checkpoint, which Ray copies to ``<storage>/<run_name>/epoch_NNNN``, and its
    ``CHECKPOINT_SCORE`` (metrics.jsonl and ``history`` keep the metrics as fit gave them). Each rank
    writes its pid to ``<run_dir>/worker_<rank>.pid`` and its Ray node id to ``worker_<rank>.node``
    (operators and the fault tests use them).
    """

    def __init__(self, run_dir: str | Path, *, rule: StopRule | None = None) -> None:
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        self.run_dir = Path(run_dir)
        self.rule = rule
        self.history: list[dict[str, float]] = []
        self._downloads: dict[str, Path] = {}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_dir / PID_FILE.format(rank=self.rank), f"{os.getpid()}\n")
        node = ray.get_runtime_context().get_node_id()  # which node this rank runs on (spread checks)
        atomic_write_text(self.run_dir / NODE_FILE.format(rank=self.rank), f"{node}\n")

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None = None) -> None:
        import ray.train

        metrics = {k: float(v) for k, v in metrics.items()}
        checkpoint = None
        if checkpoint_dir is not None and self.rank == 0:
            checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir))
        name = f"epoch_{int(metrics['epoch']):04d}" if "epoch" in metrics else None
        reported = metrics
        if checkpoint is not None:  # what train_driver.checkpoint_config ranks checkpoints by
            reported = {**metrics, CHECKPOINT_SCORE: checkpoint_score(metrics)}
        ray.train.report(reported, checkpoint=checkpoint, checkpoint_dir_name=name)
        if self.rank == 0:
            self.history.append(metrics)
            with open(self.run_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(metrics, sort_keys=True) + "\n")

    def latest_checkpoint(self) -> Path | None:
        """The latest persisted checkpoint as a local directory (downloaded once if storage is remote)."""
        import pyarrow.fs
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            # Ray knows none (a first Ray run): an in-process run of the same name may have left one.
            return latest_checkpoint_in(self.run_dir / CHECKPOINTS_DIR)
        if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem):
            return Path(checkpoint.path)
        if checkpoint.path not in self._downloads:
            local = Path(tempfile.mkdtemp(prefix="geodistill-resume-"))
            self._downloads[checkpoint.path] = Path(checkpoint.to_directory(str(local)))
        return self._downloads[checkpoint.path]

    def should_stop(self, epoch: int, metrics: dict[str, float]) -> bool:
        return self.rule is not None and bool(self.rule(epoch, metrics))


def train_loop(config: dict[str, Any]) -> Any:
    """Ray Train's train_loop_per_worker: one ``fit`` per rank; rank 0's result is Result.return_value."""
    from geodistill.platform.runtime.gpus import hide_unreserved_gpus

    hide_unreserved_gpus()  # a worker with no GPU reserved must not see the node's GPUs
    _quiet_report_log()
    cfg = RunConfig.from_dict(config["cfg"])
    fetch_teacher(cfg)  # a URI teacher: fetched once per node, into its cache
    context = RayTrainWorkerContext(config["run_dir"], rule=config["should_stop"])
    # Libraries print progress to stdout (DeepSpeed does); as logs they belong on stderr, which
    # keeps the driver's stdout clean for results (`geodistill train --json`).
    with contextlib.redirect_stdout(sys.stderr):
        if context.rank != 0:
            return config["fit_fn"](cfg, context=context)
        return tracked_fit(config["fit_fn"], cfg, context, Path(config["run_dir"]))


def _quiet_report_log() -> None:
    """Drop Ray Train's per-worker INFO lines for every report ("Reporting training result N:
    TrainingReport(...)", each rank, each epoch; "Checkpoint successfully created at: ...", rank 0):
    rank 0's epoch line says it. The first logger is named by its file path, so
    ``ray.train.LoggingConfig`` (which sets ``ray.train.*``) cannot reach it. Warnings still print."""
    import importlib
    import logging

    logging.getLogger("ray.train.v2._internal.execution.storage").setLevel(logging.WARNING)
    try:
        module = importlib.import_module("ray.train.v2._internal.execution.context")
    except ImportError:  # another Ray: nothing to quiet
        return
    logging.getLogger(module.__file__).setLevel(logging.WARNING)


def tracked_fit(fit_fn: FitFn, cfg: RunConfig, context: Any, run_dir: Path) -> Any:
    """``fit`` with the run's trackers (``cfg.logger``, see platform/tracking/) seeing every report."""
    from geodistill.platform.tracking import TrackedContext, run_tracker

    tracker = run_tracker(cfg, run_dir)
    if tracker is None:
        return fit_fn(cfg, context=context)
    failed = True
    try:
        result = fit_fn(cfg, context=TrackedContext(context, tracker))
        failed = False
        return result
    finally:
        tracker.close(failed=failed)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)

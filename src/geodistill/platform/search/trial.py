"""The body of one search trial: cost it, then train it in-process or on a TorchTrainer.

``scaling.num_workers``: 0 trains in the trial's own process, N >= 1 on a ``TorchTrainer`` of N
workers. Early stopping without hangs (ray issue #54305: a scheduler stopping a trial that hosts a
``TorchTrainer`` leaks its workers): in-process trials run ``fit`` with a ``TuneTrialContext`` and
ASHA stops them; Ray Train trials run ``run_training`` with a ``RungRule`` as ``should_stop`` and
stop themselves, with no scheduler installed. GFLOPs per query are counted before training
(``models.config_cost``) or read from the table under ``--replay`` (timm never imported); a trial
over the space's ``flops_budget`` reports at once and trains nothing. A Ray Train trial reports
when its run ends (``ray_train_result``), having written its cost to ``<run dir>/trial.json``, so
the row of one the time budget cut is read from its run folder, or from its newest checkpoint on
the storage when that folder is on another machine (``cut_result``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ray
from ray import tune

from geodistill.leaderboard.rows import compute_units
from geodistill.platform.runtime.remote import join_uri
from geodistill.platform.search.disk import TRAINERS_DIR
from geodistill.platform.search.options import SearchOptions
from geodistill.platform.search.plan import SearchPlan

TRIAL_FILE = "trial.json"  # <run dir>/trial.json: a Ray Train trial's cost, written before training
METRICS_FILE = "metrics.jsonl"  # <run dir>/metrics.jsonl: rank 0's epochs (train_worker)

# ---------------------------------------------------------------- inside a trial


class TuneTrialContext:
    """``TrainContext`` for a single-worker trial: ``fit`` reports straight to Tune.

    Every report carries the trial's cost (and the planned epochs), so the searcher and the
    leaderboard callback read GFLOPs from any result, and what it has spent so far: ``compute``
    (epochs x GFLOPs per query), ``wall_seconds`` and ``history`` (every epoch's metrics, JSON:
    ``replay.write_replay_table`` makes a replay table of them). ``should_stop`` is the optional
    rung rule; with ASHA installed the scheduler stops the trial instead.
    """

    def __init__(self, extra: Mapping[str, Any], *, should_stop: Callable | None = None) -> None:
        self.rank, self.world_size = 0, 1
        self.extra = dict(extra)
        self._should_stop = should_stop
        self._restored: tempfile.TemporaryDirectory | None = None
        self.history: list[dict[str, float]] = []

    @functools.cached_property
    def device(self) -> Any:  # asked by fit, not by a replayed trial (which then imports no torch)
        from geodistill.train.context import default_device

        return default_device()

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None = None) -> None:
        checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        result = {**self.extra, **metrics}  # a replayed trial reports its recorded GFLOPs
        self.history.append(
            {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and k != "gflops"}
        )
        epochs = int(result.get("epoch") or len(self.history))
        result["compute"] = compute_units(epochs, float(result.get("gflops") or 0.0))
        result["wall_seconds"] = sum(h.get("epoch_seconds", 0.0) for h in self.history)
        result["history"] = json.dumps(self.history)
        tune.report(result, checkpoint=checkpoint)

    def latest_checkpoint(self) -> Path | None:
        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        self._restored = tempfile.TemporaryDirectory(prefix="geodistill-resume-")
        return Path(checkpoint.to_directory(self._restored.name))

    def should_stop(self, epoch: int, metrics: dict[str, float]) -> bool:
        return bool(self._should_stop and self._should_stop(epoch, metrics))


@dataclasses.dataclass
class TrialSetup:
    """What every trial needs besides its sampled parameters (shipped once via the object store)."""

    plan: SearchPlan
    options: SearchOptions  # ``options.for_trials()``: the driver's callbacks stay behind
    experiment: str
    storage_path: str
    rung_store: Any | None = None  # a RungStore for multi-worker trials (None: no early stopping)


def trial_placement(
    config: dict[str, Any], *, plan: SearchPlan, cpus: float, gpus_per_trial: float | None
) -> tune.PlacementGroupFactory:
    """What one trial reserves (``tune.with_resources`` calls it per trial, with its sampled config)."""
    from geodistill.platform.runtime.gpus import trial_resources

    wanted = trial_resources(plan.config(config), cpus=cpus, gpus_per_trial=gpus_per_trial)
    return tune.PlacementGroupFactory([{k: v for k, v in wanted.items() if v > 0}])


def run_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """The Tune function trainable: compose the trial's RunConfig, cost it, train it, report."""
    from geodistill.models.config import without_backbone_checks
    from geodistill.platform.runtime.gpus import hide_unreserved_gpus, with_gpus_per_trial

    hide_unreserved_gpus()  # before anything initialises CUDA: no reservation, no GPU
    # Every epoch's checkpoint is on the leaderboard row; Ray's per-save INFO line only buries
    # the epoch lines the driver forwards.
    for name in ("ray.train._internal.storage", "ray.train.v2._internal.execution.storage"):
        logging.getLogger(name).setLevel(logging.WARNING)
    trial_id = tune.get_context().get_trial_id()
    options, metric = setup.options, setup.plan.metric
    # A replayed trial builds no model: its config skips the checks that ask timm (the driver
    # composed and checked the same config when it placed the trial) and its cost is the table's.
    with without_backbone_checks() if options.replay else contextlib.nullcontext():
        cfg = with_gpus_per_trial(setup.plan.config(config), options.gpus_per_trial)
    cfg.experiment, cfg.run_name = setup.experiment, trial_id
    cfg.logger = []  # a search tracks its trials from the driver (Tune's logger callbacks)
    # The node goes on every report (and so on the row): which node ran it, after any retry.
    node_id = ray.get_runtime_context().get_node_id()
    if options.replay:
        from geodistill.platform.search.replay import config_values, load_table

        table = load_table(options.replay)
        cost = table.cost(config_values(cfg, table.knobs))
    else:
        from geodistill.models.cost import config_cost

        cost = config_cost(cfg.model, cfg.data.views)
    extra = {
        **{k: v for k, v in cost.items() if v is not None},
        "epochs_planned": cfg.train.epochs,
        "node_id": node_id,
    }
    extra["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES", "")  # which GPUs it was given
    budget = setup.plan.space.flops_budget
    if budget is not None and extra["gflops"] > budget:
        # Refused before any training: reported once so Optuna gets both objectives.
        tune.report({metric: 0.0, "epoch": 0, "over_budget": 1, **extra})
        return
    rule = None
    if setup.rung_store is not None:
        from geodistill.platform.search.rung import RungRule

        rule = RungRule(
            setup.rung_store,
            trial_id=trial_id,
            metric=metric,
            grace_period=options.grace_period,
            reduction_factor=options.reduction_factor,
            max_t=cfg.train.epochs,
            cost=extra["gflops"],  # multi-objective: (metric, GFLOPs), as ParetoASHA decides
        )
    if cfg.scaling.in_process:  # fit runs right here, in the trial's own process
        if cfg.distill.teacher_checkpoint:  # a URI teacher: this node's cached copy
            from geodistill.platform.runtime.remote import resolve_teacher

            cfg.distill.teacher_checkpoint = resolve_teacher(cfg.distill.teacher_checkpoint, fetch=True)
        context = TuneTrialContext(extra, should_stop=rule)
        objective = options.objective
        if objective is None:
            from geodistill.eval import fit_evaluated as objective
        objective(cfg, context=context)
        return
    # Ray Train: a TorchTrainer inside the trial, stopped only by its own rung rule.
    from geodistill.platform.runtime.train_driver import prepare_config, run_training
    from geodistill.platform.runtime.train_worker import atomic_write_text

    trainers = join_uri(setup.storage_path, setup.experiment, TRAINERS_DIR)
    cfg = prepare_config(cfg)
    run_dir = Path(cfg.output_dir) / cfg.run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / TRIAL_FILE, json.dumps(extra, sort_keys=True) + "\n")  # for cut_result
    started = time.monotonic()
    result = run_training(
        cfg, storage_path=trainers, should_stop=rule, fit_fn=options.objective, prepared=True
    )
    tune.report(
        ray_train_result(
            extra,
            result.metrics,
            epochs=result.epochs_done,
            wall_seconds=time.monotonic() - started,
            checkpoint=str(result.checkpoint) if result.checkpoint else None,
            stopped_early=result.stopped_early,
        )
    )


def ray_train_result(
    extra: Mapping[str, Any],
    metrics: Mapping[str, Any],
    *,
    epochs: int,
    wall_seconds: float | None,
    checkpoint: str | None,
    stopped_early: bool,
) -> dict[str, Any]:
    """A Ray Train trial's result: its metrics, its cost (``extra``) and what it spent, as a
    single-worker trial reports them (compute units, seconds), and the checkpoint its row names."""
    return {
        **metrics,
        **extra,
        "epoch": epochs,
        "compute": compute_units(epochs, float(extra.get("gflops") or 0.0)),
        "wall_seconds": wall_seconds,
        "stopped_early": int(stopped_early),
        "checkpoint_uri": checkpoint,
    }


def cut_result(cfg: Any, trial_id: str, storage: str, experiment: str) -> dict[str, Any]:
    """The result of a Ray Train trial that ended without reporting one (the search's time budget
    cut it), read from its run folder ``<cfg.output_dir>/<trial_id>``: the last evaluated epoch's
    metrics (none before the first evaluation), the epochs trained, its cost (``trial.json``) and the
    checkpoint its run kept for that epoch under ``<storage>/<experiment>/trainers/<trial_id>``, if
    any. When the folder is not on this machine (another node's disk, or a relative ``output_dir``),
    from the newest complete checkpoint there instead (``_checkpointed``). ``{}`` when neither holds
    an epoch."""
    trained = join_uri(storage, experiment, TRAINERS_DIR, trial_id)
    run_dir = Path(cfg.output_dir) / trial_id
    return (_from_run_dir(run_dir, trained) if run_dir.is_absolute() else {}) or _checkpointed(cfg, trained)


def _from_run_dir(run_dir: Path, trained: str) -> dict[str, Any]:
    from geodistill.eval.names import METRIC_KEYS

    try:
        extra = json.loads((run_dir / TRIAL_FILE).read_text())
        lines = (run_dir / METRICS_FILE).read_text().splitlines()
    except (OSError, ValueError):
        return {}
    epochs = []
    for line in lines:
        with contextlib.suppress(ValueError):  # a line cut mid-write
            epochs.append(json.loads(line))
    epochs = [e for e in epochs if isinstance(e, dict) and "epoch" in e]
    if not epochs:
        return {}
    evaluated = [e for e in epochs if any(k in e for k in METRIC_KEYS)]
    last = evaluated[-1] if evaluated else {}
    checkpoint = join_uri(trained, f"epoch_{int(last['epoch']):04d}") if last else None
    latest = {k: v for k, v in epochs[-1].items() if k not in METRIC_KEYS}
    return ray_train_result(
        extra,
        {**latest, **{k: last[k] for k in METRIC_KEYS if k in last}},
        epochs=max(int(e["epoch"]) for e in epochs),
        wall_seconds=sum(float(e.get("epoch_seconds", 0.0)) for e in epochs),
        checkpoint=checkpoint if checkpoint and _complete(checkpoint) else None,
        stopped_early=True,  # cut: labelled stopped, whichever epoch it reached
    )


def _checkpointed(cfg: Any, trained: str) -> dict[str, Any]:
    """A cut trial's result from the newest complete ``epoch_NNNN`` under ``trained`` (a path or
    URI the driver reads). Its ``meta.json`` holds that epoch's metrics (the precision only if the
    epoch was evaluated: ``train.eval_every``) but not the cost, counted here as the trial counted
    it (``config_cost`` of the same config); epochs and compute count the epochs checkpointed (one
    cut before its checkpoint landed is not), and the wall seconds and node are unknown (null)."""
    from geodistill.errors import UserError
    from geodistill.models.cost import config_cost
    from geodistill.platform.runtime.remote import locate_checkpoint

    try:
        found, meta = locate_checkpoint(trained)
        epoch, metrics = int(meta["epoch"]), dict(meta.get("metrics") or {})
    except (UserError, LookupError, TypeError, ValueError):  # none there, or an unreachable store
        return {}
    return ray_train_result(
        config_cost(cfg.model, cfg.data.views),
        metrics,
        epochs=epoch,
        wall_seconds=None,
        checkpoint=found,
        stopped_early=True,
    )


def _complete(checkpoint: str) -> bool:
    """``checkpoint`` (a local path or URI) is a complete checkpoint: its ``meta.json``, written last, is there."""
    from geodistill.errors import UserError
    from geodistill.platform.runtime.remote import is_uri, open_uri

    if not is_uri(checkpoint):
        return (Path(checkpoint) / "meta.json").is_file()
    try:
        fs, path = open_uri(checkpoint)
        return bool(fs.get_file_info(f"{path.rstrip('/')}/meta.json").is_file)
    except (OSError, ValueError, UserError):  # an unreachable store: the row names no checkpoint
        return False

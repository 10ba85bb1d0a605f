"""The training loop of both stages: plain PyTorch, one process per rank, any runner.

``fit(cfg, context=...)`` builds the data (a synthetic UniV when ``cfg.data.root`` is None),
the model (and the frozen teacher for stage 2), wraps them with the configured strategy,
resumes from ``context.latest_checkpoint()``, and then each epoch trains, evaluates on rank 0,
writes a checkpoint to a scratch directory, hands it to ``context.report`` (every rank reports;
rank 0 passes the checkpoint) and asks ``context.should_stop`` (rank 0's answer wins).

Batches hold distinct buildings (in-batch negatives for InfoNCE and relation KD): each global
batch of ``data.batch_size`` buildings is split evenly over the ranks. Every sample is seeded
by (train seed, epoch, index), so a run is reproducible, resumes exactly, and the teacher's
outputs can be cached (see teacher_cache.py).
"""

from __future__ import annotations

import contextlib
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from geodistill.errors import ConfigError, UserError
from geodistill.models import GeoModel, load_state_dict, model_from_config
from geodistill.models.cost import train_sample_gflops
from geodistill.models.weights_io import file_sha256, match_state_dict

# dataset_root and open_dataset stay importable from here too (benchmarks use this path).
from geodistill.train.batches import TrainData, prepare_data
from geodistill.train.checkpoint import (
    MODEL_FILE,
    load_checkpoint,
    load_train_state,
    read_meta,
    resolve_checkpoint,
    save_checkpoint,
    scratch_checkpoint_dir,
)
from geodistill.train.config import RunConfig
from geodistill.train.context import TrainContext
from geodistill.train.steps import LOSS_KEYS, TrainModule, build_adapters, build_optimizer, build_scheduler
from geodistill.train.strategies import prepare_module, wrap
from geodistill.train.teacher_cache import TeacherOutputs, cache_key, dataset_hash
from geodistill.train.wrapped import Wrapped, check_strategy

REPORTED_LOSSES = ("loss", "loss_task", "loss_logit", "loss_feature", "loss_relation")  # METRIC KEYS


class TrainingDiverged(UserError):
    """The loss became NaN/inf; the run stops and the last good checkpoint stays."""


@dataclass
class TrainResult:
    epochs_done: int  # epochs completed (1-based count)
    metrics: dict[str, float]  # last report's metrics (flat, see METRIC KEYS)
    checkpoint: Path | str | None  # last persisted checkpoint dir (a URI on URI storage), else None
    stopped_early: bool  # context.should_stop said so
    skipped_media: int


# ---------------------------------------------------------------------------- helpers


def _broadcast(value: Any, world: int) -> Any:
    """Rank 0's ``value`` on every rank (identity without a process group)."""
    if world <= 1 or not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _all_reduce_sum(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1 and dist.is_initialized():
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def load_teacher(cfg: RunConfig, device: torch.device) -> tuple[GeoModel, str]:
    """The frozen stage-1 model and its weights' sha256 (the cache key's first part)."""
    path = cfg.distill.teacher_checkpoint
    if not path:
        raise ConfigError("stage=student needs distill.teacher_checkpoint (a stage-1 checkpoint)")
    teacher, meta = load_checkpoint(path)
    target = resolve_checkpoint(path)
    sha = meta.get("model_sha256") or file_sha256(target if target.is_file() else target / MODEL_FILE)
    teacher.to(device).eval()
    teacher.requires_grad_(False)
    return teacher, sha


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def _restore_rng(state: dict[str, Any] | None) -> None:
    if not state:
        return
    if state.get("torch") is not None:
        torch.set_rng_state(state["torch"])
    if state.get("python") is not None:
        random.setstate(state["python"])


def _resume_weights(module: TrainModule, ckpt: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Load a checkpoint's model (+ adapters) weights into ``module``; return (meta, train_state)."""
    meta = read_meta(ckpt)
    state = load_state_dict(ckpt / MODEL_FILE)
    match_state_dict(module.model.state_dict(), state, what=f"resume from {ckpt}")
    module.model.load_state_dict(state, strict=True)
    train_state = load_train_state(ckpt)
    if train_state and module.adapters is not None and train_state.get("adapters") is not None:
        module.adapters.load_state_dict(train_state["adapters"])
    return meta, train_state


def _progress(epoch: int, epochs: int, m: dict[str, float], samples: int) -> str:
    parts = " ".join(
        f"{k[5:]} {m[k]:.3f}"
        for k in ("loss_task", "loss_logit", "loss_feature", "loss_relation")
        if m.get(k)
    )
    line = f"epoch {epoch}/{epochs} loss {m['loss']:.4f} ({parts})"
    recalls = [f"{k[:3]} {m[k]:.1f}" for k in ("d2s_recall1", "s2d_recall1") if k in m]
    if recalls:
        line += " | R@1 " + " ".join(recalls)
    secs = m["epoch_seconds"]
    eta = (epochs - epoch) * secs  # the epochs left at this epoch's pace
    return line + f" | {samples / max(secs, 1e-9):.1f} samples/s, {secs:.1f}s, ETA {eta:.0f}s"


# ---------------------------------------------------------------------------- fit


def fit(
    cfg: RunConfig,
    *,
    context: TrainContext,
    evaluate_fn: Callable[[GeoModel, int], dict[str, float]] | None = None,
) -> TrainResult:
    """Train ``cfg.stage`` for ``cfg.train.epochs`` epochs (resuming if the context has a checkpoint).

    ``evaluate_fn(model, epoch) -> metrics`` judges rank 0's model after the epochs
    ``train.eval_every`` selects; None trains without evaluation. The platform passes
    ``geodistill.eval.epoch_evaluator(cfg)`` (or calls ``geodistill.eval.fit_evaluated``).

    The steps below, in order: check the runner, build the data, the teacher (stage 2) and the
    model, resume, wrap with the strategy, then per epoch train, sum over ranks, evaluate and
    checkpoint on rank 0, report, and ask whether to stop.
    """
    cfg.validate()
    rank, world, device = context.rank, context.world_size, context.device
    if world > 1 and not (dist.is_available() and dist.is_initialized()):
        raise ConfigError(f"world size {world} needs an initialised torch.distributed process group")
    check_strategy(cfg, device)

    data = prepare_data(cfg, rank=rank, world=world)
    teacher, teacher_outputs = _prepare_teacher(cfg, data, device)
    # Identical initialisation on every rank (DDP would broadcast it anyway).
    torch.manual_seed(cfg.train.seed)
    model = model_from_config(cfg.model, len(data.class_map))
    adapters = build_adapters(model, teacher, cfg) if teacher is not None else None
    module = TrainModule(model, cfg, adapters).to(device)
    start_epoch, metrics, train_state = _resume(module, context)
    wrapped = _wrap_for_training(module, cfg, context, data, train_state)
    evaluate = evaluate_fn if rank == 0 else None  # rank 0 judges; None: no evaluation
    sample_cost = _train_sample_gflops(cfg, data, teacher, teacher_outputs)

    epochs_done, stopped_early = start_epoch, False
    skipped_total = int(train_state.get("skipped_media", 0)) if train_state else 0
    for epoch in range(start_epoch + 1, cfg.train.epochs + 1):
        start = time.perf_counter()
        data.sampler.set_epoch(epoch)
        data.samples.set_epoch(epoch)
        local = _train_epoch(
            wrapped,
            data.loader,
            teacher_outputs,
            epoch=epoch,
            steps=data.steps_per_epoch,
            device=device,
            world=world,
        )
        metrics, skipped_total, n_samples = _epoch_metrics(epoch, *local, skipped_total, world=world)
        metrics.update(train_samples=float(n_samples), train_sample_gflops=sample_cost)
        _evaluate_checkpoint_and_report(
            wrapped, cfg, context, metrics, epoch=epoch, evaluate=evaluate, start=start, n_samples=n_samples
        )
        epochs_done = epoch
        if _should_stop(context, epoch, metrics):
            stopped_early = epoch < cfg.train.epochs
            break

    checkpoint = context.latest_checkpoint() if rank == 0 else None
    return TrainResult(
        epochs_done=epochs_done,
        metrics=metrics,
        checkpoint=Path(checkpoint) if checkpoint is not None else None,
        stopped_early=stopped_early,
        skipped_media=skipped_total,
    )


def _prepare_teacher(
    cfg: RunConfig, data: TrainData, device: torch.device
) -> tuple[GeoModel | None, TeacherOutputs | None]:
    """Stage 2: the frozen teacher and its (optionally cached) outputs; stage 1: (None, None)."""
    if cfg.stage != "student":
        return None, None
    teacher, teacher_sha = load_teacher(cfg, device)
    if cfg.distill.w_logit > 0 and teacher.num_classes != len(data.class_map):
        raise ConfigError(
            f"teacher has {teacher.num_classes} classes but the training set {len(data.class_map)}; "
            "logit KD needs the same buildings (set distill.w_logit=0 or use a matching teacher)"
        )
    cache_dir = None
    if cfg.distill.cache_teacher:
        key = cache_key(
            teacher_sha=teacher_sha,
            data_hash=dataset_hash(data.index),
            elevation=cfg.data.elevation,
            fps=cfg.data.fps,
            views=cfg.data.views,
            teacher_views=data.teacher_views or cfg.data.views,
            img_size=cfg.data.img_size,
            seed=cfg.train.seed,
            image=data.image,
        )
        cache_dir = Path(cfg.output_dir) / "teacher_cache" / key
    return teacher, TeacherOutputs(teacher, cache_dir, image=data.image)


def _train_sample_gflops(
    cfg: RunConfig, data: TrainData, teacher: GeoModel | None, outputs: TeacherOutputs | None
) -> float:
    """Training GFLOPs per sample (``models.cost.train_sample_gflops``); a cached teacher costs 0."""
    runs = teacher is not None and outputs is not None and outputs.cache_dir is None
    taught = (teacher.cfg, data.teacher_views or cfg.data.views) if runs else None
    return train_sample_gflops(cfg.model, cfg.data.views, taught)


def _resume(
    module: TrainModule, context: TrainContext
) -> tuple[int, dict[str, float], dict[str, Any] | None]:
    """(epochs already done, their last metrics, the saved train state) from the context's checkpoint."""
    resume_from = context.latest_checkpoint()
    if resume_from is None:
        return 0, {}, None
    meta, train_state = _resume_weights(module, Path(resume_from))
    return int(meta["epoch"]), dict(meta.get("metrics", {})), train_state


def _wrap_for_training(
    module: TrainModule,
    cfg: RunConfig,
    context: TrainContext,
    data: TrainData,
    train_state: dict[str, Any] | None,
) -> Wrapped:
    """Optimizer, schedule and strategy around ``module``; a resumed run gets its state and RNG back."""
    prepare_module(module, cfg)
    optimizer = build_optimizer(module, cfg)
    scheduler = build_scheduler(optimizer, cfg, data.total_optimizer_steps)
    wrapped = wrap(module, optimizer, cfg, context, scheduler=scheduler, micro_batch=data.sampler.per_rank)
    if train_state:
        wrapped.load_state(train_state)
        _restore_rng(train_state.get("rng"))
    return wrapped


def _epoch_metrics(
    epoch: int,
    sums: torch.Tensor,
    steps: int,
    skipped: int,
    n_samples: int,
    skipped_total: int,
    *,
    world: int,
) -> tuple[dict[str, float], int, int]:
    """Sum one epoch's counts over the ranks: (mean losses per step, skipped media so far, samples)."""
    totals = _all_reduce_sum(
        torch.cat([sums, torch.tensor([steps, skipped, n_samples], dtype=torch.float64)]), world
    )
    n_steps = max(1.0, float(totals[len(LOSS_KEYS)]))
    skipped_total += int(totals[len(LOSS_KEYS) + 1])
    metrics = {"epoch": float(epoch)}
    metrics.update({k: float(totals[i]) / n_steps for i, k in enumerate(LOSS_KEYS) if k in REPORTED_LOSSES})
    metrics["skipped_media"] = float(skipped_total)
    return metrics, skipped_total, int(totals[-1])


def _evaluate_checkpoint_and_report(
    wrapped: Wrapped,
    cfg: RunConfig,
    context: TrainContext,
    metrics: dict[str, float],
    *,
    epoch: int,
    evaluate: Callable[[GeoModel, int], dict[str, float]] | None,
    start: float,
    n_samples: int,
) -> None:
    """Rank 0 evaluates (when due) and writes a scratch checkpoint; every rank reports ``metrics``.

    Sharded strategies gather the weights collectively first, so every rank calls this.
    """
    t = cfg.train
    full_state = wrapped.full_state_dict()
    ckpt_dir = None
    if context.rank == 0:
        inner = wrapped.unwrap()
        if evaluate is not None and (epoch % t.eval_every == 0 or epoch == t.epochs):
            # Evaluation draws random numbers (loader seeds, a model copy's init): keep them
            # out of training's stream, so strategies and resumed runs see the same dropout.
            with torch.random.fork_rng(devices=[]):
                eval_model = _eval_model(inner.model, full_state, cfg)
                metrics.update({k: float(v) for k, v in evaluate(eval_model, epoch).items()})
            inner.model.train()
        metrics["epoch_seconds"] = time.perf_counter() - start
        ckpt_dir = scratch_checkpoint_dir()
        save_checkpoint(
            ckpt_dir,
            inner.model,
            config=cfg,
            metrics=metrics,
            epoch=epoch,
            state_dict=full_state,
            optimizer_state={
                **wrapped.state(),
                "adapters": wrapped.adapters_state_dict(),
                "rng": _rng_state(),
                "epoch": epoch,
                "skipped_media": int(metrics["skipped_media"]),
            },
        )
        print(_progress(epoch, t.epochs, metrics, n_samples), file=sys.stderr, flush=True)
    else:
        metrics["epoch_seconds"] = time.perf_counter() - start
    try:
        context.report(metrics, ckpt_dir)
    finally:
        if ckpt_dir is not None:
            shutil.rmtree(ckpt_dir, ignore_errors=True)


def _should_stop(context: TrainContext, epoch: int, metrics: dict[str, float]) -> bool:
    """Rank 0 asks the context; every rank gets its answer."""
    stop = context.should_stop(epoch, metrics) if context.rank == 0 else False
    return bool(_broadcast(bool(stop), context.world_size))


def _eval_model(model: GeoModel, full_state: dict[str, torch.Tensor], cfg: RunConfig) -> GeoModel:
    """The model to evaluate: itself, or under DeepSpeed (which shards, casts and reshapes
    parameters) an fp32 copy holding the gathered weights."""
    if cfg.train.strategy == "deepspeed":
        copy = model_from_config(model.cfg, model.num_classes)
        copy.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in full_state.items()})
        return copy.to(next(iter(full_state.values())).device)
    return model


def _train_epoch(
    wrapped: Wrapped,
    loader: DataLoader,
    teacher_outputs: TeacherOutputs | None,
    *,
    epoch: int,
    steps: int,
    device: torch.device,
    world: int,
) -> tuple[torch.Tensor, int, int, int]:
    """One pass; returns (sum of each LOSS_KEYS part [float64], micro-steps, skipped media, samples)."""
    wrapped.train(True)
    sums = torch.zeros(len(LOSS_KEYS), dtype=torch.float64)
    done = skipped = n_samples = 0
    for batch in loader:
        if done >= steps:
            break
        drone = batch["drone"].to(device, non_blocking=True)  # [B,V,3,H,W]
        satellite = batch["satellite"].to(device, non_blocking=True)  # [B,3,H,W]
        labels = batch["label"].to(device)  # [B]
        targets = None
        if teacher_outputs is not None:
            # stage 2 with distill.teacher_views: the teacher's own frames [B,V_t,3,H,W]
            teacher_drone = batch["teacher_drone"].to(device) if "teacher_drone" in batch else drone
            targets = teacher_outputs(
                teacher_drone, satellite, epoch=epoch, indices=batch["index"].tolist(), device=device
            )
        loss, parts = wrapped.forward(drone, satellite, labels, targets)
        finite = torch.isfinite(loss.detach()).to(torch.float64).reshape(1).cpu()
        if float(_all_reduce_sum(finite, world)) < world:
            raise TrainingDiverged(
                f"loss became non-finite at epoch {epoch} step {done + 1} "
                f"({', '.join(f'{k}={float(v):.4g}' for k, v in parts.items())}); the last good checkpoint is kept"
            )
        wrapped.backward(loss)
        wrapped.step()
        sums += torch.tensor([float(parts[k]) for k in LOSS_KEYS], dtype=torch.float64)
        done += 1
        skipped += int(batch["skipped"].sum())
        n_samples += int(labels.shape[0])
    with contextlib.suppress(Exception):
        wrapped.zero_grad()
    return sums, done, skipped, n_samples

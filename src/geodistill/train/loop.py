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
import fcntl
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from geodistill.data import BuildingBatchSampler, DatasetIndex, TrainPairDataset, generate_univ, open_index
from geodistill.errors import ConfigError, UserError
from geodistill.models import GeoModel, image_config, load_state_dict, model_from_config
from geodistill.models.weights_io import file_sha256, match_state_dict
from geodistill.train.checkpoint import (
    MODEL_FILE,
    load_checkpoint,
    load_train_state,
    read_meta,
    resolve_checkpoint,
    save_checkpoint,
)
from geodistill.train.config import RunConfig
from geodistill.train.context import TrainContext
from geodistill.train.steps import LOSS_KEYS, TrainModule, build_adapters, build_optimizer, build_scheduler
from geodistill.train.strategies import Wrapped, check_strategy, prepare_module, wrap
from geodistill.train.teacher_cache import TeacherOutputs, cache_key, dataset_hash

REPORTED_LOSSES = ("loss", "loss_task", "loss_logit", "loss_feature", "loss_relation")  # METRIC KEYS
SYNTH_TILE_PX = 64  # synthetic tiles are drawn at max(64, img_size) px


class TrainingDiverged(UserError):
    """The loss became NaN/inf; the run stops and the last good checkpoint stays."""


@dataclass
class TrainResult:
    epochs_done: int  # epochs completed (1-based count)
    metrics: dict[str, float]  # last report's metrics (flat, see METRIC KEYS)
    checkpoint: Path | None  # last persisted checkpoint dir if the context knows it, else None
    stopped_early: bool  # context.should_stop said so
    skipped_media: int


# ---------------------------------------------------------------------------- data


def dataset_root(cfg: RunConfig) -> Path:
    """``cfg.data.root``, or the synthetic UniV for (buildings, seed), generated once per output_dir.

    Concurrent runs (ranks, Tune trials) serialise on a lock file; the set is written to a
    temporary folder and renamed into place, so a reader never sees half a dataset.
    """
    if cfg.data.root is not None:
        root = Path(cfg.data.root)
        if not root.exists():
            raise ConfigError(f"data.root does not exist: {root}")
        return root
    px = max(SYNTH_TILE_PX, cfg.data.img_size)
    name = f"synth_{cfg.data.synth_buildings}_{cfg.data.synth_seed}" + (
        "" if px == SYNTH_TILE_PX else f"_{px}px"
    )
    parent = Path(cfg.output_dir) / "data"
    root = parent / name
    if root.is_dir():
        return root
    parent.mkdir(parents=True, exist_ok=True)
    with open(parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not root.is_dir():
                tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp", dir=parent))
                generate_univ(tmp, buildings=cfg.data.synth_buildings, seed=cfg.data.synth_seed, img_size=px)
                os.rename(tmp, root)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return root


def open_dataset(cfg: RunConfig) -> DatasetIndex:
    return open_index(dataset_root(cfg), elevation=cfg.data.elevation, fps=cfg.data.fps)


class SeededSamples(Dataset):
    """Each sample drawn under torch's RNG seeded by (seed, epoch, index); adds "index" and "skipped"."""

    def __init__(self, dataset: TrainPairDataset, *, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        before = self.dataset.skipped_media
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + self.epoch) * 1_000_033 + i)
            sample = self.dataset[i]
        return {**sample, "index": i, "skipped": self.dataset.skipped_media - before}


class RankBatchSampler(Sampler[list[int]]):
    """Global batches of distinct buildings (BuildingBatchSampler), split into equal per-rank slices."""

    def __init__(
        self, dataset: TrainPairDataset, global_batch: int, *, seed: int, rank: int, world: int
    ) -> None:
        self.per_rank = global_batch // world
        self.rank = rank
        self.base = BuildingBatchSampler(dataset, self.per_rank * world, seed=seed, drop_last=True)

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.base:
            yield batch[self.rank * self.per_rank : (self.rank + 1) * self.per_rank]

    def __len__(self) -> int:
        return len(self.base)


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
    """
    cfg.validate()
    rank, world, device = context.rank, context.world_size, context.device
    if world > 1 and not (dist.is_available() and dist.is_initialized()):
        raise ConfigError(f"world size {world} needs an initialised torch.distributed process group")
    t = cfg.train
    check_strategy(cfg, device)

    # Data: rank 0 synthesises first so the other ranks just open it.
    if rank == 0:
        dataset_root(cfg)
    if world > 1:
        dist.barrier()
    index = open_dataset(cfg)
    class_map = index.class_map()
    teacher_views = cfg.distill.teacher_views if cfg.stage == "student" else None
    # The student's normalisation and interpolation (its backbone's timm data config); a
    # teacher with another normalisation re-maps the batch (TeacherOutputs).
    image = image_config(cfg.model.backbone)
    train_set = TrainPairDataset(
        index,
        views=cfg.data.views,
        teacher_views=teacher_views,
        img_size=cfg.data.img_size,
        class_map=class_map,
        train=True,
        image=image,
    )
    n_buildings = len(set(train_set.buildings))
    global_batch = min(cfg.data.batch_size, n_buildings)
    if global_batch < world:
        raise ConfigError(
            f"data.batch_size ({cfg.data.batch_size}) over {n_buildings} training buildings leaves "
            f"fewer than one building per rank ({world} ranks)"
        )
    samples = SeededSamples(train_set, seed=t.seed)
    sampler = RankBatchSampler(train_set, global_batch, seed=t.seed, rank=rank, world=world)
    loader = DataLoader(samples, batch_sampler=sampler, num_workers=cfg.data.loader_workers)
    steps_per_epoch = (
        len(sampler) if t.max_steps_per_epoch is None else min(len(sampler), t.max_steps_per_epoch)
    )
    if steps_per_epoch < t.grad_accum:
        raise ConfigError(
            f"train.grad_accum ({t.grad_accum}) exceeds the {steps_per_epoch} steps of an epoch "
            f"({n_buildings} buildings, batch {global_batch})"
        )
    steps_per_epoch -= steps_per_epoch % t.grad_accum  # whole accumulation cycles only
    total_optimizer_steps = max(1, steps_per_epoch // t.grad_accum * t.epochs)

    # Models: identical initialisation on every rank (DDP would broadcast it anyway).
    teacher_outputs = None
    teacher = None
    if cfg.stage == "student":
        teacher, teacher_sha = load_teacher(cfg, device)
        if cfg.distill.w_logit > 0 and teacher.num_classes != len(class_map):
            raise ConfigError(
                f"teacher has {teacher.num_classes} classes but the training set {len(class_map)}; "
                "logit KD needs the same buildings (set distill.w_logit=0 or use a matching teacher)"
            )
        cache_dir = None
        if cfg.distill.cache_teacher:
            key = cache_key(
                teacher_sha=teacher_sha,
                data_hash=dataset_hash(index),
                elevation=cfg.data.elevation,
                fps=cfg.data.fps,
                views=cfg.data.views,
                teacher_views=teacher_views or cfg.data.views,
                img_size=cfg.data.img_size,
                seed=t.seed,
                image=image,
            )
            cache_dir = Path(cfg.output_dir) / "teacher_cache" / key
        teacher_outputs = TeacherOutputs(teacher, cache_dir, image=image)
    torch.manual_seed(t.seed)
    model = model_from_config(cfg.model, len(class_map))
    adapters = build_adapters(model, teacher, cfg) if teacher is not None else None
    module = TrainModule(model, cfg, adapters).to(device)

    start_epoch, train_state, metrics = 0, None, {}
    resume_from = context.latest_checkpoint()
    if resume_from is not None:
        meta, train_state = _resume_weights(module, Path(resume_from))
        start_epoch, metrics = int(meta["epoch"]), dict(meta.get("metrics", {}))
    prepare_module(module, cfg)
    optimizer = build_optimizer(module, cfg)
    scheduler = build_scheduler(optimizer, cfg, total_optimizer_steps)
    wrapped = wrap(module, optimizer, cfg, context, scheduler=scheduler, micro_batch=sampler.per_rank)
    if train_state:
        wrapped.load_state(train_state)
        _restore_rng(train_state.get("rng"))
    evaluate = evaluate_fn if rank == 0 else None  # rank 0 judges; None: no evaluation

    epochs_done, stopped_early, skipped_total = start_epoch, False, 0
    if train_state:
        skipped_total = int(train_state.get("skipped_media", 0))
    for epoch in range(start_epoch + 1, t.epochs + 1):
        start = time.perf_counter()
        sampler.set_epoch(epoch)
        samples.set_epoch(epoch)
        sums, steps, skipped, n_samples = _train_epoch(
            wrapped, loader, teacher_outputs, epoch=epoch, steps=steps_per_epoch, device=device, world=world
        )
        totals = _all_reduce_sum(
            torch.cat([sums, torch.tensor([steps, skipped, n_samples], dtype=torch.float64)]), world
        )
        n_steps = max(1.0, float(totals[len(LOSS_KEYS)]))
        skipped_total += int(totals[len(LOSS_KEYS) + 1])
        metrics = {"epoch": float(epoch)}
        metrics.update(
            {k: float(totals[i]) / n_steps for i, k in enumerate(LOSS_KEYS) if k in REPORTED_LOSSES}
        )
        metrics["skipped_media"] = float(skipped_total)

        # Evaluate + checkpoint. Sharded strategies gather the weights collectively first.
        full_state = wrapped.full_state_dict()
        ckpt_dir = None
        if rank == 0:
            inner = wrapped.unwrap()
            if evaluate is not None and (epoch % t.eval_every == 0 or epoch == t.epochs):
                # Evaluation draws random numbers (loader seeds, a model copy's init): keep them
                # out of training's stream, so strategies and resumed runs see the same dropout.
                with torch.random.fork_rng(devices=[]):
                    eval_model = _eval_model(inner.model, full_state, cfg)
                    metrics.update({k: float(v) for k, v in evaluate(eval_model, epoch).items()})
                inner.model.train()
            metrics["epoch_seconds"] = time.perf_counter() - start
            ckpt_dir = Path(tempfile.mkdtemp(prefix="geodistill-ckpt-"))
            adapters_state = wrapped.adapters_state_dict()
            save_checkpoint(
                ckpt_dir,
                inner.model,
                config=cfg,
                metrics=metrics,
                epoch=epoch,
                state_dict=full_state,
                optimizer_state={
                    **wrapped.state(),
                    "adapters": adapters_state,
                    "rng": _rng_state(),
                    "epoch": epoch,
                    "skipped_media": skipped_total,
                },
            )
            print(_progress(epoch, t.epochs, metrics, int(totals[-1])), file=sys.stderr, flush=True)
        else:
            metrics["epoch_seconds"] = time.perf_counter() - start
        try:
            context.report(metrics, ckpt_dir)
        finally:
            if ckpt_dir is not None:
                shutil.rmtree(ckpt_dir, ignore_errors=True)
        epochs_done = epoch
        stop = context.should_stop(epoch, metrics) if rank == 0 else False
        if _broadcast(bool(stop), world):
            stopped_early = epoch < t.epochs
            break

    checkpoint = context.latest_checkpoint() if rank == 0 else None
    return TrainResult(
        epochs_done=epochs_done,
        metrics=metrics,
        checkpoint=Path(checkpoint) if checkpoint is not None else None,
        stopped_early=stopped_early,
        skipped_media=skipped_total,
    )


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

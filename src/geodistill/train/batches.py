"""The training set as the loop reads it: where it lives, and its seeded, per-rank batches.

``dataset_root`` finds (or synthesises once per output_dir) the data; ``SeededSamples`` draws
every sample under a seed of (train seed, epoch, index), so a run is reproducible, resumes
exactly, and the teacher's outputs can be cached; ``RankBatchSampler`` splits each global batch
of distinct buildings evenly over the ranks (in-batch negatives for InfoNCE and relation KD).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from geodistill.data import BuildingBatchSampler, DatasetIndex, TrainPairDataset, generate_univ, open_index
from geodistill.errors import ConfigError
from geodistill.models import image_config
from geodistill.train.config import RunConfig

SYNTH_TILE_PX = 64  # synthetic tiles are drawn at max(64, img_size) px


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


@dataclass
class TrainData:
    """What the epochs read: the index, the loader with its samplers, and the epoch's length."""

    index: DatasetIndex
    class_map: dict[str, int]
    image: Any  # the student's timm data config (normalisation, interpolation)
    teacher_views: int | None  # frames per video the teacher sees (stage 2), None: data.views
    samples: SeededSamples
    sampler: RankBatchSampler
    loader: DataLoader
    steps_per_epoch: int  # micro-steps, whole accumulation cycles only
    total_optimizer_steps: int


def prepare_data(cfg: RunConfig, *, rank: int, world: int) -> TrainData:
    """Open (rank 0 first synthesises) the training set and build the per-rank batch loader."""
    t = cfg.train
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
    return TrainData(
        index=index,
        class_map=class_map,
        image=image,
        teacher_views=teacher_views,
        samples=samples,
        sampler=sampler,
        loader=loader,
        steps_per_epoch=steps_per_epoch,
        total_optimizer_steps=max(1, steps_per_epoch // t.grad_accum * t.epochs),
    )

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
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from geodistill.data import BuildingBatchSampler, DatasetIndex, TrainPairDataset, generate_univ, open_index
from geodistill.errors import ConfigError
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

"""Frozen-teacher outputs cached on disk, so a search computes them once for all its student trials.

Every training sample is a pure function of (train seed, epoch, dataset index), so the
teacher's output for it is too: the cache stores one small safetensors file per (epoch,
sample) under ``<output_dir>/teacher_cache/<key>/``, where ``cache_key`` hashes everything
else that changes the teacher's input or weights. Students keep their random frame offsets and
augmentation; a trial with another train seed, or more epochs than the cache holds, misses and
just runs the teacher. The design and its trade-off: docs/design.md, "Teacher cache".
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from geodistill.data import IMAGENET, DatasetIndex, ImageConfig, renormalize
from geodistill.train.steps import TeacherTargets

CACHE_FORMAT = "geodistill-teacher-cache/1"


def dataset_hash(index: DatasetIndex) -> str:
    """sha256 over the training items' relative paths and byte sizes (cheap, content-sensitive enough)."""
    root = Path(index.root) if getattr(index, "root", None) else None
    h = hashlib.sha256()
    for item in sorted(index.select(split="train"), key=lambda it: (it.subset, it.building)):
        files = (item.video,) if item.video is not None else item.frames
        for f in files:
            rel = Path(f).relative_to(root) if root is not None else Path(f)
            h.update(f"{rel}:{Path(f).stat().st_size}\n".encode())
    return h.hexdigest()


def cache_key(
    *,
    teacher_sha: str,
    data_hash: str,
    elevation: int,
    fps: int,
    views: int,
    teacher_views: int,
    img_size: int,
    seed: int,
    image: ImageConfig = IMAGENET,
) -> str:
    """``views``: frames read per video; ``teacher_views``: how many of them the teacher sees;
    ``image``: the batch's normalisation/interpolation (in the key only when not ImageNet's
    bicubic default, so caches written before it existed stay valid)."""
    payload = {
        "format": CACHE_FORMAT,
        "teacher": teacher_sha,
        "data": data_hash,
        "elevation": elevation,
        "fps": fps,
        "views": views,
        "teacher_views": teacher_views,
        "img_size": img_size,
        "seed": seed,
    }
    if image != IMAGENET:
        payload["image"] = [list(image.mean), list(image.std), image.interpolation]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class TeacherOutputs:
    """Teacher targets for a batch: from the cache when every sample is there, else one teacher forward.

    ``teacher_forwards`` counts the forwards actually run (tests assert a warm cache runs none).
    ``cache_dir`` None switches caching off (the teacher runs on every batch).
    ``image``: how the batch was normalised (the student's backbone config); a teacher whose
    backbone wants another mean/std gets the batch re-mapped to its own.
    """

    def __init__(
        self, teacher: torch.nn.Module, cache_dir: str | Path | None, *, image: ImageConfig = IMAGENET
    ) -> None:
        self.teacher = teacher
        self.image = image
        self.teacher_image: ImageConfig = getattr(teacher, "image_config", IMAGENET)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.teacher_forwards = 0
        self.hits = 0
        self.misses = 0

    def _path(self, epoch: int, index: int) -> Path:
        assert self.cache_dir is not None
        return self.cache_dir / f"e{epoch:04d}_{index:06d}.safetensors"

    def __call__(
        self,
        drone: torch.Tensor,
        satellite: torch.Tensor,
        *,
        epoch: int,
        indices: Sequence[int],
        device: torch.device,
    ) -> TeacherTargets:
        """drone [B,V,3,H,W], satellite [B,3,H,W] of dataset samples ``indices`` -> targets on ``device``."""
        if self.cache_dir is not None:
            paths = [self._path(epoch, int(i)) for i in indices]
            if all(p.is_file() for p in paths):
                self.hits += len(paths)
                return _stack([_read(p) for p in paths]).to(device)
        targets = self._forward(drone, satellite)
        if self.cache_dir is not None:
            self.misses += len(indices)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            flat = {k: v.cpu() for k, v in targets.to_flat().items()}
            for row, i in enumerate(indices):
                _write(self._path(epoch, int(i)), {k: v[row].contiguous() for k, v in flat.items()})
        return targets.to(device)

    @torch.no_grad()
    def _forward(self, drone: torch.Tensor, satellite: torch.Tensor) -> TeacherTargets:
        self.teacher_forwards += 1
        self.teacher.eval()
        drone = renormalize(drone, self.image, self.teacher_image)  # [B,V,3,H,W]
        satellite = renormalize(satellite, self.image, self.teacher_image)  # [B,3,H,W]
        return TeacherTargets.from_output(self.teacher(drone, satellite))


def _write(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file(tensors, str(tmp), metadata={"format": CACHE_FORMAT})
    os.replace(tmp, path)  # concurrent trials writing the same sample write the same bytes


def _read(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path), device="cpu")


def _stack(rows: list[dict[str, torch.Tensor]]) -> TeacherTargets:
    return TeacherTargets.from_flat({k: torch.stack([r[k] for r in rows]) for k in rows[0]})

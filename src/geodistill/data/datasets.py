"""PyTorch datasets over a DatasetIndex, and a sampler that keeps buildings distinct per batch."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator

import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from geodistill.data.index import DatasetIndex, ViewItem
from geodistill.data.media import (
    count_video_frames,
    load_image,
    read_video_frames,
    sample_view_indices,
)
from geodistill.data.transforms import (
    IMAGENET,
    ImageConfig,
    drone_transform,
    satellite_transform,
    seeded_rng,
)
from geodistill.errors import CorruptMediaError, DataError


class _MediaReader:
    """Reads a drone item's frames, skipping corrupt ones in favour of a neighbouring frame."""

    skipped_media: int

    def _n_frames(self, item: ViewItem) -> int:
        if item.video is not None:
            return count_video_frames(item.video, fps=item.fps or 10)
        return len(item.frames)

    def _load_frame(self, item: ViewItem, idx: int) -> Image.Image:
        """Frame ``idx``; when it is corrupt try idx+1, idx-1, idx+2, ... and count the skip."""
        n = len(item.frames)
        for dist in range(n):
            for cand in (idx + dist, idx - dist) if dist else (idx,):
                if 0 <= cand < n:
                    try:
                        return load_image(item.frames[cand])
                    except CorruptMediaError:
                        self.skipped_media += 1
        raise CorruptMediaError(f"every frame of {item.subset}/{item.building} is corrupt")

    def _load_views(self, item: ViewItem, views: int, *, train: bool) -> list[Image.Image]:
        if item.video is not None:
            n = self._n_frames(item)
            idx = sample_view_indices(n, views, train=train, rng=seeded_rng() if train else None)
            return read_video_frames(item.video, fps=item.fps or 10, indices=idx)
        idx = sample_view_indices(len(item.frames), views, train=train, rng=seeded_rng() if train else None)
        cache: dict[int, Image.Image] = {}
        out = []
        for i in idx:  # repeated indices (views > frames) decode once
            if i not in cache:
                cache[i] = self._load_frame(item, i)
            out.append(cache[i])
        return out

    def _load_single(self, item: ViewItem) -> Image.Image:
        """A satellite/street image: the first decodable one of the building's folder."""
        return self._load_frame(item, 0)


class TrainPairDataset(Dataset, _MediaReader):
    """One sample per training drone video: its V views, its building's satellite tile, its label.

    ``teacher_views`` (stage 2, when it differs from ``views``) adds "teacher_drone", the
    frames a frozen teacher sees: max(views, teacher_views) frames are read spread over the
    flight, and the side with fewer takes one of them from each of its equal segments (random
    in training, the centre otherwise), so both see the whole flight in order and share the
    frames (and their augmentation) they have in common.

    ``skipped_media`` counts corrupt frames replaced by a neighbour and unreadable videos
    replaced by the next sample (per process: each DataLoader worker counts its own).
    """

    def __init__(
        self,
        index: DatasetIndex,
        *,
        views: int,
        img_size: int,
        class_map: dict[str, int] | None = None,
        train: bool = True,
        teacher_views: int | None = None,
        image: ImageConfig = IMAGENET,
    ) -> None:
        self.views = views
        self.teacher_views = teacher_views if teacher_views != views else None
        self.img_size = img_size
        self.train = train
        self.class_map = class_map if class_map is not None else index.class_map()
        satellites = {it.building: it for it in index.select(split="train", view="satellite")}
        drones = index.select(split="train", view="drone")
        if not drones:
            raise DataError(f"{index.root}: no training drone views")
        missing = sorted({d.building for d in drones} - satellites.keys())
        if missing:
            raise DataError(
                f"{index.root}: no satellite tile for training building(s) {', '.join(missing[:5])}"
            )
        self.drones = drones
        self.satellites = satellites
        self.buildings = [d.building for d in drones]
        self.image = image  # the student's normalisation and interpolation
        self.drone_tf = drone_transform(img_size, train=train, image=image)
        self.sat_tf = satellite_transform(img_size, train=train, image=image)
        self.skipped_media = 0
        self.unreadable: set[int] = set()  # samples whose drone media cannot be decoded at all

    def __len__(self) -> int:
        return len(self.drones)

    def __getitem__(self, i: int) -> dict:
        """Sample ``i``; if its video (or every frame) is unreadable, count it and take the next one.

        The substitute is a whole other pair (its own frames, tile and label), so a sample never
        mixes buildings; the unreadable sample is remembered and not decoded again.
        """
        n = len(self.drones)
        for j in (i % n + k for k in range(n)):
            j %= n
            if j in self.unreadable:
                continue
            item = self.drones[j]
            read = max(self.views, self.teacher_views or 0)
            try:
                frames = self._load_views(item, read, train=self.train)
            except CorruptMediaError:
                self.unreadable.add(j)
                self.skipped_media += 1
                continue
            drone = torch.stack([self.drone_tf(f) for f in frames])  # [read,3,H,W]
            sat = self.sat_tf(self._load_single(self.satellites[item.building]))  # [3,H,W]
            sample = {"drone": self._subset(drone, self.views), "satellite": sat}  # drone [V,3,H,W]
            if self.teacher_views is not None:
                sample["teacher_drone"] = self._subset(drone, self.teacher_views)  # [V_t,3,H,W]
            return {**sample, "label": self.class_map[item.building]}
        raise DataError(f"{self.drones[0].subset}: no training drone video could be read")

    def _subset(self, drone: torch.Tensor, views: int) -> torch.Tensor:
        """[read,3,H,W] -> [views,3,H,W]: one frame per equal segment (all when the counts agree)."""
        if views == drone.shape[0]:
            return drone
        rng = seeded_rng() if self.train else None
        return drone[sample_view_indices(drone.shape[0], views, train=self.train, rng=rng)]


class ViewDataset(Dataset, _MediaReader):
    """Evaluation items: drone -> Tensor[V,3,H,W] (deterministic views), others -> Tensor[3,H,W].

    Labels are ``int(building)`` (folder names are numeric in both datasets).
    """

    def __init__(
        self,
        items: list[ViewItem],
        *,
        views: int,
        img_size: int,
        labels: str = "int-building",
        image: ImageConfig = IMAGENET,
    ) -> None:
        if labels != "int-building":
            raise ValueError(f"unknown labels scheme {labels!r}")
        self.items = list(items)
        self.views = views
        self.img_size = img_size
        self.drone_tf = drone_transform(img_size, train=False, image=image)
        self.sat_tf = satellite_transform(img_size, train=False, image=image)
        self.skipped_media = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        item = self.items[i]
        label = int(item.building)
        if item.view == "drone":
            frames = self._load_views(item, self.views, train=False)
            return torch.stack([self.drone_tf(f) for f in frames]), label  # [V,3,H,W]
        return self.sat_tf(self._load_single(item)), label  # [3,H,W]


class BuildingBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices whose buildings are all distinct (in-batch negatives stay negative).

    Each epoch shuffles the buildings (seeded by seed + epoch; call ``set_epoch``) and, for a
    building with several samples, picks one of them.
    """

    def __init__(self, dataset, batch_size: int, *, seed: int, drop_last: bool = True) -> None:
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        self.by_building: dict[str, list[int]] = defaultdict(list)
        for i, b in enumerate(dataset.buildings):
            self.by_building[b].append(i)
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed * 100_003 + self.epoch)
        buildings = sorted(self.by_building)
        rng.shuffle(buildings)
        picks = [rng.choice(self.by_building[b]) for b in buildings]
        for start in range(0, len(picks), self.batch_size):
            batch = picks[start : start + self.batch_size]
            if len(batch) < self.batch_size and self.drop_last:
                return
            yield batch

    def __len__(self) -> int:
        n = len(self.by_building)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

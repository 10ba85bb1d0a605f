"""TrainPairDataset, ViewDataset and the distinct-building batch sampler."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import torch

from geodistill.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BuildingBatchSampler,
    TrainPairDataset,
    ViewDataset,
    open_index,
)


def test_train_pair_shapes_and_labels(synth_univ: Path):
    idx = open_index(synth_univ, elevation=45, fps=2)
    ds = TrainPairDataset(idx, views=3, img_size=32)
    assert len(ds) == 6
    torch.manual_seed(0)
    s = ds[2]
    assert s["drone"].shape == (3, 3, 32, 32) and s["satellite"].shape == (3, 32, 32)
    assert s["label"] == idx.class_map()[ds.buildings[2]] == 2
    assert ds.skipped_media == 0
    # ImageNet normalisation: a value v in [0,1] maps to (v - mean) / std.
    lo = (0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    hi = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.all(s["satellite"].amin(dim=(1, 2)) >= lo - 1e-5)
    assert torch.all(s["satellite"].amax(dim=(1, 2)) <= hi + 1e-5)


def test_eval_mode_is_deterministic_and_train_mode_is_not(synth_univ: Path):
    idx = open_index(synth_univ, elevation=30, fps=10)
    ev = TrainPairDataset(idx, views=4, img_size=32, train=False)
    assert torch.equal(ev[0]["drone"], ev[0]["drone"])
    tr = TrainPairDataset(idx, views=4, img_size=32, train=True)
    torch.manual_seed(1)
    a = tr[0]["drone"]
    torch.manual_seed(1)
    assert torch.equal(a, tr[0]["drone"])  # governed by torch's seed
    torch.manual_seed(2)
    assert not torch.equal(a, tr[0]["drone"])


def test_teacher_views_share_the_students_frames_and_cover_the_flight(synth_univ: Path):
    idx = open_index(synth_univ, elevation=45, fps=10)
    same = TrainPairDataset(idx, views=2, teacher_views=2, img_size=32)
    assert "teacher_drone" not in same[0]  # equal counts: the teacher takes the student's frames
    more = TrainPairDataset(idx, views=2, teacher_views=4, img_size=32)
    torch.manual_seed(3)
    s = more[0]
    student, teacher = s["drone"], s["teacher_drone"]  # [2,3,H,W], [4,3,H,W]
    assert student.shape == (2, 3, 32, 32) and teacher.shape == (4, 3, 32, 32)
    # Each student frame is one of the teacher's frames (same decode, same augmentation): the
    # first from the first half of the flight (teacher frames 0-1), the second from the second.
    hits = [[k for k in range(4) if torch.equal(student[v], teacher[k])] for v in range(2)]
    assert hits[0] and set(hits[0]) <= {0, 1} and hits[1] and set(hits[1]) <= {2, 3}, hits
    fewer = TrainPairDataset(idx, views=3, teacher_views=1, img_size=32, train=False)
    f = fewer[0]
    assert f["teacher_drone"].shape[0] == 1 and torch.equal(
        f["teacher_drone"][0], f["drone"][1]
    )  # the centre


def test_mp4_dataset_matches_frame_counts(synth_univ_mp4: Path):
    idx = open_index(synth_univ_mp4, elevation=45, fps=5)
    ds = TrainPairDataset(idx, views=2, img_size=32, train=False)
    s = ds[0]
    assert s["drone"].shape == (2, 3, 32, 32) and s["label"] == 0
    views = ViewDataset(idx.select(subset="gallery_drone"), views=3, img_size=32)
    x, label = views[0]
    assert x.shape == (3, 3, 32, 32) and label == int(idx.select(subset="gallery_drone")[0].building)


def test_view_dataset_labels_are_int_buildings(synth_univ: Path):
    idx = open_index(synth_univ, elevation=45, fps=2)
    gallery = idx.select(subset="gallery_satellite")
    ds = ViewDataset(gallery, views=4, img_size=32)
    x, label = ds[len(ds) - 1]
    assert x.shape == (3, 32, 32) and label == int(gallery[-1].building)
    q = ViewDataset(idx.select(subset="query_drone"), views=4, img_size=32)
    x, _ = q[0]
    assert x.shape == (4, 3, 32, 32)
    assert torch.equal(x, q[0][0])  # evaluation views are deterministic


def test_corrupt_frame_is_skipped_and_counted(synth_univ: Path, tmp_path: Path):
    root = tmp_path / "univ"
    shutil.copytree(synth_univ / "45" / "2fps", root / "45" / "2fps")
    idx = open_index(root, elevation=45, fps=2)
    ds = TrainPairDataset(idx, views=8, img_size=32, train=False)  # all 8 frames, in order
    bad = ds.drones[0].frames[0]
    bad.write_bytes(bad.read_bytes()[:100])  # truncated jpeg
    s = ds[0]
    assert ds.skipped_media == 1
    assert torch.equal(s["drone"][0], s["drone"][1])  # frame 0 replaced by its neighbour, frame 1
    ds[0]
    assert ds.skipped_media == 2


def test_batches_hold_distinct_buildings():
    # Buildings with several samples each: a batch must never hold two of one building.
    data = SimpleNamespace(buildings=[f"{b:04d}" for b in range(10) for _ in range(3)])
    sampler = BuildingBatchSampler(data, 4, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 2  # 10 buildings // 4, drop_last
    for batch in batches:
        assert len(batch) == 4 and len({data.buildings[i] for i in batch}) == 4
    full = list(BuildingBatchSampler(data, 4, seed=0, drop_last=False))
    assert [len(b) for b in full] == [4, 4, 2]
    assert sorted(data.buildings[i] for b in full for i in b) == [f"{b:04d}" for b in range(10)]
    assert list(BuildingBatchSampler(data, 4, seed=0)) == batches  # same seed, same epoch: same batches
    sampler.set_epoch(1)
    assert list(sampler) != batches


def test_sampler_over_train_pairs(synth_univ: Path):
    ds = TrainPairDataset(open_index(synth_univ, elevation=45, fps=2), views=1, img_size=32)
    batches = list(BuildingBatchSampler(ds, 3, seed=5))
    assert len(batches) == 2 and sorted(i for b in batches for i in b) == list(range(6))

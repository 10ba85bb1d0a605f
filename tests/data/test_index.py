"""Readers for the UniV and University-1652 layouts, and view sampling."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from PIL import Image

from geodistill.data import DatasetIndex, open_index, read_univ, read_university1652, sample_view_indices
from geodistill.errors import DataError


def test_univ_frames_layout(synth_univ: Path):
    idx = open_index(synth_univ, elevation=30, fps=5)
    assert isinstance(idx, DatasetIndex) and idx.kind == "univ"
    train = idx.select(subset="drone")
    assert len(train) == 6 and all(len(it.frames) == 20 for it in train)
    assert {it.elevation for it in train} == {30} and {it.fps for it in train} == {5}
    assert len(idx.select(subset="query_drone")) == 6
    assert len(idx.select(subset="gallery_drone")) == 7  # 6 test + 1 distractor
    # Satellite tiles are lent by 45/2fps to every other subset.
    sats = idx.select(split="train", view="satellite")
    assert len(sats) == 6 and all("45/2fps" in it.frames[0].as_posix() for it in sats)
    assert all(it.fps is None and it.video is None for it in sats)
    assert {it.view for it in idx.items} == {"drone", "satellite", "street", "google"}
    cmap = idx.class_map()
    assert list(cmap.values()) == list(range(6)) and list(cmap) == sorted(it.building for it in train)
    # Frames are sorted and belong to the building's folder.
    first = train[0]
    assert [p.name for p in first.frames[:3]] == ["frame_000.jpeg", "frame_001.jpeg", "frame_002.jpeg"]
    assert all(p.parent.name == first.building for p in first.frames)


def test_univ_fps_frame_counts(synth_univ: Path):
    for fps, n in ((2, 8), (5, 20), (10, 40)):
        items = read_univ(synth_univ, elevation=45, fps=fps).select(subset="gallery_drone")
        assert {len(it.frames) for it in items} == {n}


def test_univ_mp4_layout(synth_univ_mp4: Path):
    idx = open_index(synth_univ_mp4, elevation=45, fps=2)
    drones = idx.select(view="drone")
    assert len(drones) == 6 + 6 + 7
    assert all(it.frames == () and it.video.suffix == ".mp4" and it.fps == 2 for it in drones)
    assert drones[0].video.stem == drones[0].building


def _jpeg(path: Path, colour=(10, 20, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


def test_university1652_layout(tmp_path: Path):
    root = tmp_path / "u1652"
    for k in range(3):
        _jpeg(root / "train" / "drone" / "0001" / f"image-{k:02d}.jpeg")
    _jpeg(root / "train" / "satellite" / "0001" / "0001.jpg")
    _jpeg(root / "train" / "street" / "0001" / "s1.jpg")
    _jpeg(root / "test" / "query_drone" / "0002" / "image-01.jpeg")
    for b in ("0002", "0003"):
        _jpeg(root / "test" / "gallery_satellite" / b / f"{b}.jpg")
    idx = open_index(root)
    assert idx.kind == "university1652"
    drone = idx.select(subset="drone")
    assert (
        len(drone) == 1 and len(drone[0].frames) == 3 and drone[0].elevation is None and drone[0].fps is None
    )
    assert [it.building for it in idx.select(subset="gallery_satellite")] == ["0002", "0003"]
    assert idx.select(subset="query_drone")[0].view == "drone"
    assert idx.select(subset="street")[0].view == "street"
    assert idx.class_map() == {"0001": 0}
    assert len(read_university1652(root).items) == 6


def test_layout_errors(tmp_path: Path):
    with pytest.raises(DataError, match="does not exist"):
        open_index(tmp_path / "nope")
    (tmp_path / "junk").mkdir()
    with pytest.raises(DataError, match="not a UniV"):
        open_index(tmp_path / "junk")
    (tmp_path / "u" / "train" / "drone" / "0001").mkdir(parents=True)
    with pytest.raises(DataError, match="University-1652 without its test/ split"):
        open_index(tmp_path / "u")
    for subset in ("query_drone", "gallery_satellite"):
        (tmp_path / "u" / "test" / subset).mkdir(parents=True)
    with pytest.raises(DataError, match="empty class folder .*0001"):
        open_index(tmp_path / "u")


def test_sample_view_indices_eval_is_deterministic_centres():
    assert sample_view_indices(8, 4, train=False, rng=None) == [0, 2, 4, 6]
    assert sample_view_indices(10, 4, train=False, rng=None) == [0, 3, 5, 8]
    assert sample_view_indices(40, 1, train=False, rng=None) == [19]
    assert sample_view_indices(5, 5, train=False, rng=None) == [0, 1, 2, 3, 4]


def test_sample_view_indices_train_random_within_segments():
    draws = [sample_view_indices(40, 4, train=True, rng=random.Random(s)) for s in range(30)]
    for d in draws:
        assert len(d) == 4 and [i // 10 for i in d] == [0, 1, 2, 3]  # one per quarter of the flight
    assert len({tuple(d) for d in draws}) > 10  # offsets vary
    assert sample_view_indices(40, 4, train=True, rng=random.Random(7)) == sample_view_indices(
        40, 4, train=True, rng=random.Random(7)
    )


def test_sample_view_indices_repeats_evenly():
    assert sample_view_indices(3, 7, train=True, rng=random.Random(0)) == [0, 0, 0, 1, 1, 2, 2]
    assert sample_view_indices(2, 4, train=False, rng=None) == [0, 0, 1, 1]
    with pytest.raises(ValueError):
        sample_view_indices(0, 4, train=False, rng=None)

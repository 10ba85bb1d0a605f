"""The synthetic UniV: layout, determinism, and that its views are related yet different."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from geodistill.data import generate_univ, load_image, open_index


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_different_seed_different(tmp_path: Path):
    a = _digest(generate_univ(tmp_path / "a", buildings=4, seed=3, img_size=32))
    b = _digest(generate_univ(tmp_path / "b", buildings=4, seed=3, img_size=32))
    c = _digest(generate_univ(tmp_path / "c", buildings=4, seed=4, img_size=32))
    assert a == b
    assert len(a) > 100
    shared = set(a) & set(c)
    assert sum(a[k] != c[k] for k in shared if k.endswith(".jpeg")) > 0.9 * sum(
        k.endswith(".jpeg") for k in shared
    )


def test_mp4_bytes_are_reproducible(tmp_path: Path):
    a = _digest(generate_univ(tmp_path / "a", buildings=2, seed=1, img_size=32, video="mp4"))
    b = _digest(generate_univ(tmp_path / "b", buildings=2, seed=1, img_size=32, video="mp4"))
    assert a == b
    mp4s = [k for k in a if k.endswith(".mp4")]
    # 2 buildings: 1 train (drone) + 1 test (query + gallery) + 1 distractor (gallery), at 2 elevations.
    assert len(mp4s) == 2 * 4 and all("/mp4/" in k for k in mp4s)
    assert not any("fps/train/drone" in k for k in a)  # no frame folders in the mp4 form


def test_split_file_and_disjoint_buildings(synth_univ: Path):
    split = json.loads((synth_univ / "dataset_split.json").read_text())
    train, test, distract = set(split["train"]), set(split["test"]), set(split["distractors"])
    assert (len(train), len(test), len(distract)) == (6, 6, 1)
    assert not train & test and not train & distract and not test & distract
    idx = open_index(synth_univ, elevation=30, fps=2)
    assert {it.building for it in idx.select(subset="drone")} == train
    assert {it.building for it in idx.select(subset="query_drone")} == test
    assert {it.building for it in idx.select(subset="gallery_satellite")} == test | distract
    assert {it.building for it in idx.select(subset="gallery_drone")} == test | distract


def _histogram(img, bins: int = 4) -> np.ndarray:
    a = np.asarray(img.resize((32, 32)), dtype=np.int64) * bins // 256  # [32,32,3] in 0..bins-1
    code = (a[..., 0] * bins + a[..., 1]) * bins + a[..., 2]
    h = np.bincount(code.ravel(), minlength=bins**3).astype(float)
    return h / np.linalg.norm(h)


def test_views_are_related_but_not_identical(synth_univ: Path):
    idx = open_index(synth_univ, elevation=30, fps=2)
    gallery = idx.select(subset="gallery_satellite")
    tiles = [load_image(g.frames[0]) for g in gallery]
    G = np.stack([_histogram(t) for t in tiles])  # [7, 64]
    hits = 0
    for q in idx.select(subset="query_drone"):
        frame = load_image(q.frames[len(q.frames) // 2])
        best = int(np.argmax(G @ _histogram(frame)))
        hits += gallery[best].building == q.building
        tile = tiles[[g.building for g in gallery].index(q.building)]
        # Cross-view: the frame is not the tile (mean abs pixel difference of many grey levels).
        diff = np.abs(np.asarray(frame.resize(tile.size), float) - np.asarray(tile, float)).mean()
        assert diff > 10
    # 6 queries against 7 tiles: chance is 6/7 hits; colour histograms alone find 5 of 6.
    assert hits >= 4
    # Frames of one flight differ too (the camera orbits).
    q = idx.select(subset="query_drone")[0]
    f0, f4 = (np.asarray(load_image(q.frames[k]), float) for k in (0, 4))
    assert np.abs(f0 - f4).mean() > 10


def test_clouds_cover_drone_frames_only(tmp_path: Path):
    clear = generate_univ(tmp_path / "clear", buildings=2, seed=5, img_size=32)
    cloudy = generate_univ(tmp_path / "cloudy", buildings=2, seed=5, img_size=32, clouds=1.0)
    a, b = _digest(clear), _digest(cloudy)
    satellite = [k for k in a if "/satellite/" in k]
    drone = [k for k in a if k.endswith(".jpeg") and "drone" in k]
    assert satellite and all(a[k] == b[k] for k in satellite)  # tiles untouched
    assert all(a[k] != b[k] for k in drone)  # every frame clouded at clouds=1

    # A cloud is a bright blob near the target: the frame centre gets brighter on average.
    def centre_mean(root: Path) -> float:
        frames = [load_image(root / k) for k in drone]
        return float(np.mean([np.asarray(f, dtype=np.float32)[8:16, 8:16].mean() for f in frames]))

    assert centre_mean(cloudy) > centre_mean(clear) + 20
    assert json.loads((cloudy / "dataset_split.json").read_text())["clouds"] == 1.0

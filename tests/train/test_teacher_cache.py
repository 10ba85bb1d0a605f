"""Frozen-teacher outputs cached per (epoch, sample): a warm cache runs no teacher forward and gives the same targets."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from geodistill.data import IMAGENET, ImageConfig, open_index
from geodistill.models import GeoModel, ModelConfig
from geodistill.train.teacher_cache import CACHE_FORMAT, TeacherOutputs, cache_key, dataset_hash

pytestmark = pytest.mark.usefixtures("one_thread")
KEY = dict(teacher_sha="t", data_hash="d", elevation=45, fps=2, views=2, teacher_views=2, img_size=32, seed=0)


@pytest.fixture(scope="module")
def teacher() -> GeoModel:
    torch.manual_seed(0)
    return GeoModel(ModelConfig(backbone="resnet18", img_size=32, embed_dim=8, pooling="avg"), num_classes=3)


def _batch(b: int = 2):
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, 2, 3, 32, 32, generator=g), torch.randn(b, 3, 32, 32, generator=g)


def test_a_warm_cache_answers_without_the_teacher(teacher, tmp_path):
    drone, satellite = _batch()
    cold = TeacherOutputs(teacher, tmp_path / "cache")
    first = cold(drone, satellite, epoch=1, indices=[4, 7], device=torch.device("cpu"))
    assert (cold.teacher_forwards, cold.misses, cold.hits) == (1, 2, 0)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [
        "e0001_000004.safetensors",
        "e0001_000007.safetensors",
    ]
    warm = TeacherOutputs(teacher, tmp_path / "cache")
    again = warm(
        torch.zeros_like(drone),
        torch.zeros_like(satellite),
        epoch=1,
        indices=[4, 7],
        device=torch.device("cpu"),
    )
    assert (warm.teacher_forwards, warm.hits) == (0, 2)  # the batch's pixels were not even looked at
    for key, value in first.to_flat().items():
        torch.testing.assert_close(again.to_flat()[key], value)
    # one sample not cached yet (index 9), or another epoch: the teacher runs for the whole batch
    warm(drone, satellite, epoch=1, indices=[4, 9], device=torch.device("cpu"))
    warm(drone, satellite, epoch=2, indices=[4, 7], device=torch.device("cpu"))
    assert warm.teacher_forwards == 2


def test_no_cache_dir_runs_the_teacher_every_time(teacher):
    drone, satellite = _batch()
    outputs = TeacherOutputs(teacher, None)
    for _ in range(2):
        outputs(drone, satellite, epoch=1, indices=[0, 1], device=torch.device("cpu"))
    assert (outputs.teacher_forwards, outputs.hits, outputs.misses) == (2, 0, 0)


def test_cache_key_is_the_hash_of_everything_that_changes_the_teachers_input():
    payload = {"format": CACHE_FORMAT, "teacher": "t", "data": "d", "elevation": 45, "fps": 2, "views": 2}
    payload |= {"teacher_views": 2, "img_size": 32, "seed": 0}
    expected = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    assert cache_key(**KEY) == cache_key(**KEY, image=IMAGENET) == expected
    changed = {
        cache_key(**(KEY | {name: value})) for name, value in (("seed", 1), ("fps", 5), ("teacher_views", 1))
    }
    assert len(changed) == 3 and expected not in changed
    assert cache_key(**KEY, image=ImageConfig(interpolation="bilinear")) != expected


def test_dataset_hash_follows_the_training_files(synth_univ, tmp_path):
    import shutil

    copy = tmp_path / "univ"
    shutil.copytree(synth_univ, copy)
    assert dataset_hash(open_index(copy)) == dataset_hash(open_index(synth_univ))  # relative paths: same set
    frame = sorted((copy / "45" / "2fps" / "train" / "drone").rglob("*.jpeg"))[0]
    frame.write_bytes(frame.read_bytes() + b"\0")
    assert dataset_hash(open_index(copy)) != dataset_hash(open_index(synth_univ))

"""The training set as the loop reads it: its root (given or synthesised once), seeded samples, per-rank batches."""

from __future__ import annotations

import pytest
import torch

from geodistill.data import TrainPairDataset, open_index
from geodistill.errors import ConfigError
from geodistill.train.batches import RankBatchSampler, SeededSamples, dataset_root
from geodistill.train.config import RunConfig


def test_a_given_root_must_exist(tmp_path):
    cfg = RunConfig.from_dict({"data": {"root": str(tmp_path)}})
    assert dataset_root(cfg) == tmp_path
    cfg.data.root = str(tmp_path / "gone")
    with pytest.raises(ConfigError, match=f"^data.root does not exist: {tmp_path / 'gone'}$"):
        dataset_root(cfg)


def test_the_synthetic_set_is_made_once_per_output_dir_and_named_by_its_settings(tmp_path):
    cfg = RunConfig.from_dict(
        {"output_dir": str(tmp_path), "data": {"synth_buildings": 4, "synth_seed": 7, "img_size": 32}}
    )
    root = dataset_root(cfg)
    assert root == tmp_path / "data" / "synth_4_7"  # tiles drawn at 64 px: no size in the name
    assert (root / "dataset_split.json").is_file()
    stamp = (root / "dataset_split.json").stat().st_mtime_ns
    assert dataset_root(cfg) == root and (root / "dataset_split.json").stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "data").iterdir() if ".tmp" in p.name] == []


@pytest.fixture(scope="module")
def pairs(synth_univ) -> TrainPairDataset:
    return TrainPairDataset(open_index(synth_univ), views=2, img_size=32)


def test_a_sample_is_a_function_of_seed_epoch_and_index(pairs):
    samples = SeededSamples(pairs, seed=3)
    first = samples[1]
    assert first["index"] == 1 and first["skipped"] == 0
    torch.manual_seed(123)  # the global RNG does not matter
    torch.testing.assert_close(samples[1]["drone"], first["drone"])
    samples.set_epoch(1)
    assert not torch.equal(samples[1]["drone"], first["drone"])
    assert not torch.equal(SeededSamples(pairs, seed=4)[1]["drone"], first["drone"])
    assert len(samples) == len(pairs) == 6


def test_rank_slices_split_one_global_batch_of_distinct_buildings(pairs):
    ranks = [RankBatchSampler(pairs, 5, seed=0, rank=r, world=2) for r in (0, 1)]
    for sampler in ranks:
        sampler.set_epoch(2)
    batches = [list(sampler) for sampler in ranks]
    # 5 over 2 ranks: 2 each, a global batch of 4; 6 buildings give one full batch per epoch
    assert [len(b) for b in batches] == [1, 1] and len(ranks[0]) == 1
    (a,), (b,) = batches
    assert len(a) == len(b) == 2 and not set(a) & set(b)
    assert len({pairs.buildings[i] for i in a + b}) == 4
    base = ranks[0].base
    base.set_epoch(2)
    assert next(iter(base)) == a + b

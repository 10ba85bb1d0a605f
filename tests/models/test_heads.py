"""Pooling heads: LPN ring weights, GeM, part pooling, the bottleneck block and the LPN descriptor."""

from __future__ import annotations

import math

import pytest
import torch

from geodistill.errors import ConfigError
from geodistill.models.heads import GeM, PartPool, StageHeads, lpn_descriptor, ring_weights


def test_ring_weights_match_the_video2bev_definition():
    w = ring_weights(16, 16)  # [4,256]
    counts = (w > 0).sum(dim=1).tolist()
    assert counts == [16, 48, 80, 112]  # ring k = square 4k minus square 4(k-1)
    for k, side in enumerate([4, 8, 12, 16]):
        vals = w[k][w[k] > 0]
        torch.testing.assert_close(vals, torch.full_like(vals, 1.0 / side**2))
    # Ring 1 is exactly the centred 4x4 square (rows/cols 6..9).
    mask = (w[0] > 0).reshape(16, 16)
    assert mask[6:10, 6:10].all() and mask.sum() == 16
    # An 8x8 grid: squares of side 2, 4, 6, 8.
    w8 = ring_weights(8, 8)
    assert (w8 > 0).sum(dim=1).tolist() == [4, 12, 20, 28]
    assert w8.max(dim=1).values.tolist() == pytest.approx([1 / 4, 1 / 16, 1 / 36, 1 / 64])


def test_ring_weights_average_each_ring_over_its_whole_square():
    # Ring weights times a constant map of ones: ring k sums (cells of ring k) / (cells of square k).
    w = ring_weights(8, 8)
    assert (w @ torch.ones(64)).tolist() == pytest.approx([4 / 4, 12 / 16, 20 / 36, 28 / 64])


def test_gem_is_the_mean_at_p1_and_the_power_mean_at_p3():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
    assert GeM(p=1.0)(x).item() == pytest.approx(2.5)
    assert GeM(p=3.0)(x).item() == pytest.approx((100 / 4) ** (1 / 3))  # 1 + 8 + 27 + 64 = 100


def test_part_pool_shapes_and_refusals():
    grid, cls = torch.randn(2, 5, 8, 8), torch.randn(2, 5)
    assert torch.equal(PartPool("token", has_token=True)(grid, cls), cls[:, None])
    torch.testing.assert_close(PartPool("avg", has_token=False)(grid, None)[:, 0], grid.mean(dim=(2, 3)))
    lpn = PartPool("lpn", has_token=True)
    parts = lpn(grid, cls)
    assert lpn.num_parts == 5 and parts.shape == (2, 5, 5) and torch.equal(parts[:, 0], cls)
    assert PartPool("lpn", has_token=False)(grid, None).shape == (2, 4, 5)
    with pytest.raises(ConfigError, match="pooling 'token' needs a ViT backbone"):
        PartPool("token", has_token=False)
    with pytest.raises(ConfigError, match="unknown pooling 'max'; known: token, avg, gem, lpn"):
        PartPool("max", has_token=True)


def test_lpn_descriptor_has_unit_norm_whatever_the_part_count():
    parts = torch.tensor([[[3.0, 4.0], [0.0, 2.0], [1.0, 0.0], [0.0, 5.0]]])  # [1,4,2]
    desc = lpn_descriptor(parts)
    # each part normalised, then / sqrt(4) = 0.5: (0.6, 0.8) -> (0.3, 0.4) ...
    assert desc[0].tolist() == pytest.approx([0.3, 0.4, 0.0, 0.5, 0.5, 0.0, 0.0, 0.5])
    assert desc.norm().item() == pytest.approx(1.0)
    assert lpn_descriptor(torch.randn(3, 9, 7)).norm(dim=1).tolist() == pytest.approx([1.0] * 3)
    assert math.isclose(lpn_descriptor(parts[:, :1]).norm().item(), 1.0)


def test_stage_heads_one_block_per_stage_but_the_deepest():
    heads = StageHeads([8, 16, 32], embed_dim=4, num_classes=3, droprate=0.0).eval()
    assert [b.add_block[0].in_features for b in heads.blocks] == [8, 16]
    logits = heads([torch.randn(2, 8), torch.randn(2, 16), torch.randn(2, 32)])
    assert [t.shape for t in logits] == [(2, 3), (2, 3)]

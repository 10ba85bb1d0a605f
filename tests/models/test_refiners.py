"""Multi-view refiners: the mean, the attention pool, greedy frame selection and the MI (mRMR) pick."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from geodistill.errors import ConfigError
from geodistill.models.refiners import (
    AttentionRefiner,
    MeanRefiner,
    MIRefiner,
    SelectRefiner,
    build_refiner,
    gaussian_mi,
    mi_select_frames,
    select_frames,
)


def test_select_refiner_picks_representative_then_least_redundant():
    # Frames (unit vectors in 2-D): three near-duplicates around 0 deg, one at 90 deg.
    ang = torch.tensor([0.0, 0.05, -0.05, math.pi / 2])
    frames = torch.stack([ang.cos(), ang.sin()], dim=-1)[None]  # [1,4,2]
    idx = select_frames(frames, 2)
    # Mean direction is ~ 18 deg: closest is frame 1 (0.05 rad); the least redundant next is 3.
    assert idx.tolist() == [[1, 3]]
    out = SelectRefiner(2)(frames)
    torch.testing.assert_close(out, (frames[0, 1] + frames[0, 3])[None] / 2)
    # V <= k: plain mean.
    torch.testing.assert_close(SelectRefiner(8)(frames), frames.mean(dim=1))


def test_gaussian_mi_of_a_correlation():
    # -1/2 ln(1 - r^2): r = 0.6 -> 1/2 ln(1/0.64) = ln 1.25; r = 0 -> 0; |r| = 1 is capped (finite).
    mi = gaussian_mi(torch.tensor([0.6, -0.6, 0.0, 1.0]))
    assert mi[:3].tolist() == pytest.approx([math.log(1.25), math.log(1.25), 0.0], abs=1e-6)
    assert math.isfinite(mi[3].item()) and mi[3].item() == pytest.approx(0.5 * math.log(1e6), rel=1e-3)


def test_mi_refiner_drops_duplicates_first():
    # Frames: three copies of a, then b and c (random 64-d, nearly uncorrelated with each other).
    g = torch.Generator().manual_seed(0)
    a, b, c = F.normalize(torch.randn(3, 64, generator=g), dim=-1)
    frames = torch.stack([a, a, a, b, c])[None]  # [1,5,64]
    idx = mi_select_frames(frames, 3)[0].tolist()
    # The mean is dominated by a, so an a comes first (most relevant); its copies are the most
    # redundant frames there are, so b and c follow, whatever their order.
    assert idx[0] in (0, 1, 2) and sorted(idx[1:]) == [3, 4]
    torch.testing.assert_close(MIRefiner(3)(frames), ((a + b + c) / 3)[None])
    # The number of kept views is a run-time choice; k >= V is the plain mean.
    torch.testing.assert_close(MIRefiner(3)(frames, k=1), frames[:, idx[0]])
    torch.testing.assert_close(MIRefiner(3)(frames, k=5), frames.mean(dim=1))
    with pytest.raises(ConfigError, match="k must be >= 1"):
        MIRefiner(3)(frames, k=0)
    # Batched: each video selects independently.
    two = torch.stack([frames[0], frames[0].flip(0)])  # [2,5,64]; video 2 has c, b first and the a's last
    picked = mi_select_frames(two, 3)
    assert sorted(picked[1, 1:].tolist()) == [0, 1] and picked[1, 0].item() in (2, 3, 4)


def test_attention_refiner_starts_as_mean_and_learns_weights():
    frames = F.normalize(torch.randn(3, 5, 8), dim=-1)
    ref = AttentionRefiner(8)
    torch.testing.assert_close(ref(frames), frames.mean(dim=1))
    with torch.no_grad():
        ref.score[2].weight.fill_(1.0)
    w = ref.score(frames).softmax(dim=1)
    torch.testing.assert_close(ref(frames), (w * frames).sum(dim=1))
    assert not torch.allclose(ref(frames), frames.mean(dim=1))


def test_build_refiner_by_name_and_the_unknown_name_in_one_line():
    assert isinstance(build_refiner("mean", dim=8), MeanRefiner)
    assert isinstance(build_refiner("attention", dim=8), AttentionRefiner)
    assert build_refiner("select", dim=8, k=3).k == 3 and build_refiner("mi", dim=8, k=2).k == 2
    with pytest.raises(ConfigError, match=r"^unknown refiner 'max'; known: mean, attention, select, mi$"):
        build_refiner("max", dim=8)
    with pytest.raises(ConfigError, match="refiner_k must be >= 1, got 0"):
        build_refiner("select", dim=8, k=0)
    frames = torch.tensor([[[1.0, 0.0], [0.0, 3.0]]])
    assert MeanRefiner()(frames).tolist() == [[0.5, 1.5]]

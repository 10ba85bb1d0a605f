"""Retrieval protocol: hand-computed cases and randomised agreement with the per-query reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geodistill.eval import retrieval_metrics, top1_index, video_descriptors
from oracles import compute_map, reference_metrics  # benchmarks/oracles.py


def ranked_gallery(n: int) -> np.ndarray:
    """1-d gallery whose score against the query [1] is n-1, ..., 1, 0: item i sits at rank i."""
    return np.arange(n - 1, -1, -1, dtype=np.float32)[:, None]


def run(gallery, gallery_labels, query=((1.0,),), query_labels=(7,)):
    return retrieval_metrics(
        np.asarray(query, np.float32), np.asarray(query_labels), gallery, np.asarray(gallery_labels)
    )


def test_single_positive_at_rank_zero():
    out = run(ranked_gallery(5), [7, 1, 2, 3, 4])
    assert out == {
        "recall@1": 100.0,
        "recall@5": 100.0,
        "recall@10": 100.0,
        "recall@top1": 100.0,
        "ap": 100.0,
    }


@pytest.mark.parametrize("r", [1, 3, 11])
def test_single_positive_at_rank_r(r):
    labels = [0] * 12
    labels[r] = 7
    out = run(ranked_gallery(12), labels)
    assert out["ap"] == pytest.approx(100.0 / (2 * (r + 1)))
    assert out["recall@1"] == 0.0
    assert out["recall@5"] == (100.0 if r < 5 else 0.0)
    assert out["recall@10"] == (100.0 if r < 10 else 0.0)


def test_many_positives_trapezoid_ap():
    # good at ranks 1 and 3 of 6: (0 + 1/2)/2/2 + (1/3 + 2/4)/2/2 = 1/8 + 5/24 = 1/3
    out = run(ranked_gallery(6), [0, 7, 0, 7, 0, 0])
    assert out["ap"] == pytest.approx(100.0 / 3)
    assert (out["recall@1"], out["recall@5"]) == (0.0, 100.0)
    # good at ranks 0, 2, 3: (1 + 1)/2/3 + (1/2 + 2/3)/2/3 + (2/3 + 3/4)/2/3
    out = run(ranked_gallery(6), [7, 0, 7, 7, 0, 0])
    assert out["ap"] == pytest.approx(100.0 * (1 / 3 + (7 / 6) / 6 + (17 / 12) / 6))


def test_junk_leaves_the_ranking():
    # Junk items at ranks 0 and 2 are removed: the good item at raw rank 3 ranks 1.
    out = run(ranked_gallery(5), [-1, 0, -1, 7, 0])
    assert out["ap"] == pytest.approx(100.0 / 4)
    assert out["recall@1"] == 0.0 and out["recall@5"] == 100.0
    out = run(ranked_gallery(3), [-1, 7, 0])
    assert out["recall@1"] == 100.0 and out["ap"] == 100.0


def test_query_without_positive_counts_zero_in_denominator():
    out = run(ranked_gallery(4), [7, 0, 0, 0], query=[[1.0], [1.0]], query_labels=[7, 5])
    assert out == {"recall@1": 50.0, "recall@5": 50.0, "recall@10": 50.0, "recall@top1": 50.0, "ap": 50.0}
    # A query labelled -1 never matches the junk items.
    out = run(ranked_gallery(2), [-1, -1], query_labels=[-1])
    assert out["recall@10"] == 0.0 and out["ap"] == 0.0


def test_ties_keep_gallery_order():
    tied = np.ones((4, 1), np.float32)
    # Stable rule: equal scores rank in gallery order, so the good item at index 2 ranks 2.
    out = run(tied, [0, 0, 7, 0])
    assert out["ap"] == pytest.approx(100.0 / 6) and out["recall@1"] == 0.0
    # Junk tied before it leaves: rank 1.
    out = run(tied, [-1, 0, 7, 0])
    assert out["ap"] == pytest.approx(100.0 / 4)
    # A tie with a higher score ahead: scores [2, 1, 1, 1], good at index 3 ranks 3.
    out = run(np.array([[2.0], [1.0], [1.0], [1.0]], np.float32), [0, 0, 0, 7])
    assert out["ap"] == pytest.approx(100.0 / 8)
    assert out == reference_metrics(
        np.ones((1, 1)), [7], np.array([[2.0], [1.0], [1.0], [1.0]]), [0, 0, 0, 7]
    )


def test_signed_zero_scores_tie():
    # Scores -0.0 and +0.0 are equal: gallery order decides, the good item at index 1 ranks 1.
    out = run(np.array([[-0.0], [0.0]], np.float32), [0, 7])
    assert out["ap"] == pytest.approx(100.0 / 4)
    out = run(np.array([[0.0], [-0.0]], np.float32), [0, 7])
    assert out["ap"] == pytest.approx(100.0 / 4)


@pytest.mark.parametrize("few_good", [0, 8])
def test_many_positives_both_counting_strategies(few_good, monkeypatch):
    import geodistill.eval.metrics as m

    monkeypatch.setattr(m, "FEW_GOOD", few_good)
    # 12 items ranked 0..11, good at 0, 2, 3, 5, 6, 8, 9, 10, 11 (9 > FEW_GOOD), junk at 1.
    labels = [7, -1, 7, 7, 0, 7, 7, 0, 7, 7, 7, 7]
    good_ranks = [0, 1, 2, 4, 5, 7, 8, 9, 10]  # junk removed
    ap = sum(((i / r if r else 1.0) + (i + 1) / (r + 1)) / 2 / 9 for i, r in enumerate(good_ranks))
    assert run(ranked_gallery(12), labels)["ap"] == pytest.approx(100.0 * ap)


def test_ties_across_segments_and_blocks(monkeypatch):
    """The tie rule's prefix counts span whole segments and the good item's own segment."""
    import geodistill.eval.metrics as m

    monkeypatch.setattr(m, "SEG_MAX", 4)  # 10 columns -> 3 segments of 4, 2 padding columns
    monkeypatch.setattr(m, "MM_BLOCK_ELEMENTS", 1)  # one query per matmul block
    tied = np.ones((10, 1), np.float32)
    labels = [0, 0, -1, 0, 0, 0, 0, 0, 0, 7]  # good item last, junk at 2: 8 tied items ahead
    assert run(tied, labels)["ap"] == pytest.approx(100.0 / 18)
    labels = [0, 0, -1, 0, 0, 7, 0, 0, 0, 7]  # good at 5 and 9: ranks 4 and 8
    assert run(tied, labels)["ap"] == pytest.approx(100.0 * ((0 + 1 / 5) / 2 + (1 / 8 + 2 / 9) / 2) / 2)


def test_one_good_item_blocks_keep_padding_behind(monkeypatch):
    """Counting in place must not leave the next block's padding columns ahead of negative scores."""
    import geodistill.eval.metrics as m

    monkeypatch.setattr(m, "SEG_MAX", 4)  # 7 columns -> 2 segments of 4, 1 padding column
    monkeypatch.setattr(m, "MM_BLOCK_ELEMENTS", 1)  # one query per matmul block
    gallery = -np.arange(10, 17, dtype=np.float32)[:, None]  # scores -10 ... -16
    queries, labels = np.ones((3, 1), np.float32), [0, 1, 2, 3, 4, 5, 7]
    out = run(gallery, labels, query=queries, query_labels=[7, 7, 7])
    assert out["ap"] == pytest.approx(100.0 / 14) and out["recall@5"] == 0.0
    assert out == reference_metrics(queries, [7, 7, 7], gallery, labels)


def test_k_larger_than_gallery_uses_last_rank():
    out = run(ranked_gallery(3), [0, 0, 7])
    assert (out["recall@1"], out["recall@5"], out["recall@10"]) == (0.0, 100.0, 100.0)
    out = run(ranked_gallery(1), [7])
    assert out["recall@10"] == 100.0 and out["ap"] == 100.0


def test_recall_top1_index():
    assert [top1_index(n) for n in (1, 7, 50, 149, 250, 350, 951, 51355)] == [0, 0, 0, 1, 2, 4, 10, 514]
    # 951 gallery items (University-1652): Recall@top1% reads CMC[10].
    for r, expected in [(10, 100.0), (11, 0.0)]:
        labels = [0] * 951
        labels[r] = 7
        out = run(ranked_gallery(951), labels)
        assert out["recall@top1"] == expected and out["recall@10"] == 0.0


def test_torch_and_numpy_inputs_agree():
    rng = np.random.default_rng(1)
    q, g = rng.normal(size=(9, 8)).astype(np.float32), rng.normal(size=(13, 8)).astype(np.float32)
    ql, gl = rng.integers(0, 4, 9), rng.integers(-1, 4, 13)
    a = retrieval_metrics(q, ql, g, gl)
    b = retrieval_metrics(
        torch.from_numpy(q).double(), torch.from_numpy(ql), torch.from_numpy(g), gl.tolist()
    )
    assert a == b == reference_metrics(q, ql, g, gl)


@pytest.mark.parametrize("seed", range(6))
def test_random_agreement_with_reference(seed, monkeypatch):
    """Bit-identical to the per-query argsort, with many ties (integer features) and tiny blocks."""
    import geodistill.eval.metrics as m

    rng = np.random.default_rng(seed)
    monkeypatch.setattr(m, "MM_BLOCK_ELEMENTS", int(rng.integers(1, 500)))  # forces chunking
    monkeypatch.setattr(m, "TILE_ELEMENTS", int(rng.integers(1, 500)))  # and several tiles per block
    monkeypatch.setattr(m, "SEG_MAX", [1, 4, 64][seed % 3])  # padding, segments before the good item
    monkeypatch.setattr(m, "FEW_GOOD", [0, 1, 8][seed % 3])  # both counting strategies
    n_q, n_g, d = int(rng.integers(1, 60)), int(rng.integers(1, 120)), int(rng.integers(1, 6))
    if seed % 2:
        q, g = rng.integers(-2, 3, (n_q, d)), rng.integers(-2, 3, (n_g, d))
    else:
        q, g = rng.normal(size=(n_q, d)), rng.normal(size=(n_g, d))
    q, g = q.astype(np.float32), g.astype(np.float32)
    ql, gl = rng.integers(0, 8, n_q), rng.integers(-1, 8, n_g)
    assert retrieval_metrics(q, ql, g, gl) == reference_metrics(q, ql, g, gl)


def test_anchor_compute_map_hand_computed():
    # Ranking 4, 0, 3, 1, 2 with junk 0 and good 3, 2: junk removed -> 4, 3, 1, 2; good at rows 1 and 3.
    ap, cmc = compute_map(np.array([4, 0, 3, 1, 2]), np.array([3, 2]), np.array([0]))
    assert ap == pytest.approx(0.5 * (0 + 1 / 2) / 2 + 0.5 * (1 / 3 + 2 / 4) / 2)
    assert cmc.tolist() == [0, 1, 1, 1, 1]
    ap, cmc = compute_map(np.array([1, 0]), np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    assert ap == 0.0 and cmc[0] == -1  # no good item: skipped by the caller


def grid(rng, shape, scale=4):
    """Features on a coarse grid: exact float32 dot products and many tied scores."""
    return (np.round(rng.normal(size=shape) * scale) / scale).astype(np.float32)


@pytest.mark.parametrize("seed", range(8))
def test_random_agreement_with_anchor_ties_junk_multi_positive(seed, monkeypatch):
    """Identical to the published per-query loop: ties, junk, no-positive and many-positive queries."""
    import geodistill.eval.metrics as m

    rng = np.random.default_rng(100 + seed)
    monkeypatch.setattr(m, "MM_BLOCK_ELEMENTS", int(rng.integers(50, 5000)))
    monkeypatch.setattr(m, "TILE_ELEMENTS", int(rng.integers(50, 5000)))
    monkeypatch.setattr(m, "SEG_MAX", [2, 8, 32, 256][seed % 4])
    monkeypatch.setattr(m, "FEW_GOOD", [8, 32][seed // 4])  # many positives: both counting strategies
    n_q, n_g, d = int(rng.integers(20, 120)), int(rng.integers(50, 400)), int(rng.integers(2, 24))
    q, g = grid(rng, (n_q, d), scale=[1, 2, 4, 16][seed % 4]), grid(rng, (n_g, d))
    if seed % 2:  # satellite -> drone shape: few labels, many positives per query (> FEW_GOOD)
        ql, gl = rng.integers(-1, 4, n_q), rng.integers(-1, 4, n_g)
    else:  # drone -> satellite shape: ~1 positive, some queries with none, ~10 % junk
        ql, gl = rng.integers(0, n_g, n_q), rng.integers(0, n_g, n_g)
        gl[rng.random(n_g) < 0.1] = -1
    fast = retrieval_metrics(q, ql, g, gl)
    assert fast == reference_metrics(q, ql, g, gl)
    assert 0.0 < fast["ap"] < 100.0


def test_shape_errors():
    with pytest.raises(ValueError, match="features must be"):
        retrieval_metrics(np.zeros((2, 3)), [0, 1], np.zeros((2, 4)), [0, 1])
    with pytest.raises(ValueError, match="one label"):
        retrieval_metrics(np.zeros((2, 3)), [0], np.zeros((2, 3)), [0, 1])


def test_video_descriptors_mean_not_renormalised():
    frames = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0], [1.0, 1.0]])
    feats, ids = video_descriptors(frames, ["b", "a", "b", "a"])
    assert ids.tolist() == ["b", "a"]
    assert torch.allclose(feats, torch.tensor([[2.0, 2.0], [0.5, 1.0]]))
    feats_np, ids_np = video_descriptors(frames.numpy(), np.array([3, 3, 3, 9]))
    assert isinstance(feats_np, np.ndarray) and ids_np.tolist() == [3, 9]
    np.testing.assert_allclose(feats_np, [[4 / 3, 5 / 3], [1.0, 1.0]], rtol=1e-6)
    with pytest.raises(ValueError, match="3 video ids for 4 frames"):
        video_descriptors(frames, [1, 2, 3])

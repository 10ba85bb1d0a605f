"""The retrieval protocol (Recall@K, Recall@top1%, trapezoid AP), vectorised and bounded in memory.

Protocol (docs/design.md): score = gallery . q, ranked descending; gallery items labelled -1 are
junk and leave the ranking; a query with no good item scores 0 but stays in the denominator.

Tie rule: equal scores keep gallery order, i.e. the ranking a *stable* descending sort gives
(``np.argsort(-scores, kind="stable")``). The rank of a good item j is therefore

    #{non-junk k : s_k > s_j} + #{non-junk k < j : s_k == s_j}

which is what the fast path counts; no gallery row is ever sorted. The good items of each
query come from the labels (gallery indices grouped by label), and queries are processed
grouped by their number of good items, in blocks of [chunk, G] float32 scores. Up to
FEW_GOOD good items: the signs of the score differences to each good score, summed and
counted, give the scores strictly greater and the equal ones (only tied pairs then look at
gallery order). More (satellite -> drone): int64
keys that break ties by gallery index, placed among the good keys by binary search.
Checked bit for bit against the published per-query loop (``geodistill.eval.reference``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

JUNK = -1
RECALL_KS = (1, 5, 10)
# Elements per [rows, G] block (float32: 4 MiB, near cache size: at University-1652 d2s size
# the chunked matmul + counting ran 0.94x one big matmul, 4x blocks 2.9x); flat peak memory.
BLOCK_ELEMENTS = 1 << 20
FEW_GOOD = 8  # up to this many good items per query, count by comparison, else by binary search


def _as_tensor(x: Any, dtype: torch.dtype) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(device="cpu", dtype=dtype).contiguous()


def top1_index(gallery_size: int) -> int:
    """CMC index of Recall@top1%: Python's round(0.01 * |gallery|) (half to even), in range."""
    return min(round(0.01 * gallery_size), max(gallery_size - 1, 0))


def _rank_keys(scores: torch.Tensor, junk: torch.Tensor) -> torch.Tensor:
    """scores [c,G] float32 -> int64 keys [c,G], distinct within a row, larger = ranked ahead.

    High 32 bits: the float's bits mapped to a monotone int32 (-0.0 folded onto +0.0);
    low 32 bits: G-1-k, so equal scores rank in gallery order (the stable-sort rule).
    Junk items get the smallest key: nothing they could outrank is counted.
    """
    n_gallery = scores.shape[1]
    keys = (scores + 0.0).view(torch.int32).to(torch.int64)  # x + 0.0 turns -0.0 into +0.0
    keys ^= (keys >> 31) & 0x7FFFFFFF  # negative floats: flip the magnitude bits (monotone)
    keys <<= 32
    keys += torch.arange(n_gallery - 1, -1, -1, dtype=torch.int64)  # [G] tie-break
    return keys.masked_fill_(junk, torch.iinfo(torch.int64).min)


def _count_ahead_keys(keys: torch.Tensor, good_keys: torch.Tensor) -> torch.Tensor:
    """keys [c,G], good_keys [c,P] ascending -> [c,P]: how many keys exceed each good key.

    Many good items per query (satellite -> drone on University-1652, ~54): place every key
    among the good keys by binary search and count the keys above the i-th good key from
    the histogram (one pass, whatever P).
    """
    c, width = good_keys.shape
    below = torch.searchsorted(good_keys, keys, out_int32=True)  # [c,G]: good keys strictly below
    rows = torch.arange(c, dtype=torch.int32)[:, None] * (width + 1)
    hist = torch.bincount((rows + below).flatten(), minlength=c * (width + 1)).view(c, width + 1)
    # keys above the i-th smallest good key = keys with `below` >= i+1.
    return hist.flip(1).cumsum(1).flip(1)[:, 1:]


def _count_ahead_scores(scores: torch.Tensor, good_j: torch.Tensor) -> torch.Tensor:
    """scores [c,G] (junk already -inf), good_j [c,P] gallery indices -> ranks [c,P] (int64).

    A few good items per query (drone -> satellite has one), all P at once. With t a good
    item's score, d = sign(scores - t) is exact (two distinct finite floats never subtract
    to 0), sum(d) = gt - lt and sum(|d|) = gt + lt, so gt = (sum(d) + sum(|d|)) / 2
    (float32 sums of integers < 2^24 are exact). Ties are G - nonzero (itself included; junk
    counts as lt); only the tied (query, item) pairs look at gallery order: the zeros of d
    before the good item.
    """
    c, width = good_j.shape
    n_gallery = scores.shape[1]
    good = scores.gather(1, good_j)  # [c,P]
    d = torch.sub(scores[:, None, :], good[:, :, None]).sign_()  # [c,P,G] in {-1, 0, 1}
    net = d.sum(2)  # [c,P] gt - lt
    nonzero = d.abs_().sum(2)  # [c,P] gt + lt (abs keeps the zeros; faster than count_nonzero)
    ranks = ((net + nonzero) / 2).to(torch.int64)  # [c,P]
    rr, pp = (nonzero < n_gallery - 1).nonzero(as_tuple=True)  # [n] pairs tied with another item
    if rr.numel():
        pair, k = (d[rr, pp] == 0).nonzero(as_tuple=True)  # tied items (the good item too)
        before = k < good_j[rr[pair], pp[pair]]
        ranks[rr, pp] += torch.bincount(pair[before], minlength=rr.numel())
    return ranks


def _good_ranks(
    q: torch.Tensor, ql: torch.Tensor, g: torch.Tensor, gl: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ranks (junk removed, stable ties) of every good (query, gallery) pair, counted not sorted.

    The rank of a good item is the number of non-junk items ranked ahead of it. Good items
    come from the labels alone (gallery indices grouped by label), so the [Q,G] scores are
    only read by the matmul that writes them and the counting passes. Queries are processed
    grouped by their number of good items, in blocks of [chunk, G] scores.
    q [Q,D], ql [Q], g [G,D], gl [G] -> (query index [P], rank [P]).
    """
    n_gallery = g.shape[0]
    junk = gl == JUNK  # [G]
    has_junk = bool(junk.any())
    by_label = torch.argsort(gl, stable=True)  # [G]: gallery indices grouped by label, ascending
    sorted_labels = gl[by_label]
    lo = torch.searchsorted(sorted_labels, ql)  # [Q]
    n_good = torch.searchsorted(sorted_labels, ql, right=True) - lo  # [Q]
    n_good[ql == JUNK] = 0  # a query labelled -1 matches no junk item
    chunk = max(1, BLOCK_ELEMENTS // max(n_gallery, 1))
    gt = g.T  # [D,G] view: the BLAS call reads it transposed, no copy
    q_out, r_out = [], []
    buf = torch.empty(chunk, n_gallery)  # scores block, reused
    for width in torch.unique(n_good).tolist():
        if width == 0:
            continue
        queries = (n_good == width).nonzero().flatten()  # [n]
        # The counting of a few good items works on [c,P,G]: keep that within the block too.
        step = max(1, chunk // width) if width <= FEW_GOOD else chunk
        for start in range(0, queries.numel(), step):
            rows = queries[start : start + step]  # [c]
            c = rows.numel()
            scores = torch.mm(q.index_select(0, rows), gt, out=buf[:c])  # [c,G]
            good_j = by_label[lo[rows, None] + torch.arange(width)]  # [c,P] ascending gallery index
            if width <= FEW_GOOD:
                if has_junk:
                    scores.masked_fill_(junk, -torch.inf)
                ranks = _count_ahead_scores(scores, good_j)
            else:
                keys = _rank_keys(scores, junk)  # [c,G]
                good_keys = keys.gather(1, good_j)  # [c,P]
                order = good_keys.argsort(1)  # ascending keys
                ahead = _count_ahead_keys(keys, good_keys.gather(1, order))
                ranks = torch.empty_like(ahead).scatter_(1, order, ahead)
            q_out.append(rows[:, None].expand(c, width).flatten())
            r_out.append(ranks.flatten())
    if not q_out:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    return torch.cat(q_out), torch.cat(r_out)


def metrics_from_ranks(
    query_index: np.ndarray, ranks: np.ndarray, n_queries: int, gallery_size: int
) -> dict[str, float]:
    """Recall@1/5/10, Recall@top1% and trapezoid AP (percent) from the good items' ranks.

    ``query_index[p]`` / ``ranks[p]``: the query and the 0-based rank of good pair p.
    """
    query_index = np.asarray(query_index, dtype=np.int64)
    ranks = np.asarray(ranks, dtype=np.int64)
    if n_queries == 0:
        return {f"recall@{k}": 0.0 for k in RECALL_KS} | {"recall@top1": 0.0, "ap": 0.0}
    order = np.lexsort((ranks, query_index))  # by query, then rank
    qi, r = query_index[order], ranks[order]
    n_good = np.bincount(qi, minlength=n_queries)  # [Q]
    first = np.cumsum(n_good) - n_good  # start of each query's run
    i = np.arange(qi.size) - first[qi]  # position of each good item within its query
    # Trapezoid AP: (1/n) * (P_old + P_i) / 2 with P_i = (i+1)/(r+1), P_old = i/r or 1 at r = 0,
    # in the anchor's operation order, summed in rank order per query (bit-identical results).
    p_i = (i + 1) / (r + 1)
    p_old = np.where(r == 0, 1.0, i / np.maximum(r, 1))
    ap = np.bincount(qi, weights=(1.0 / n_good[qi]) * (p_old + p_i) / 2, minlength=n_queries)  # [Q]
    best = np.full(n_queries, np.iinfo(np.int64).max)
    has_good = n_good > 0
    best[has_good] = r[first[has_good]]  # rank of the first good item; CMC is 1 from here on
    last = max(gallery_size - 1, 0)  # K beyond the gallery: the CMC at the last rank

    def recall_at(index: int) -> float:
        return float(100.0 * np.count_nonzero(best <= index) / n_queries)

    out = {f"recall@{k}": recall_at(min(k - 1, last)) for k in RECALL_KS}
    out["recall@top1"] = recall_at(top1_index(gallery_size))
    out["ap"] = float(100.0 * np.sum(ap) / n_queries)
    return out


def retrieval_metrics(
    query_features: Any, query_labels: Any, gallery_features: Any, gallery_labels: Any
) -> dict[str, float]:
    """Recall@1/5/10, Recall@top1% and AP (percent) of queries [Q,D] against a gallery [G,D].

    Accepts torch tensors or numpy arrays; labels are integers, gallery label -1 is junk.
    Features are used as given (the caller normalises); scores are float32.
    """
    q = _as_tensor(query_features, torch.float32)
    g = _as_tensor(gallery_features, torch.float32)
    ql = _as_tensor(query_labels, torch.long).reshape(-1)
    gl = _as_tensor(gallery_labels, torch.long).reshape(-1)
    if q.dim() != 2 or g.dim() != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"features must be [Q,D] and [G,D], got {tuple(q.shape)} and {tuple(g.shape)}")
    if ql.numel() != q.shape[0] or gl.numel() != g.shape[0]:
        raise ValueError("one label per query and per gallery item is required")
    with torch.inference_mode():
        qi, ranks = _good_ranks(q, ql, g, gl)
    return metrics_from_ranks(qi.numpy(), ranks.numpy(), q.shape[0], g.shape[0])


def video_descriptors(frame_features: Any, video_ids: Any) -> tuple[Any, Any]:
    """Group frame descriptors [N,D] by video id -> (mean per video [M,D], ids [M]).

    The mean is NOT re-normalised (the protocol's video descriptor). Videos come out in the
    order of their first frame; the features keep the input's kind (tensor or array).
    """
    is_tensor = isinstance(frame_features, torch.Tensor)
    feats = frame_features if is_tensor else torch.as_tensor(np.asarray(frame_features))
    ids = list(video_ids.tolist() if hasattr(video_ids, "tolist") else video_ids)
    if len(ids) != feats.shape[0]:
        raise ValueError(f"{len(ids)} video ids for {feats.shape[0]} frames")
    slot: dict[Any, int] = {}
    group = torch.tensor([slot.setdefault(v, len(slot)) for v in ids], dtype=torch.long)  # [N]
    sums = torch.zeros(len(slot), feats.shape[1], dtype=feats.dtype, device=feats.device)
    sums.index_add_(0, group.to(feats.device), feats)  # [M,D]
    counts = torch.bincount(group, minlength=len(slot)).to(sums)  # [M]
    means = sums / counts[:, None]
    out_ids = np.asarray(list(slot))
    return (means, out_ids) if is_tensor else (means.numpy(), out_ids)

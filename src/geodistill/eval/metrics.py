"""The retrieval protocol (Recall@K, Recall@top1%, trapezoid AP), vectorised and bounded in memory.

Protocol (docs/design.md): score = gallery . q, ranked descending; gallery items labelled -1 are
junk and leave the ranking; a query with no good item scores 0 but stays in the denominator.

Tie rule: equal scores keep gallery order, i.e. the ranking a *stable* descending sort gives
(``np.argsort(-scores, kind="stable")``). The rank of a good item j is therefore

    #{non-junk k : s_k > s_j} + #{non-junk k < j : s_k == s_j}

which is what the fast path counts (binary search among the few good keys per query); no
gallery row is ever sorted. Scores are float32 matmuls in blocks of [chunk, G].
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

JUNK = -1
RECALL_KS = (1, 5, 10)
# Elements per [rows, G] block (float32: 16 MiB); keeps peak memory flat whatever the sizes.
BLOCK_ELEMENTS = 1 << 22
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


def _count_ahead(keys: torch.Tensor, good_keys: torch.Tensor) -> torch.Tensor:
    """keys [c,G], good_keys [c,P] ascending -> [c,P]: how many keys exceed each good key.

    A few good items per query (drone -> satellite has one): one comparison pass each.
    Many (satellite -> drone on University-1652, ~54): place every key among the good keys
    by binary search and count the keys above the i-th good key from the histogram.
    """
    c, width = good_keys.shape
    if width <= FEW_GOOD:
        cols = [
            (keys > good_keys[:, i : i + 1]).view(torch.uint8).sum(1, dtype=torch.int64) for i in range(width)
        ]
        return torch.stack(cols, dim=1)
    below = torch.searchsorted(good_keys, keys, out_int32=True)  # [c,G]: good keys strictly below
    rows = torch.arange(c, dtype=torch.int32)[:, None] * (width + 1)
    hist = torch.bincount((rows + below).flatten(), minlength=c * (width + 1)).view(c, width + 1)
    # keys above the i-th smallest good key = keys with `below` >= i+1.
    return hist.flip(1).cumsum(1).flip(1)[:, 1:]


def _good_ranks(
    q: torch.Tensor, ql: torch.Tensor, g: torch.Tensor, gl: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ranks (junk removed, stable ties) of every good (query, gallery) pair, counted not sorted.

    The rank of a good item is the number of non-junk items whose key exceeds its key.
    q [Q,D], ql [Q], g [G,D], gl [G] -> (query index [P], rank [P]).
    """
    n_gallery = g.shape[0]
    junk = gl == JUNK  # [G]
    chunk = max(1, BLOCK_ELEMENTS // max(n_gallery, 1))
    int64_max = torch.iinfo(torch.int64).max
    q_out, r_out = [], []
    for start in range(0, q.shape[0], chunk):
        keys = _rank_keys(q[start : start + chunk] @ g.T, junk)  # [c,G]
        c = keys.shape[0]
        good = (ql[start : start + chunk, None] == gl[None, :]) & ~junk  # [c,G]
        qi, gj = good.nonzero(as_tuple=True)  # [p] each, grouped by query
        if qi.numel() == 0:
            continue
        n_good = torch.bincount(qi, minlength=c)  # [c]
        slot = torch.arange(qi.numel()) - (n_good.cumsum(0) - n_good)[qi]  # position within its query
        width = int(n_good.max())
        good_keys = torch.full((c, width), int64_max, dtype=torch.int64)  # padding sorts last
        good_keys[qi, slot] = keys[qi, gj]
        good_keys = good_keys.sort(dim=1).values  # [c,P] ascending
        ahead = _count_ahead(keys, good_keys)  # [c,P]
        real = torch.arange(width)[None, :] < n_good[:, None]  # [c,P]
        q_out.append((torch.arange(c)[:, None] + start).expand(c, width)[real])
        r_out.append(ahead[real])
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
    # Trapezoid AP: (1/n) * (P_old + P_i) / 2 with P_i = (i+1)/(r+1), P_old = i/r or 1 at r = 0.
    p_i = (i + 1) / (r + 1)
    p_old = np.where(r == 0, 1.0, i / np.maximum(r, 1))
    # Summed in rank order per query, as the reference loop does (bit-identical results).
    ap = np.bincount(qi, weights=(p_old + p_i) / 2 / n_good[qi], minlength=n_queries)  # [Q]
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

"""The retrieval protocol (Recall@K, Recall@top1%, trapezoid AP), vectorised and bounded in memory.

Protocol (docs/design.md): score = gallery . q, ranked descending with a stable sort (ties keep
gallery order); gallery items labelled -1 are junk and leave the ranking; a query with no good
item scores 0 but stays in the denominator. No gallery row is ever sorted: each good item's rank
is counted from cache-sized tiles of float32 scores (docs/design.md, "Counting ranks without
sorting", says how and why), and the result is checked bit for bit against the published
per-query loop in the tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

JUNK = -1
RECALL_KS = (1, 5, 10)
MM_BLOCK_ELEMENTS = 1 << 20  # scores per matmul block [rows, G] (4 MiB): flat peak memory
TILE_ELEMENTS = 1 << 18  # signs per counting tile [rows, P, G] per torch thread (1 MiB: stays in L2)
SEG_MAX = 256  # widest segment of the tie rule's prefix counts; the score row is padded to segments
FEW_GOOD = 32  # up to this many good items per query, count by signs, else by binary search


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


def _signs_counts(d: torch.Tensor, seg: int) -> tuple[torch.Tensor, torch.Tensor]:
    """d [c,P,Gp] differences to the good scores -> (gt - lt [c,P], sqrt(nonzeros) [cP*S]); d becomes sign(d).

    sign(d) is exact (two distinct floats never subtract to 0; junk is -inf), so sum(sign)
    = gt - lt, and the nonzeros per segment of ``seg`` columns give gt + lt and, for the
    tie rule, the items before j not tied with it; they are read as the segment's L2 norm
    (sum of sign^2 = nonzeros), one vectorised read-only pass. Float32 ops only, in place,
    on a tile sized to stay in the core's cache: comparisons to bool and integer casts cost
    several float passes each here.
    """
    net = d.sign_().sum(2)  # [c,P]; d in {-1, 0, 1}
    return net, torch.linalg.vector_norm(d.view(-1, seg), dim=1)  # [cP*S]


def _count_ahead_signs(
    block: torch.Tensor, good_j: torch.Tensor, seg: int, tile: torch.Tensor
) -> torch.Tensor:
    """block [c,Gp] scores (junk and padding -inf), good_j [c,P] gallery indices -> ranks [c,P] (int64).

    A few good items per query, all P at once, tile by tile (``_signs_counts``): gt =
    (sum(sign) + nonzeros) / 2, exact (float32 sums of integers < 2^24; a segment's norm
    squared and rounded is its count of nonzeros). One good item (drone -> satellite): the
    differences are taken in place in the block (its scores are not read again); more: in
    ``tile``, one [rows, P, Gp] tile at a time. The stable tie rule then adds the items
    tied with the good item j that come before it, only for the pairs that have a tie:
    whole segments before j's (their width minus their nonzeros), then j's own segment.
    """
    c, width = good_j.shape
    padded = block.shape[1]
    n_seg = padded // seg
    good = block.gather(1, good_j)  # [c,P]
    # Each torch thread takes its share of a tile's elementwise ops: TILE_ELEMENTS per thread's cache.
    rows_per_tile = max(1, TILE_ELEMENTS * torch.get_num_threads() // (width * padded))
    parts = []
    for i in range(0, c, rows_per_tile):
        rows = slice(i, i + rows_per_tile)
        if width == 1:
            d = block[rows].sub_(good[rows])[:, None, :]  # [r,1,Gp], in place
        else:
            scores = block[rows]  # [r,Gp]
            out = tile[: scores.shape[0] * width * padded].view(-1, width, padded)
            d = torch.sub(scores[:, None, :], good[rows, :, None], out=out)  # [r,P,Gp]
        parts.append(_signs_counts(d, seg))
    net = torch.cat([p[0] for p in parts]).view(-1)  # [cP]
    per_seg = torch.cat([p[1] for p in parts]).square_().round_().view(c * width, n_seg)  # [cP,S]
    nonzero = per_seg.sum(1)  # [cP] gt + lt
    ranks = ((net + nonzero) / 2).to(torch.int64)  # [cP] gt
    tied = (nonzero < padded - 1).nonzero().squeeze(1)  # [n] pairs tied with another item
    if tied.numel():
        row, j = tied // width, good_j.view(-1)[tied]  # [n]
        segment = j // seg  # [n]
        zeros = seg - per_seg[tied]  # [n,S] items tied with t per segment (j's own counts itself)
        ahead = zeros.cumsum(1).sub_(zeros).gather(1, segment[:, None]).squeeze(1)  # [n] in segments before
        own = block.view(c * n_seg, seg).index_select(0, row * n_seg + segment)  # [n,seg]: j's segment
        # Tied in j's segment: a score equal to t, or (one good item) a zero of sign(score - t).
        pair, k = (own == (0.0 if width == 1 else good.view(-1)[tied, None])).nonzero(as_tuple=True)
        ahead_own = torch.bincount(pair[k < (j - segment * seg)[pair]], minlength=tied.numel())  # [n]
        ranks[tied] += ahead.to(torch.int64) + ahead_own
    return ranks.view(c, width)


def _good_ranks(
    q: torch.Tensor, ql: torch.Tensor, g: torch.Tensor, gl: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ranks (junk removed, stable ties) of every good (query, gallery) pair, counted not sorted.

    The rank of a good item is the number of non-junk items ranked ahead of it. Good items
    come from the labels alone (gallery indices grouped by label), so the [Q,G] scores are
    only read by the matmul that writes them and the counting passes. Queries are taken in
    order of their number of good items P, in matmul blocks of [rows, G] scores (full-sized
    whatever the P mix: an efficient matmul), each block's runs of equal P counted at once,
    tile by tile while the block is still in cache. The block is padded to whole segments
    (at most SEG_MAX columns each) with -inf, so padding, like junk, ranks behind every
    good item.
    q [Q,D], ql [Q], g [G,D], gl [G] -> (query index [N], rank [N]) over the N good pairs.
    """
    n_gallery = g.shape[0]
    n_segments = -(-n_gallery // SEG_MAX)
    seg = -(-n_gallery // n_segments)  # <= SEG_MAX, padding < n_segments columns
    padded = n_segments * seg
    junk = gl == JUNK  # [G]
    # Junk and padding columns: -inf in every block (the in-place signs of one good item overwrite them).
    minus_inf_cols = torch.cat([junk.nonzero().squeeze(1), torch.arange(n_gallery, padded)])  # [J + pad]
    by_label = torch.argsort(gl, stable=True)  # [G]: gallery indices grouped by label, ascending
    sorted_labels = gl[by_label]
    lo = torch.searchsorted(sorted_labels, ql)  # [Q]
    n_good = torch.searchsorted(sorted_labels, ql, right=True) - lo  # [Q]
    n_good[ql == JUNK] = 0  # a query labelled -1 matches no junk item
    order = torch.argsort(n_good, stable=True)  # [Q]: queries by number of good items
    order = order[n_good[order] > 0]  # [Q'] queries with a good item
    if not order.numel():
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    widths = n_good[order]  # [Q'] ascending
    chunk = max(1, MM_BLOCK_ELEMENTS // padded)
    gt = g.T  # [D,G] view: the BLAS call reads it transposed, no copy
    buf = torch.empty(min(chunk, order.numel()), padded)  # scores block [c,Gp], reused
    q_buf = torch.empty(buf.shape[0], q.shape[1])  # the block's query features
    few_max = min(int(widths[-1]), FEW_GOOD)
    tile_elements = TILE_ELEMENTS * torch.get_num_threads()
    tile = torch.empty(max(tile_elements, few_max * padded) if widths[0] <= FEW_GOOD else 0)
    q_out, r_out = [], []
    for start in range(0, order.numel(), chunk):
        rows = order[start : start + chunk]  # [c]
        c = rows.numel()
        first_row = int(rows[0])
        if torch.equal(rows, torch.arange(first_row, first_row + c)):  # e.g. every query has one good item
            q_rows = q[first_row : first_row + c]  # [c,D] view, no copy
        else:
            q_rows = torch.index_select(q, 0, rows, out=q_buf[:c])  # [c,D]
        scores = torch.mm(q_rows, gt, out=buf[:c, :n_gallery])  # [c,G] in [c,Gp]
        if minus_inf_cols.numel():
            buf[:c].index_fill_(1, minus_inf_cols, -torch.inf)  # junk ranks behind every good item
        run_widths, run_lengths = torch.unique_consecutive(widths[start : start + chunk], return_counts=True)
        first = 0
        for width, length in zip(run_widths.tolist(), run_lengths.tolist()):
            part = slice(first, first + length)
            first += length
            good_j = by_label[lo[rows[part], None] + torch.arange(width)]  # [n,P] ascending gallery index
            if width <= FEW_GOOD:
                ranks = _count_ahead_signs(buf[part], good_j, seg, tile)
            else:
                keys = _rank_keys(scores[part], junk)  # [n,G]
                good_keys = keys.gather(1, good_j)  # [n,P]
                key_order = good_keys.argsort(1)  # ascending keys
                ahead = _count_ahead_keys(keys, good_keys.gather(1, key_order))
                ranks = torch.empty_like(ahead).scatter_(1, key_order, ahead)
            q_out.append(rows[part, None].expand(length, width).flatten())
            r_out.append(ranks.flatten())
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

"""Retrieval metrics: vectorised fast path vs the per-query reference loop, then UniV/University-1652 sizes.

Run: python benchmarks/bench_metrics.py

Part 1 uses features on a 1/16 grid, so every float32 dot product is exact whatever the
summation order (BLAS matmul vs matvec): the two paths must agree bit for bit, ties included.
Part 2 times University-1652-sized problems, each in a fresh process, and reports how much
the peak RSS grew during the call (< 2 GB), the features already being in memory.
"""

from __future__ import annotations

import multiprocessing
import resource
import time

import numpy as np
import torch

from geodistill.eval import retrieval_metrics
from geodistill.eval.reference import reference_metrics


def grid_features(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """Multiples of 1/16 in [-2, 2]: dot products are exact in float32 (|sum| * 256 < 2^24)."""
    return (np.clip(np.round(rng.normal(size=(n, d)) * 16), -32, 32) / 16).astype(np.float32)


def unit_features(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def fast_vs_reference() -> None:
    rng = np.random.default_rng(0)
    n_q, n_g, d = 2000, 5000, 256
    q, g = grid_features(rng, n_q, d), grid_features(rng, n_g, d)
    ql = rng.integers(0, 1000, n_q)
    gl = rng.integers(-1, 1000, n_g)  # ~0.1% junk, ~5 positives per query
    retrieval_metrics(q[:10], ql[:10], g, gl)  # warm-up
    t0 = time.perf_counter()
    fast = retrieval_metrics(q, ql, g, gl)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = reference_metrics(q, ql, g, gl)
    t_ref = time.perf_counter() - t0
    assert fast == ref, (fast, ref)
    qt, gt = torch.from_numpy(q), torch.from_numpy(g)
    t0 = time.perf_counter()
    qt @ gt.T  # the scores alone: no method that reads every score can beat this
    t_mm = time.perf_counter() - t0
    print(f"{n_q} queries x {n_g} gallery x {d}-d")
    print(f"  reference per-query loop: {t_ref:8.3f} s")
    print(f"  fast (vectorised)       : {t_fast:8.3f} s")
    print(f"  speed-up                : {t_ref / t_fast:8.1f}x   identical: {fast == ref}")
    print(f"  float32 score matmul    : {t_mm:8.3f} s  (speed-up ceiling {t_ref / t_mm:.1f}x)")
    print(f"  metrics: {fast}")


def university_sized(name: str, n_q: int, n_g: int, positives_per_query: int, d: int = 512) -> None:
    """Labels as in University-1652: 951 gallery buildings, 701 with queries."""
    rng = np.random.default_rng(1)
    buildings = np.arange(951)
    if positives_per_query == 1:  # drone -> satellite: one tile per building
        gl = buildings
        ql = rng.choice(buildings[:701], n_q)
    else:  # satellite -> drone: ~54 drone images per building
        gl = np.sort(rng.choice(buildings, n_g))
        ql = buildings[:n_q]
    q, g = unit_features(rng, n_q, d), unit_features(rng, n_g, d)
    before = peak_rss_mb()
    t0 = time.perf_counter()
    out = retrieval_metrics(q, ql, g, gl)
    dt = time.perf_counter() - t0
    grew = peak_rss_mb() - before
    print(
        f"{name}: {n_q} x {n_g} x {d}-d  {dt:.2f} s  peak RSS growth {grew:.0f} MB  R@1 {out['recall@1']:.2f}"
    )
    assert grew < 2048


if __name__ == "__main__":
    fast_vs_reference()
    spawn = multiprocessing.get_context("spawn")  # a fresh peak RSS per problem
    for args in [("drone->satellite", 37855, 951, 1), ("satellite->drone", 701, 51355, 54)]:
        proc = spawn.Process(target=university_sized, args=args)
        proc.start()
        proc.join()
        assert proc.exitcode == 0

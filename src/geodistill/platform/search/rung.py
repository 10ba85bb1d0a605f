"""ASHA's rung rule, for trials that must stop themselves (Ray Train trials hosting a TorchTrainer).

Why: in Ray 2.60 a Tune scheduler that stops a trial running a ``TorchTrainer`` leaks the
trainer's workers and later trials hang (ray issue #54305). So a Ray Train trial is never
stopped from outside: its rank-0 worker asks ``RungRule(epoch, metrics)`` after every epoch
(``TrainContext.should_stop``), and the loop ends cleanly, checkpoint and all.

The rule is ASHA's (``ray.tune.schedulers.AsyncHyperBandScheduler``, one bracket): milestones
at ``grace_period * reduction_factor**k`` epochs below ``max_t``; a trial reaching a milestone
is compared with the values recorded there before it and stops when it is below their
``(1 - 1/reduction_factor)`` quantile; its value is then recorded. The rung values live in a
store all trials share: a JSON file under a lock (one node or a shared file system), or a named
Ray actor (any cluster).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from geodistill.leaderboard.pareto import nondominated_ranks


def milestones(*, grace_period: int, reduction_factor: float, max_t: int) -> list[int]:
    """Epochs at which trials are compared, ascending (Ray's ASHA rungs for bracket 0)."""
    if grace_period < 1 or reduction_factor <= 1 or max_t < grace_period:
        raise ValueError("need grace_period >= 1, reduction_factor > 1 and max_t >= grace_period")
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    return sorted({min(max_t, int(grace_period * reduction_factor**k)) for k in range(count)})


def cutoff(recorded: list[float], reduction_factor: float) -> float | None:
    """The value a trial must reach at a rung to go on; None when nothing is recorded yet."""
    if not recorded:
        return None
    return float(np.nanpercentile(recorded, (1 - 1 / reduction_factor) * 100))


def pareto_stop(before: list[list[float]], point: tuple[float, float], reduction_factor: float) -> bool:
    """MO-ASHA's rung decision on (value up, cost down) (Schmucker et al. 2021, non-dominated sorting).

    The points recorded at the rung and this one are sorted into fronts, and within a front the
    cheaper first (going on costs its remaining epochs x its GFLOPs: the cheap end of a front is
    the cheapest to keep, and the end the search is for). The trial goes on when it is among the
    first ``ceil(n / reduction_factor)`` of the ``n`` points; the first trial at a rung always
    goes on. A front's most precise point is not kept at any price: on the recorded table,
    exempting the first front let single 0.6-GFLOPs trials train to the end on an early lead
    (benchmarks/RESULTS.md, issue 28).
    """
    if not before:
        return False
    points = np.array([*before, point], dtype=np.float64)
    ranks = nondominated_ranks(points, [True, False])
    me = len(points) - 1
    cheaper = (ranks == ranks[me]) & (points[:, 1] < points[me, 1])
    ahead = int((ranks < ranks[me]).sum() + cheaper.sum())
    return ahead >= max(1, math.ceil(len(points) / reduction_factor))


class RungStore(Protocol):
    def record(self, milestone: int, trial_id: str, value: float | list[float]) -> list:
        """Record ``value`` for ``trial_id`` at ``milestone``; return the values recorded before it
        (other trials only). Recording twice (a resumed trial) keeps the first value."""
        ...


class FileRungStore:
    """Rung values in ``<folder>/rungs.json``, updated under an exclusive ``flock``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def record(self, milestone: int, trial_id: str, value: float | list[float]) -> list:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "rungs.json"
        with open(self.folder / ".rungs.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                rungs = json.loads(path.read_text()) if path.is_file() else {}
                rung = rungs.setdefault(str(milestone), {})
                before = [v for t, v in rung.items() if t != trial_id]
                rung.setdefault(trial_id, value)
                tmp = path.with_name(f".rungs.{os.getpid()}.tmp")
                tmp.write_text(json.dumps(rungs, sort_keys=True))
                os.replace(tmp, path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return before


class MemoryRungs:
    """The same table in one process's memory: a named actor's (for clusters without a shared
    file system, wrapped by ``ray.remote``) or a replayed search's (benchmarks/bench_search_replay.py)."""

    def __init__(self) -> None:
        self.rungs: dict[int, dict[str, float | list[float]]] = {}

    def record(self, milestone: int, trial_id: str, value: float | list[float]) -> list:
        rung = self.rungs.setdefault(milestone, {})
        before = [v for t, v in rung.items() if t != trial_id]
        rung.setdefault(trial_id, value)
        return before


class RayRungStore:
    """Rung values in a named Ray actor; ``create()`` it in the search driver, pickle it into trials."""

    def __init__(self, name: str, namespace: str = "geodistill") -> None:
        self.name, self.namespace = name, namespace

    def create(self) -> RayRungStore:
        import ray

        ray.remote(num_cpus=0)(MemoryRungs).options(
            name=self.name, namespace=self.namespace, get_if_exists=True, lifetime=None
        ).remote()
        return self

    def record(self, milestone: int, trial_id: str, value: float | list[float]) -> list:
        import ray

        actor = ray.get_actor(self.name, namespace=self.namespace)
        return ray.get(actor.record.remote(milestone, trial_id, value))


class RungRule:
    """``should_stop(epoch, metrics)`` for one trial: ASHA's decision at each milestone it reaches.

    With ``cost`` (the trial's GFLOPs) the decision is ``pareto_stop`` and the store records
    ``[value, cost]``; values a store holds from a search before (bare numbers) are not compared.
    """

    def __init__(
        self,
        store: RungStore,
        *,
        trial_id: str,
        metric: str,
        mode: str = "max",
        grace_period: int = 1,
        reduction_factor: float = 2,
        max_t: int,
        cost: float | None = None,
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be max or min, got {mode!r}")
        self.store, self.trial_id, self.metric, self.mode = store, trial_id, metric, mode
        self.reduction_factor, self.cost = reduction_factor, cost
        self.milestones = milestones(
            grace_period=grace_period, reduction_factor=reduction_factor, max_t=max_t
        )
        self.max_t = max_t
        self.decisions: list[tuple[int, float, float | None, bool]] = []  # (milestone, value, cutoff, stop)

    def __call__(self, epoch: int, metrics: Mapping[str, float]) -> bool:
        return self.should_stop(epoch, metrics)

    def should_stop(self, epoch: int, metrics: Mapping[str, float]) -> bool:
        # Like ASHA: only the highest milestone reached (and below max_t) counts, once.
        reached = [m for m in self.milestones if m <= epoch and m < self.max_t]
        if not reached or self.metric not in metrics:
            return False
        milestone = reached[-1]
        if any(d[0] == milestone for d in self.decisions):
            return False
        value = float(metrics[self.metric])
        signed = value if self.mode == "max" else -value
        if self.cost is None:
            before = self.store.record(milestone, self.trial_id, signed)
            limit = cutoff([b for b in before if not isinstance(b, list)], self.reduction_factor)
            stop = limit is not None and signed < limit
        else:
            before = self.store.record(milestone, self.trial_id, [signed, float(self.cost)])
            pairs = [b for b in before if isinstance(b, list)]
            limit, stop = None, pareto_stop(pairs, (signed, float(self.cost)), self.reduction_factor)
        self.decisions.append((milestone, value, limit, stop))
        return stop

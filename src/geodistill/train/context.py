"""How the plain training loop talks to whatever runs it (this process, or a Ray Train worker).

``fit`` writes each epoch's checkpoint into a scratch directory and hands it to
``context.report``; the context persists it (``InProcessContext`` copies it under the run
directory; ``platform``'s ``RayTrainWorkerContext`` and ``TuneTrialContext`` hand it to Ray,
which copies it to storage), and ``fit`` then
deletes the scratch copy. Every rank calls ``report`` each epoch (Ray needs all workers to);
only rank 0 passes a checkpoint and the evaluation metrics.

Epochs are counted 1-based as "epochs completed": the first report says epoch 1, its
checkpoint is epoch_0001, and resuming from it starts the second epoch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

CHECKPOINT_PATTERN = re.compile(r"^epoch_(\d{4,})$")
BEST_METRIC = "d2s_recall1"  # what "best" means for train.keep_checkpoints=last_best


@runtime_checkable
class TrainContext(Protocol):
    """What ``fit`` needs from its runner: identity, reporting, resume point, early-stop rule."""

    rank: int
    world_size: int
    device: torch.device

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None = None) -> None: ...

    def latest_checkpoint(self) -> Path | None:
        """A checkpoint directory to resume from, or None to start fresh."""
        ...

    def should_stop(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Stop now that ``epoch`` epochs are done (e.g. a search's rung rule); fit uses rank 0's answer."""
        ...


def default_device(rank_local: int | None = None) -> torch.device:
    """cuda:<local rank> when a GPU is visible, else cpu."""
    if torch.cuda.is_available():
        local = rank_local if rank_local is not None else int(os.environ.get("LOCAL_RANK", 0))
        return torch.device("cuda", local % torch.cuda.device_count())
    return torch.device("cpu")


class InProcessContext:
    """``fit`` in this process: checkpoints under ``<run_dir>/checkpoints/epoch_NNNN``, resumes from the latest.

    Rank and world size come from an initialised ``torch.distributed`` group when there is
    one. Rank 0 appends every report to ``<run_dir>/metrics.jsonl`` and keeps it in
    ``history``. ``stop_after`` (optional) stops the run once that many epochs are done;
    ``rule`` (optional, ``(epoch, metrics) -> bool``) stops it when the rule says so.
    ``keep="last_best"`` prunes older epochs after each report (``prune_checkpoints``).
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        rank: int | None = None,
        world_size: int | None = None,
        device: torch.device | str | None = None,
        stop_after: int | None = None,
        rule: Callable[[int, dict[str, float]], bool] | None = None,
        keep: str = "all",
    ) -> None:
        dist = torch.distributed
        initialised = dist.is_available() and dist.is_initialized()
        self.rank = rank if rank is not None else (dist.get_rank() if initialised else 0)
        self.world_size = (
            world_size if world_size is not None else (dist.get_world_size() if initialised else 1)
        )
        self.device = torch.device(device) if device is not None else default_device()
        self.run_dir = Path(run_dir)
        self.checkpoints = self.run_dir / "checkpoints"
        self.stop_after = stop_after
        self.rule = rule
        self.keep = keep
        self.history: list[dict[str, float]] = []

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None = None) -> None:
        """Rank 0: persist ``checkpoint_dir`` as epoch_NNNN (atomic rename) and log ``metrics``."""
        if self.rank != 0:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if checkpoint_dir is not None:
            epoch = int(metrics["epoch"])
            dest = self.checkpoints / f"epoch_{epoch:04d}"
            tmp = self.checkpoints / f".epoch_{epoch:04d}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(checkpoint_dir, tmp)
            shutil.rmtree(dest, ignore_errors=True)
            tmp.rename(dest)
            if self.keep == "last_best":
                prune_checkpoints(self.checkpoints)
        self.history.append(dict(metrics))
        with open(self.run_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(metrics, sort_keys=True) + "\n")

    def latest_checkpoint(self) -> Path | None:
        """The highest complete epoch_NNNN directory (meta.json is written last), or None."""
        return latest_checkpoint_in(self.checkpoints)

    def should_stop(self, epoch: int, metrics: dict[str, float]) -> bool:
        if self.stop_after is not None and epoch >= self.stop_after:
            return True
        return self.rule is not None and bool(self.rule(epoch, metrics))


def latest_checkpoint_in(folder: str | Path) -> Path | None:
    """The epoch_NNNN directory with the highest epoch that holds meta.json, or None."""
    done = _complete_checkpoints(folder)
    return done[-1][1] if done else None


def prune_checkpoints(folder: str | Path, metric: str = BEST_METRIC) -> list[Path]:
    """Keep the latest complete epoch_NNNN (whole: resuming needs its train_state.pt) and the one
    with the best evaluated ``metric`` (its weights and meta only); remove the rest. Returns the
    directories removed. A run of 12 epochs keeps at most 2 checkpoints instead of 12."""
    done = _complete_checkpoints(folder)
    if len(done) < 2:
        return []
    latest = done[-1][1]
    scored = []
    for epoch, path in done:
        value = json.loads((path / "meta.json").read_text()).get("metrics", {}).get(metric)
        if value is not None:
            scored.append((float(value), epoch, path))
    best = max(scored, key=lambda s: (s[0], -s[1]))[2] if scored else latest  # ties: the earlier epoch
    removed = []
    for _, path in done:
        if path not in (latest, best):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    drop_stale_state(folder)
    return removed


def drop_stale_state(folder: str | Path, keep: str | Path | None = None) -> list[Path]:
    """Delete ``train_state.pt`` from every complete epoch_NNNN but ``keep`` (default: the latest,
    the one a run resumes from); returns the files deleted. The weights stay loadable."""
    done = _complete_checkpoints(folder)
    kept = Path(keep).resolve() if keep is not None else (done[-1][1].resolve() if done else None)
    gone = []
    for _, path in done:
        if path.resolve() == kept:
            continue
        state = path / "train_state.pt"
        if state.is_file():
            state.unlink(missing_ok=True)
            gone.append(state)
    return gone


def _complete_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """(epoch, dir) of every epoch_NNNN under ``folder`` that holds meta.json, oldest first."""
    folder = Path(folder)
    done = []
    for path in folder.iterdir() if folder.is_dir() else ():
        m = CHECKPOINT_PATTERN.match(path.name)
        if m and (path / "meta.json").is_file():
            done.append((int(m.group(1)), path))
    return sorted(done)

"""What a search keeps on disk: the front's weights, not every trial's optimizer state.

Each trial keeps its last checkpoint (``CheckpointConfig(num_to_keep=1)``) with
``train_state.pt``, the optimizer, scheduler and RNG state a retried or resumed trial continues
from. Once a trial has ended nothing resumes it, so ``DropFinishedState`` deletes that file from
its checkpoints on local storage. When the search ends, ``prune_off_front`` (``--keep-checkpoints
front``, the default) removes the checkpoint folders of ended trials off the Pareto front
(``leaderboard.pareto.pareto_rows``): a dominated trial stays dominated whatever runs later, so
its weights are never a search's answer. Their leaderboard rows stay, ``checkpoint_uri`` null.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ray.tune import Callback

from geodistill.train.checkpoint import STATE_FILE


class DropFinishedState(Callback):
    """Remove ``train_state.pt`` from an ended trial's checkpoints (local storage only)."""

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        drop_state(trial.path)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # Called once the trial has failed for good (Tune retries first while --max-failures allows).
        drop_state(trial.path)


def _local(path: str | None) -> Path | None:
    if not path or "://" in str(path):
        return None
    return Path(path)


def drop_state(trial_path: str | None) -> list[Path]:
    """Delete ``checkpoint_*/train_state.pt`` under a local trial folder; returns what was deleted."""
    folder = _local(trial_path)
    if folder is None:
        return []
    gone = []
    for state in folder.glob(f"checkpoint_*/{STATE_FILE}"):
        state.unlink(missing_ok=True)
        gone.append(state)
    return gone


def prune_off_front(ended: Iterable[Any], rows: Any, front: Any, leaderboard: str) -> list[Path]:
    """Remove the local checkpoint folders of the ``ended`` Tune trials whose rows are not in
    ``front``, and rewrite those rows with ``checkpoint_uri`` null; returns the folders removed.

    ``rows`` and ``front`` are this search's leaderboard rows and their Pareto set (polars
    frames). A trial's folders are its ``checkpoint_*`` and, for a Ray Train trial, the folder
    its row names (under ``<experiment>/trainers``).
    """
    from geodistill.leaderboard import Leaderboard

    on_front = set(front["trial_id"].to_list()) if front.height else set()
    paths = {t.trial_id: t.path for t in ended}
    removed: list[Path] = []
    marked: list[dict[str, Any]] = []
    for row in rows.iter_rows(named=True):
        trial_id = row["trial_id"]
        if trial_id in on_front or trial_id not in paths:
            continue
        trial_dir = _local(paths[trial_id])
        folders = sorted(trial_dir.glob("checkpoint_*")) if trial_dir else []
        named = _local(row["checkpoint_uri"])
        if named is not None and named.name.startswith("checkpoint_") and named not in folders:
            folders.append(named)
        for folder in folders:
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        if named is not None and not named.exists():  # a URI checkpoint is left as it is
            marked.append({**row, "checkpoint_uri": None, "created_at": datetime.now(UTC)})
    if marked:
        Leaderboard(leaderboard).write(marked)
    return removed

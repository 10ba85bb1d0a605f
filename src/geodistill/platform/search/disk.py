"""A finished trial's checkpoint keeps its weights, not its optimizer state.

Each trial keeps its last checkpoint (``CheckpointConfig(num_to_keep=1)``) with
``train_state.pt``: the optimizer, scheduler and RNG state a retried or resumed trial continues
from, twice the weights' size for AdamW. Once a trial has ended (finished, stopped early or
failed for good) nothing resumes it, so ``DropFinishedState`` deletes that file from its
checkpoints on local storage; the weights and ``meta.json`` stay for eval, export and reports.
(A 2-trial smoke search took 337 MB before, issue 29.)
"""

from __future__ import annotations

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


def drop_state(trial_path: str | None) -> list[Path]:
    """Delete ``checkpoint_*/train_state.pt`` under a local trial folder; returns what was deleted."""
    if not trial_path or "://" in str(trial_path):
        return []
    gone = []
    for state in Path(trial_path).glob(f"checkpoint_*/{STATE_FILE}"):
        state.unlink(missing_ok=True)
        gone.append(state)
    return gone

"""What a search keeps on disk: the front's weights, not every trial's optimizer state.

Each trial keeps its last checkpoint with ``train_state.pt``, what a retried or resumed trial
continues from. An ended trial resumes nothing: ``DropFinishedState`` deletes that file as a trial
completes, stops or fails, and ``settle_ended`` does so at the search's end for trials its time
budget stopped (Tune tells no callback), with the unregistered checkpoint of the epoch in flight.
``prune_off_front`` (``--keep-checkpoints front``) removes the checkpoint folders of ended trials
off the Pareto front (a dominated trial stays dominated); their rows stay, ``checkpoint_uri`` null.
A Ray Train trial's ``epoch_NNNN`` folders under ``<experiment>/trainers/<trial_id>`` follow the
same rules. On URI storage (``--storage s3://...``) they apply through the store's pyarrow file
system, never outside the experiment's folder, and no URI or scheme-less store path
(``bucket/...``) is read as a local path.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ray.tune import Callback

from geodistill.errors import one_line
from geodistill.platform.runtime.remote import store_path
from geodistill.train.context import CHECKPOINT_PATTERN
from geodistill.train.layout import STATE_FILE

TRAINERS_DIR = "trainers"  # <experiment>/trainers/<trial_id>: a Ray Train trial's run folder


class DropFinishedState(Callback):
    """Remove ``train_state.pt`` from an ended trial's checkpoints (local or URI storage)."""

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        _drop_ended_state(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # Called once the trial has failed for good (Tune retries first while --max-failures allows).
        _drop_ended_state(trial)


def _drop_ended_state(trial: Any) -> list[Path | str]:
    """The training state of an ended trial's checkpoints and of its Ray Train run's epochs."""
    store = _store(trial)
    if store is not None:
        fs, folder = store
        return [*drop_state_on(fs, folder), *drop_state_on(fs, _trainers_on_store(trial, folder))]
    return [*drop_state(_local_trial_path(trial)), *drop_state(_trainer_run(trial))]


def _local(path: str | None) -> Path | None:
    """``path`` as a local path: None for a URI and for a relative path (Ray's path on a store,
    ``bucket/...``, has no scheme: read locally it would name a folder under the cwd)."""
    path = str(path).removeprefix("file://") if path else None
    if not path or "://" in path or not Path(path).is_absolute():
        return None
    return Path(path)


def _store(trial: Any) -> tuple[Any, str] | None:
    """(pyarrow file system, trial folder on it) of a trial Tune keeps on URI storage, else None."""
    fs = getattr(getattr(trial, "storage", None), "storage_filesystem", None)
    path = getattr(trial, "path", None)
    if fs is None or getattr(fs, "type_name", "local") == "local" or not path:
        return None
    return fs, str(path).rstrip("/")


def _trainers_on_store(trial: Any, folder: str) -> str:
    """``<experiment>/trainers/<trial_id>`` on the store, beside the trial's folder ``folder``."""
    return f"{folder.rpartition('/')[0]}/{TRAINERS_DIR}/{trial.trial_id}"


def _checkpoint_dirs_on(fs: Any, folder: str) -> list[Any]:
    """The ``checkpoint_*`` and ``epoch_NNNN`` folders directly under ``folder`` on ``fs``."""
    import pyarrow.fs as pafs

    infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    return sorted(
        (
            i
            for i in infos
            if i.type == pafs.FileType.Directory
            and (i.base_name.startswith("checkpoint_") or CHECKPOINT_PATTERN.match(i.base_name))
        ),
        key=lambda i: i.path,
    )


def drop_state_on(fs: Any, folder: str) -> list[str]:
    """``drop_state`` on a pyarrow file system (a trial folder or Ray Train run on URI storage)."""
    gone = []
    for info in _checkpoint_dirs_on(fs, folder):
        state = f"{info.path.rstrip('/')}/{STATE_FILE}"
        if fs.get_file_info(state).is_file:
            fs.delete_file(state)
            gone.append(state)
    return gone


def _local_trial_path(trial: Any) -> str | None:
    """The trial's folder when Tune stores it on the local file system (``trial.path`` is a
    file-system path without its scheme: ``bucket/...`` on S3), else None."""
    fs = getattr(getattr(trial, "storage", None), "storage_filesystem", None)
    if fs is not None and getattr(fs, "type_name", "local") != "local":
        return None
    return getattr(trial, "path", None)


def _trainer_run(trial: Any) -> str | None:
    """A Ray Train trial's run folder (local storage): the parent of the ``epoch_NNNN`` its last
    result names (``checkpoint_uri``), else ``<experiment>/trainers/<trial_id>`` where it exists
    (a trial the time budget cut, or one that failed, reported no result); None for any other trial."""
    named = _local((getattr(trial, "last_result", None) or {}).get("checkpoint_uri"))
    if named is not None and CHECKPOINT_PATTERN.match(named.name):
        return str(named.parent)
    trial_path = _local(_local_trial_path(trial))
    trial_id = getattr(trial, "trial_id", None)
    if trial_path is None or not trial_id:
        return None
    run = trial_path.parent / TRAINERS_DIR / trial_id  # as trial.py lays a Ray Train trial out
    return str(run) if run.is_dir() else None


def drop_state(trial_path: str | None) -> list[Path]:
    """Delete ``checkpoint_*/train_state.pt`` under a local trial folder (``epoch_NNNN/`` under a
    Ray Train trial's run folder); returns what was deleted."""
    folder = _local(trial_path)
    if folder is None:
        return []
    gone = []
    for state in [*folder.glob(f"checkpoint_*/{STATE_FILE}"), *folder.glob(f"epoch_*/{STATE_FILE}")]:
        state.unlink(missing_ok=True)
        gone.append(state)
    return gone


def settle_ended(ended: Iterable[Any]) -> list[Path | str]:
    """For each of the ``ended`` Tune trials (local or URI storage): remove the ``checkpoint_*``
    folders other than the one Tune registered (``trial.checkpoint``, the one its row names), then
    the training state of what is left. Returns the paths removed (on a store: its paths).

    A trial that the search's time budget stopped mid-epoch leaves the checkpoint its worker had
    just written, whose result Tune never processed; nothing names it and nothing resumes it.
    """
    import pyarrow as pa

    removed: list[Path | str] = []
    store_failed = False
    for trial in ended:
        store = _store(trial)
        if store is not None:
            if store_failed:
                continue
            try:
                removed += _settle_on_store(trial)
            except (OSError, pa.ArrowException) as err:  # the rows are written: the search still ends
                _say_store_failed(
                    "cannot drop ended trials' train_state.pt and stray checkpoints", store[1], err,
                    "they stay in the store; the rows are written",
                )  # fmt: skip
                store_failed = True
            continue
        folder = _local(_local_trial_path(trial))
        if folder is None:
            continue
        kept = getattr(trial, "checkpoint", None)
        kept_path = _local(getattr(kept, "path", None)) if kept is not None else None
        for checkpoint in sorted(folder.glob("checkpoint_*")):
            if kept_path is not None and checkpoint.resolve() != kept_path.resolve() and checkpoint.is_dir():
                shutil.rmtree(checkpoint, ignore_errors=True)
                removed.append(checkpoint)
        removed += drop_state(str(folder))
        removed += drop_state(_trainer_run(trial))
    return removed


def _settle_on_store(trial: Any) -> list[Path | str]:
    """``settle_ended`` for one trial Tune keeps on URI storage."""
    fs, folder = _store(trial)
    kept = getattr(getattr(trial, "checkpoint", None), "path", None)
    removed: list[Path | str] = []
    if kept:
        for info in _checkpoint_dirs_on(fs, folder):
            if info.base_name.startswith("checkpoint_") and info.path.rstrip("/") != kept.rstrip("/"):
                fs.delete_dir(info.path)
                removed.append(info.path)
    return removed + _drop_ended_state(trial)


def prune_off_front(ended: Iterable[Any], rows: Any, front: Any, leaderboard: str) -> list[Path | str]:
    """Remove the checkpoint folders of the ``ended`` Tune trials whose rows are not in ``front``
    (local or URI storage), and rewrite those rows with ``checkpoint_uri`` null once the folder
    they name is gone; returns the folders removed (on a store: its paths).

    ``rows`` and ``front`` are this search's leaderboard rows and their Pareto set (polars
    frames). A trial's folders are its ``checkpoint_*`` and, for a Ray Train trial, the
    ``epoch_NNNN`` folders of its run (under ``<experiment>/trainers``). A store that fails
    (unreachable, permission) stops the pruning with one line on stderr: the rows of the trials
    not pruned keep their ``checkpoint_uri``.
    """
    import pyarrow as pa

    from geodistill.leaderboard import Leaderboard

    on_front = set(front["trial_id"].to_list()) if front.height else set()
    trials = {t.trial_id: t for t in ended}
    removed: list[Path | str] = []
    marked: list[dict[str, Any]] = []
    for row in rows.iter_rows(named=True):
        trial = trials.get(row["trial_id"])
        if trial is None or row["trial_id"] in on_front:
            continue
        store = _store(trial)
        if store is None:
            gone, named_gone = _prune_local(trial, row["checkpoint_uri"])
        else:
            try:
                gone, named_gone = _prune_on_store(trial, row["checkpoint_uri"])
            except (OSError, pa.ArrowException) as err:
                _say_store_failed(
                    "cannot remove off-front checkpoints", store[1], err,
                    "the rows of trials not pruned keep their checkpoint_uri",
                )  # fmt: skip
                break
        removed += gone
        if named_gone:
            marked.append({**row, "checkpoint_uri": None, "created_at": datetime.now(UTC)})
    if marked:
        Leaderboard(leaderboard).write(marked)
    return removed


def _say_store_failed(what: str, folder: str, err: BaseException, consequence: str = "") -> None:
    """One stderr line for a store that failed while the search ends (its rows are already written)."""
    tail = f" ({consequence})" if consequence else ""
    print(f"geodistill search: {what} under {folder}: {one_line(err)}{tail}", file=sys.stderr)


def _prune_local(trial: Any, checkpoint_uri: str | None) -> tuple[list[Path], bool]:
    """``prune_off_front`` for one trial on local storage: (folders removed, whether the folder
    its row names is gone; a URI checkpoint is left as it is)."""
    trial_dir = _local(_local_trial_path(trial))
    folders = sorted(trial_dir.glob("checkpoint_*")) if trial_dir else []
    named = _local(checkpoint_uri)
    run = _trainer_run(trial) if named is None else None  # a row naming no epoch
    if named is not None and named.name.startswith("checkpoint_") and named not in folders:
        folders.append(named)
    elif named is not None and CHECKPOINT_PATTERN.match(named.name):  # a Ray Train run's latest
        run = str(named.parent)
    if run is not None:
        folders += sorted(f for f in Path(run).glob("epoch_*") if CHECKPOINT_PATTERN.match(f.name))
    removed = []
    for folder in folders:
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed, named is not None and not named.exists()


def _prune_on_store(trial: Any, checkpoint_uri: str | None) -> tuple[list[str], bool]:
    """``prune_off_front`` for one trial on URI storage: its ``checkpoint_*`` folders and its Ray
    Train run's ``epoch_NNNN``, never a path outside its experiment's folder; (paths removed,
    whether the folder its row names, by URI or by Ray's scheme-less path, is gone). A store
    error propagates, before the row is marked."""
    import pyarrow.fs as pafs

    fs, folder = _store(trial)
    experiment = folder.rpartition("/")[0]
    named = _path_on_store(checkpoint_uri)
    folders = [
        info.path.rstrip("/")
        for info in [
            *_checkpoint_dirs_on(fs, folder),
            *_checkpoint_dirs_on(fs, _trainers_on_store(trial, folder)),
        ]
        if info.path.startswith(f"{experiment}/")
    ]
    removed = []
    for path in sorted(folders, key=lambda p: p == named):  # the row's own last: a failure leaves it named
        fs.delete_dir(path)
        removed.append(path)
    if named is None or not named.startswith(f"{experiment}/"):
        return removed, False
    return removed, fs.get_file_info(named).type == pafs.FileType.NotFound


def _path_on_store(checkpoint_uri: str | None) -> str | None:
    """The store's path of a row's checkpoint: pyarrow's path of its URI (``remote.store_path``,
    the inverse of the ``remote.uri_on`` that built it), or Ray's scheme-less path as is; None
    for a local path."""
    if not checkpoint_uri or checkpoint_uri.startswith(("/", "file://")):
        return None
    named = store_path(checkpoint_uri) if "://" in checkpoint_uri else checkpoint_uri
    return named.rstrip("/")

"""One search driver per experiment: a lock file in the experiment's folder, held while it runs.

Two drivers started at once on the same ``--experiment`` (two terminals, a job resubmitted while
the first still runs) would both find no Tune state, both start, and write one experiment's state,
study and leaderboard rows over each other. The first driver takes an exclusive ``flock`` on
``<storage>/<experiment>/.driver.lock``; the second stops in one line naming the holder. The
kernel drops the lock when the holder exits, however it exits, so a killed driver never blocks
``--resume``; ``released_after`` drops it when ``run_search`` returns (tests run many searches in
one process). Local (or shared-filesystem) storage only: a URI storage has no file to lock.
"""

from __future__ import annotations

import fcntl
import functools
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

from geodistill.errors import ConfigError

LOCK_FILE = ".driver.lock"
_HELD: dict[str, IO[str]] = {}  # experiment folder -> the open, locked file (this process's)
F = TypeVar("F", bound=Callable[..., Any])


def released_after(fn: F) -> F:
    """Release the locks ``fn`` took when it returns or raises (those taken before it stay held)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before = set(_HELD)
        try:
            return fn(*args, **kwargs)
        finally:
            for folder in set(_HELD) - before:
                _HELD.pop(folder).close()  # closing the file drops the flock

    return wrapper  # type: ignore[return-value]


def hold_experiment(experiment: str, experiment_path: str) -> None:
    """Take the experiment's lock for the rest of this process (again in the same process: a no-op)."""
    folder = str(Path(experiment_path).resolve())
    if folder in _HELD:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    handle = open(Path(folder) / LOCK_FILE, "a+")  # noqa: SIM115 - held open until the process ends
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(
            f"experiment {experiment!r} is being run by another search ({holder}); wait for it to end "
            "(then --resume) or choose another --experiment"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
    handle.flush()
    _HELD[folder] = handle

"""Rehearsal folders and the processes that name them: found, stopped, and removed when stale.

Why: a rehearsal cluster (``cluster rehearse``, ``ray up clusters/rehearsal.yaml``) keeps Ray's
temp dir, logs and its token in one private folder, and every process of it names that folder,
in its command line or as ``GEODISTILL_REHEARSAL_DIR`` in the environment it started with
(Ray renames some processes and daemonises the head's, so neither the command line nor the
process tree alone finds them all). That is how a cluster is stopped without ``ray stop`` (which
stops every Ray of the user on the machine) and how a killed rehearsal's folder is recognised
and removed at the next start. No Ray import here: the caller sets Ray's environment first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

DIR_ENV = "GEODISTILL_REHEARSAL_DIR"  # the rehearsal's private folder; every process of it names it


def cluster_processes(folder: str | Path) -> list[Any]:
    """This user's live processes of the rehearsal in ``folder``: those naming it, in their command
    line or as ``GEODISTILL_REHEARSAL_DIR`` in the environment they started with, and their descendants.

    Ray renames some processes (``ray::DashboardAgent``) and daemonises the head's, so neither the
    command line nor the process tree alone finds them all.
    """
    import psutil

    needle, mine = str(folder), os.getuid()
    skip = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    found: dict[int, Any] = {}
    for proc in psutil.process_iter(["pid", "uids", "cmdline"]):
        try:
            if proc.pid in skip or proc.info["uids"].real != mine:
                continue
            named = any(needle in part for part in proc.info["cmdline"] or ())
            if named or proc.environ().get(DIR_ENV) == needle:
                found[proc.pid] = proc
                found.update((c.pid, c) for c in proc.children(recursive=True) if c.pid not in skip)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, TypeError):
            continue
    return list(found.values())


def stop_processes(procs: list[Any], grace: float = 10) -> None:
    """SIGTERM, then SIGKILL what is still alive after ``grace`` seconds."""
    import psutil

    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=5)


def sweep_stale(prefix: str, *, min_age: float = 300) -> list[Path]:
    """Remove this user's ``/tmp/<prefix>*`` folders no live process names (a killed rehearsal's)."""
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        try:
            st = folder.lstat()
        except FileNotFoundError:
            continue
        if st.st_uid != os.getuid() or time.time() - st.st_mtime < min_age or cluster_processes(folder):
            continue
        stop_processes(cluster_processes(folder))
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed

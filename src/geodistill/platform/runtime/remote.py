"""Files on URIs (``s3://``, ``gs://``, ... through ``pyarrow.fs``): teacher checkpoints and their node cache.

Tune's storage, the leaderboard and the teacher a search distils from may be URIs. The driver
checks the teacher's URI before Ray starts (``locate_checkpoint``); each training process then calls
``fetch_checkpoint``, which copies it once per node into a cache keyed by the weights' sha256
(``$GEODISTILL_CACHE`` or ``~/.cache/geodistill``, then ``teachers/<sha256>/``, checked after the
download); concurrent trials on a node wait on a file lock, and later searches reuse the copy.
A URI may carry its options in a query (``s3://b/k?endpoint_override=host:9000&scheme=http``):
``join_uri`` keeps it at the end, and ``uri_on`` turns a path Ray reports on such a store back into
that URI (``store_path`` the other way). ``drop_stale_state_on`` is
``train.context.drop_stale_state`` for a run on a store.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from geodistill.errors import CheckpointError, ConfigError
from geodistill.train.layout import META_FILE, MODEL_FILE, STATE_FILE

CACHE_ENV = "GEODISTILL_CACHE"
TEACHER_FILES = (MODEL_FILE, META_FILE)  # what a teacher needs (not the optimizer state), meta last


def is_uri(path: str | os.PathLike | None) -> bool:
    """A URI pyarrow.fs opens (``file://`` counts as a local path)."""
    return path is not None and "://" in str(path) and not str(path).startswith("file://")


def join_uri(base: str, *parts: str) -> str:
    """``base`` / ``parts``, with any ``?query`` of ``base`` kept at the end."""
    path, sep, query = base.partition("?")
    joined = "/".join([path.rstrip("/"), *(p.strip("/") for p in parts)])
    return f"{joined}{sep}{query}"


# How pyarrow's path of a URI (``FileSystem.from_uri``) drops its authority. s3, gs: the bucket
# stays, as the path's first segment (s3://b/a -> b/a). hdfs, viewfs: the namenode goes, the path
# stays absolute (hdfs://namenode:8020/a -> /a). abfs, abfss: the account goes, the container stays
# first, found where Arrow's AzureOptions::FromUri finds it: the user of <container>@<account>.dfs.
# core.windows.net, the URI's first segment under <account>.blob.core.windows.net or a host.domain
# or host:port (Azurite), else the host itself (abfs://<account>@<container>/a).
HOST_RELATIVE_SCHEMES = ("hdfs", "viewfs")
AZURE_SCHEMES = ("abfs", "abfss")
AZURE_DFS_HOST = ".dfs.core.windows.net"


def _split(uri: str) -> tuple[str, str, str, str, str]:
    """(scheme, user, host, path, query) of ``scheme://[user@]host[/path][?query]``; the user keeps
    any ``:password``."""
    head, _, query = uri.partition("?")
    scheme, _, rest = head.partition("://")
    authority, _, path = rest.partition("/")
    user, _, host = authority.rpartition("@")
    return scheme, user, host, path, query


def _container_at(scheme: str, host: str) -> str:
    """Where a URI's bucket or container is: "host", "user" (abfs on dfs), "path" or "" (hdfs)."""
    if scheme in HOST_RELATIVE_SCHEMES:
        return ""
    if scheme not in AZURE_SCHEMES:
        return "host"
    if host.endswith(AZURE_DFS_HOST):
        return "user"
    return "path" if "." in host or ":" in host else "host"


def store_path(uri: str) -> str:
    """pyarrow's path of the store URI ``uri``, what ``FileSystem.from_uri`` gives, without
    opening the store (an HDFS one needs a JVM)."""
    scheme, user, host, path, _ = _split(uri)
    at = _container_at(scheme, host)
    if at == "":
        return f"/{path}"
    if at == "path":
        return path
    return f"{user.partition(':')[0] if at == 'user' else host}/{path}"


def uri_on(storage: str, fs_path: str) -> str:
    """The URI a user opens for ``fs_path``, a path on the file system ``storage`` opens (Ray's
    ``Checkpoint.path``: pyarrow drops the scheme, and the host or account too; see above), with
    ``storage``'s scheme, authority and ``?query`` (``join_uri``); the path itself when
    ``storage`` is local."""
    if not is_uri(storage):
        return fs_path
    base = store_path(storage).rstrip("/")
    if fs_path == base or fs_path.startswith(f"{base}/"):  # under storage: its host and options kept
        rel = fs_path[len(base) :].strip("/")
        return join_uri(storage, rel) if rel else storage
    scheme, user, host, _, query = _split(storage)
    login = f"{user}@" if user else ""  # s3's credentials, abfs's account
    container, _, key = fs_path.lstrip("/").partition("/")
    _, colon, password = user.partition(":")
    where = {
        "": f"{login}{host}/{fs_path.lstrip('/')}",
        "path": f"{login}{host}/{fs_path}",
        "user": f"{container}{colon}{password}@{host}/{key}",
        "host": f"{login}{fs_path}",
    }[_container_at(scheme, host)]
    return f"{scheme}://{where}" + (f"?{query}" if query else "")


def open_uri(uri: str) -> tuple[Any, str]:
    """(pyarrow FileSystem, path inside it) of ``uri``; a bad or unreachable one: one-line ConfigError."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise ConfigError(f"cannot open {uri}: {_first_line(err)}") from None


def _epoch_number(name: str) -> int:
    """The N of an ``epoch_N`` folder name; -1 (oldest) when N is not a number."""
    digits = name.removeprefix("epoch_")
    return int(digits) if digits.isdigit() else -1


def _read_json(fs: Any, path: str) -> dict[str, Any]:
    with fs.open_input_stream(path) as stream:
        return json.loads(stream.read().decode())


def locate_checkpoint(uri: str) -> tuple[str, dict[str, Any]]:
    """The checkpoint directory at ``uri`` (itself, or a run's latest ``epoch_NNNN``) and its meta.

    Raises a one-line CheckpointError when the store cannot be reached or holds no complete
    checkpoint there (``meta.json`` is written last, so its presence marks one).
    """
    import pyarrow as pa
    import pyarrow.fs as pafs

    fs, base = open_uri(uri)
    base = base.rstrip("/")
    try:
        if fs.get_file_info(f"{base}/{META_FILE}").is_file:
            return uri, _read_json(fs, f"{base}/{META_FILE}")
        for folder in (f"{base}/checkpoints", base):
            infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
            epochs = sorted(
                (
                    i.base_name
                    for i in infos
                    if i.type == pafs.FileType.Directory and i.base_name.startswith("epoch_")
                ),
                key=_epoch_number,  # by number: epoch_10000 is newer than epoch_9999
                reverse=True,
            )
            for name in epochs:
                if fs.get_file_info(f"{folder}/{name}/{META_FILE}").is_file:
                    sub = folder[len(base) :].strip("/")
                    found = join_uri(uri, *([sub] if sub else []), name)
                    return found, _read_json(fs, f"{folder}/{name}/{META_FILE}")
    except (pa.ArrowException, OSError, ValueError) as err:
        raise CheckpointError(f"cannot read teacher checkpoint {_public(uri)}: {_first_line(err)}") from None
    raise CheckpointError(
        f"{_public(uri)}: no checkpoint here (expected {META_FILE} or checkpoints/epoch_NNNN/{META_FILE})"
    )


def cache_root() -> Path:
    """``$GEODISTILL_CACHE`` or ``~/.cache/geodistill`` (one per node: each node has its own disk)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "geodistill").expanduser()


def fetch_checkpoint(uri: str, *, cache: str | Path | None = None) -> Path:
    """A local copy of the teacher checkpoint at ``uri``: ``<cache>/teachers/<model sha256>/``.

    Downloaded once per node (under a lock; later calls find it), its weights checked against
    ``meta.json``'s ``model_sha256``. A local path is returned unchanged.
    """
    if not is_uri(uri):
        return Path(uri)
    import pyarrow as pa

    from geodistill.train.checkpoint import file_sha256

    found, meta = locate_checkpoint(uri)
    sha = str(meta.get("model_sha256") or "")
    if len(sha) != 64 or not all(c in "0123456789abcdef" for c in sha):
        raise CheckpointError(f"{_public(found)}/{META_FILE}: no model_sha256 to key the cache by")
    folder = Path(cache or cache_root()) / "teachers"
    dest = folder / sha
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f".{sha}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one download per node; the others wait, then reuse it
        try:
            if (dest / META_FILE).is_file():
                return dest
            fs, base = open_uri(found)
            tmp = Path(tempfile.mkdtemp(prefix=f".{sha}.", dir=folder))
            try:
                for name in TEACHER_FILES:
                    with (
                        fs.open_input_stream(f"{base.rstrip('/')}/{name}") as src,
                        open(tmp / name, "wb") as out,
                    ):
                        shutil.copyfileobj(src, out, length=1 << 20)
                if file_sha256(tmp / MODEL_FILE) != sha:
                    raise CheckpointError(
                        f"{_public(found)}: {MODEL_FILE} does not match its meta.json sha256"
                    )
                os.replace(tmp, dest)
            except (OSError, pa.ArrowException) as err:
                raise CheckpointError(f"cannot fetch teacher {_public(found)}: {_first_line(err)}") from None
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return dest


def drop_stale_state_on(fs: Any, folder: str, keep: str) -> list[str]:
    """Delete ``train_state.pt`` from every complete ``epoch_NNNN`` under ``folder`` on the pyarrow
    file system ``fs`` but ``keep`` (the latest, which a run resumes from); returns the paths
    deleted. What ``drop_stale_state`` does on a local folder, for a run on a URI store."""
    import pyarrow.fs as pafs

    from geodistill.train.context import CHECKPOINT_PATTERN

    folder, keep = folder.rstrip("/"), keep.rstrip("/")
    gone = []
    for info in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
        if info.type != pafs.FileType.Directory or info.path.rstrip("/") == keep:
            continue
        if not CHECKPOINT_PATTERN.match(info.base_name):
            continue
        state, meta = (f"{info.path.rstrip('/')}/{name}" for name in (STATE_FILE, META_FILE))
        if fs.get_file_info(meta).is_file and fs.get_file_info(state).is_file:
            fs.delete_file(state)
            gone.append(state)
    return gone


def _public(uri: str) -> str:
    """``uri`` without its query string (endpoint options, possibly credentials)."""
    return uri.partition("?")[0]


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0].strip() if text else type(err).__name__


def resolve_teacher(path: str, *, fetch: bool = False) -> str:
    """The one teacher resolver: ``distill.teacher_checkpoint`` checked and made usable here.

    A URI is located (reachable, a complete checkpoint: the driver, before anything starts) or,
    with ``fetch``, copied to this node's cache (where a student trains). A local path is made
    absolute and must hold a checkpoint. One-line CheckpointError otherwise.
    """
    if is_uri(path):
        return str(fetch_checkpoint(path)) if fetch else locate_checkpoint(path)[0]
    if fetch:  # checked on the driver already
        return path
    teacher = Path(path.removeprefix("file://")).expanduser().resolve()
    if not teacher.exists():
        raise CheckpointError(f"teacher checkpoint not found: {teacher}")
    from geodistill.train.checkpoint import resolve_checkpoint

    resolve_checkpoint(teacher)  # a folder without a checkpoint fails here, not in every trial
    return str(teacher)

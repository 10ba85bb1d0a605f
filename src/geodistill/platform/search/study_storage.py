"""Where a search's Optuna study lives (``--study-storage``), so that it can outlive its driver.

The default is a SQLite file beside Tune's state (``<storage>/<experiment>/optuna.db``); with a
URI ``--storage`` that sits on the driver's own disk. ``--study-storage URL`` takes any SQLAlchemy
URL Optuna's ``RDBStorage`` takes (``postgresql://user@host:5432/db``, password through
``PGPASSWORD`` or ``~/.pgpass``) or ``journal:///shared/path/study.log`` (Optuna's journal file
on a file system every driver reaches). The URL, password removed, is recorded with the
experiment (``study.json``) so ``--resume`` finds it; another explicit URL on resume is refused
in one line. ``open_storage`` connects at once: an unreachable store fails before Ray starts;
later, a database server that restarts is waited out (``study_retry``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from geodistill.errors import ConfigError

RECORD = "study.json"
JOURNAL_SCHEME = "journal://"
CONNECT_TIMEOUT_S = 10  # an unreachable database host fails in seconds, not after TCP's minutes


def normalise(url: str) -> str:
    """``url`` with relative file paths made absolute (the driver may be started elsewhere)."""
    if url.startswith(JOURNAL_SCHEME):
        path = url.removeprefix(JOURNAL_SCHEME)
        if not path:
            raise ConfigError("--study-storage journal:// needs a file path (journal:///shared/study.log)")
        return JOURNAL_SCHEME + str(Path(path).expanduser().absolute())
    if "://" not in url:
        raise ConfigError(
            f"--study-storage must be a URL (sqlite:///..., postgresql://..., journal:///...); got {url!r}"
        )
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            return "sqlite:///" + str(Path(path).expanduser().absolute())
    return url


def public_url(url: str) -> str:
    """``url`` without its password (what is printed and recorded)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}@{host}" if user else host))


def default_url(experiment: str, storage_root: str, local: bool, *, study_dir: str | None = None) -> str:
    """The study's SQLite URL when no ``--study-storage`` is given (beside Tune's state when local;
    else ``study_dir``, default ``~/geodistill/optuna``, on the driver's disk)."""
    if local:
        folder = Path(storage_root) / experiment
    else:
        folder = Path(study_dir or Path.home() / "geodistill" / "optuna")
    folder.mkdir(parents=True, exist_ok=True)
    name = "optuna.db" if local else f"{experiment}.db"
    return f"sqlite:///{folder / name}"


def with_driver(url: str) -> str:
    """A plain ``postgresql://`` URL with the DB-API driver that is installed (psycopg2 or psycopg 3).

    SQLAlchemy's default driver for ``postgresql://`` changed between releases (psycopg2 in 2.0,
    psycopg 3 in 2.1); either works for Optuna, so use whichever the environment has.
    """
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            import importlib.util

            for module, dialect in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")):
                if importlib.util.find_spec(module) is not None:
                    return f"postgresql+{dialect}://" + url.removeprefix(plain)
    return url


def open_storage(url: str) -> Any:
    """An Optuna storage for ``url``, connected now; an unreachable one raises a one-line ConfigError."""
    import optuna

    try:
        if url.startswith(JOURNAL_SCHEME):
            from optuna.storages.journal import JournalFileBackend

            path = Path(url.removeprefix(JOURNAL_SCHEME))
            path.parent.mkdir(parents=True, exist_ok=True)
            storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        else:
            from geodistill.platform.search.study_retry import RetryingRDBStorage

            engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}  # a restarted server's dead connections
            if url.startswith(("postgresql", "postgres")):
                engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
            storage = RetryingRDBStorage(with_driver(url), engine_kwargs=engine_kwargs)
        # A round trip (RDBStorage connects lazily for some drivers), not retried: fail before Ray starts.
        probe = (
            optuna.storages.RDBStorage if isinstance(storage, optuna.storages.RDBStorage) else type(storage)
        )
        probe.get_all_studies(storage)
    except ImportError as err:
        raise ConfigError(
            f"cannot open the Optuna study storage {public_url(url)}: {_first_line(err)} "
            "(PostgreSQL needs pip install 'geodistill[postgres]')"
        ) from None
    except Exception as err:  # noqa: BLE001 - SQLAlchemy / OS errors of every kind: one line
        raise ConfigError(
            f"cannot open the Optuna study storage {public_url(url)}: {_first_line(err)}"
        ) from None
    return storage


def recorded_url(experiment_path: str) -> str | None:
    """The study URL recorded with the experiment at ``experiment_path`` (None when none is)."""
    fs, path = _fs(experiment_path)
    import pyarrow.fs as pafs

    try:
        if fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with fs.open_input_stream(path) as stream:
            return json.loads(stream.read().decode())["study_storage"]
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"cannot read {experiment_path}/{RECORD}: {_first_line(err)}") from None


def record_url(experiment_path: str, url: str, *, study_name: str) -> None:
    """Record the study's URL (no password) with the experiment, atomically where the fs allows."""
    fs, path = _fs(experiment_path)
    data = json.dumps({"study_storage": public_url(url), "study_name": study_name}, indent=1).encode()
    try:
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        if _is_local(fs):
            tmp = f"{path}.tmp{os.getpid()}"
            with fs.open_output_stream(tmp) as out:
                out.write(data)
            os.replace(tmp, path)
        else:  # an object store's single PUT is atomic
            with fs.open_output_stream(path) as out:
                out.write(data)
    except OSError as err:
        raise ConfigError(f"cannot record the study with {experiment_path}: {_first_line(err)}") from None


def resolve(
    requested: str | None,
    *,
    experiment: str,
    experiment_path: str,
    storage_root: str,
    local: bool,
    resume: bool,
    study_dir: str | None = None,
) -> str:
    """The study URL of this run: the recorded one on ``--resume``, else ``requested`` or the default.

    A resume whose explicit ``requested`` names another store than the recorded one is refused:
    it would start the sampler from nothing and split one experiment over two studies.
    """
    wanted = normalise(requested) if requested else None
    recorded = recorded_url(experiment_path) if resume else None
    if recorded is not None and local:
        recorded = _beside_moved(recorded, experiment_path)
    if recorded is not None:
        if wanted is not None and public_url(wanted) != recorded:
            raise ConfigError(
                f"experiment {experiment!r} keeps its Optuna study in {recorded}; --study-storage "
                f"{public_url(wanted)} differs (drop --study-storage to use the recorded one)"
            )
        return wanted or recorded
    return wanted or default_url(experiment, storage_root, local, study_dir=study_dir)


def _beside_moved(recorded: str, experiment_path: str) -> str:
    """The default study beside a moved (or copied) experiment folder: the recorded SQLite file
    is gone and the folder holds its own ``optuna.db``; else ``recorded``."""
    path = Path(recorded.removeprefix("sqlite:///")) if recorded.startswith("sqlite:///") else None
    here = Path(experiment_path.removeprefix("file://")) / "optuna.db"
    if path is None or path.name != "optuna.db" or path.exists() or not here.is_file():
        return recorded
    return f"sqlite:///{here}"


def _fs(experiment_path: str) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    if "://" in experiment_path and not experiment_path.startswith("file://"):
        fs, base = pafs.FileSystem.from_uri(experiment_path)
        return fs, f"{base.rstrip('/')}/{RECORD}"
    return pafs.LocalFileSystem(), str(Path(experiment_path.removeprefix("file://")) / RECORD)


def _is_local(fs: Any) -> bool:
    import pyarrow.fs as pafs

    return isinstance(fs, pafs.LocalFileSystem)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0].strip() if text else type(err).__name__

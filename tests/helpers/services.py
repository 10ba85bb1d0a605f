"""Real servers for tests, started on 127.0.0.1 on a free port and stopped afterwards.

- ``postgres_server()``: a private PostgreSQL cluster (``initdb`` in a fresh temporary
  directory, trust auth, listening on 127.0.0.1 only, its Unix socket in the same directory).
  As root, it runs as the ``postgres`` user the Debian package creates (PostgreSQL refuses root).
- ``s3_server()``: moto's S3-compatible server (``moto[server]``), one bucket created.
- ``headless_chromium(...)``: Chromium run headless on a local page (screenshot or DOM dump).

Missing binaries skip the test, unless ``GEODISTILL_REQUIRE_SERVICES=1`` (``.ci/run`` sets it
after ``.ci/services`` installed them): then they fail it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _missing(what: str) -> None:
    message = f"{what} is not installed (run .ci/services)"
    if os.environ.get("GEODISTILL_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@dataclass
class Postgres:
    port: int
    user: str
    database: str
    data_dir: str

    def url(self, driver: str = "postgresql") -> str:
        return f"{driver}://{self.user}@{LOOPBACK}:{self.port}/{self.database}"


@contextlib.contextmanager
def postgres_server(database: str = "optuna") -> Iterator[Postgres]:
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        _missing("PostgreSQL (initdb, pg_ctl)")
    run_as: list[str] = []
    folder = tempfile.mkdtemp(prefix="geodistill-pg-", dir="/tmp")
    if os.geteuid() == 0:  # postgres will not run as root: hand the folder to the package's user
        if shutil.which("runuser") is None:
            _missing("runuser")
        shutil.chown(folder, "postgres", "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    data, user, port = os.path.join(folder, "data"), "geodistill", free_port()
    log = os.path.join(folder, "server.log")

    def run(*cmd: str) -> None:
        proc = subprocess.run([*run_as, *cmd], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed: {proc.stdout}{proc.stderr}")

    started = False
    try:
        run(initdb, "-D", data, "-U", user, "-A", "trust", "--no-sync", "-E", "UTF8")
        options = f"-c listen_addresses={LOOPBACK} -p {port} -k {folder} -c fsync=off"
        run(pg_ctl, "-D", data, "-o", options, "-l", log, "-w", "-t", "60", "start")
        started = True
        import psycopg2

        conn = psycopg2.connect(host=LOOPBACK, port=port, user=user, dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{database}"')
        conn.close()
        yield Postgres(port=port, user=user, database=database, data_dir=data)
    finally:
        if started:
            with contextlib.suppress(Exception):
                run(pg_ctl, "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class S3:
    endpoint: str  # host:port
    bucket: str
    process: subprocess.Popen

    def uri(self, key: str) -> str:
        """A pyarrow.fs URI for ``key`` in the bucket, pointing at this server."""
        return f"s3://{self.bucket}/{key.lstrip('/')}?endpoint_override={self.endpoint}&scheme=http"

    def filesystem(self):
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(
            endpoint_override=self.endpoint,
            scheme="http",
            access_key="test",
            secret_key="test",
            region="us-east-1",
            allow_bucket_creation=True,
            request_timeout=120,  # moto is a Python server: slow on a loaded machine
            connect_timeout=30,
        )


S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


@contextlib.contextmanager
def s3_server(bucket: str = "geodistill") -> Iterator[S3]:
    """moto's S3 server on 127.0.0.1 with ``bucket``; its fake credentials are put in os.environ."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        _missing("moto[server]")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    saved = {k: os.environ.get(k) for k in S3_ENV}
    os.environ.update(S3_ENV)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection((LOOPBACK, port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.2)
        server = S3(endpoint=f"{LOOPBACK}:{port}", bucket=bucket, process=proc)
        server.filesystem().create_dir(bucket)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def headless_chromium(
    page: Path, profile: Path, *args: str, window: tuple[int, int] = (1280, 800)
) -> subprocess.CompletedProcess:
    """Chromium, headless and offline-minded, on ``page`` (a file) at ``window`` pixels; ``args``
    add ``--screenshot=FILE`` or ``--dump-dom`` (stdout). ``profile``: a fresh user-data dir."""
    binary = next(
        (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None
    )
    if binary is None:
        _missing("Chromium")
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={window[0]},{window[1]}",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )

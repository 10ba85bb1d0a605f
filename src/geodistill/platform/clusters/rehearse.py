"""A rehearsal Ray cluster on one machine: a head and N worker nodes, all on 127.0.0.1, token auth on.

Spreading over nodes, or surviving the loss of one, can only be shown on more than one raylet,
and ``ray start --address`` cannot add a second node on this machine without exposing it, so the
nodes are started as Ray's own test harness does (``ray.cluster_utils.Cluster``): one GCS, one
raylet per node, every socket on loopback. Worker nodes carry a resource named after them
(``node_a``, ...) and the head no CPU, so trials land on the workers; the dashboard is on for
``ray job submit``. Everything lives in a private (0700) folder with the token, removed with the
cluster (a killed rehearsal's at the next start). ``geodistill cluster rehearse`` runs one until
Ctrl-C; ``tests/helpers/rehearsal.py`` runs that command and reads the JSON manifest it writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import string
import tempfile
import time
from pathlib import Path
from typing import Any

# Worker nodes are named node_a ... node_z (a custom resource each): at most 26.
MAX_WORKERS = len(string.ascii_lowercase)

LOOPBACK = "127.0.0.1"
MANIFEST = "rehearsal.json"
PREFIX = "gdreh"
# One token per process: Ray caches the token it loaded, so a retried start must present the same.
_TOKEN = secrets.token_hex(32)


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind((LOOPBACK, 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def node_names(workers: int) -> list[str]:
    """``node_a``, ``node_b``, ... : the custom resource each worker node carries."""
    return [f"node_{string.ascii_lowercase[i]}" for i in range(workers)]


@dataclasses.dataclass
class RehearsalCluster:
    """A running rehearsal cluster (head + workers) and how to reach it."""

    temp_dir: str
    folder: str  # the private folder holding temp_dir and the token; removed by shutdown()
    token_path: str
    gcs_address: str
    dashboard_url: str
    nodes: dict[str, dict[str, Any]]  # name -> {"node_id", "raylet_pid", "resources"}
    _cluster: Any = None

    def manifest(self) -> dict[str, Any]:
        return {
            "temp_dir": self.temp_dir,
            "folder": self.folder,
            "token_path": self.token_path,
            "gcs_address": self.gcs_address,
            "dashboard_url": self.dashboard_url,
            "nodes": self.nodes,
            "pid": os.getpid(),
        }

    def client_env(self) -> dict[str, str]:
        """What a client (``ray job submit``, ``geodistill search --address``) needs in its environment."""
        return {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": self.token_path,
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        }

    def shutdown(self) -> None:
        """Stop every node (workers first, then the head); nothing of the cluster stays running."""
        if self._cluster is not None:
            for node in list(self._cluster.worker_nodes):
                try:
                    self._cluster.remove_node(node, allow_graceful=True)
                except Exception:  # noqa: BLE001 - a node already killed (a node-loss rehearsal)
                    self._cluster.worker_nodes.discard(node)
            if self._cluster.head_node is not None:
                self._cluster.remove_node(self._cluster.head_node, allow_graceful=True)
            self._cluster = None
        from geodistill.platform.clusters.folders import cluster_processes, stop_processes

        stop_processes(cluster_processes(self.folder))  # job drivers, workers: whatever outlived its node
        shutil.rmtree(self.folder, ignore_errors=True)  # logs, sockets and the token go with the cluster


def start_rehearsal(
    *, workers: int = 2, cpus_per_node: int = 1, temp_dir: str | None = None
) -> RehearsalCluster:
    """Start a head (0 CPUs, dashboard on 127.0.0.1) and ``workers`` nodes of ``cpus_per_node`` CPUs.

    Sets this process's environment (token auth, loopback pin) first: every Ray process the
    nodes spawn inherits it.
    """
    from geodistill.errors import ConfigError

    if not 1 <= workers <= MAX_WORKERS or cpus_per_node < 1:
        raise ConfigError(f"rehearse: --workers must be 1..{MAX_WORKERS} and --cpus-per-node at least 1")
    from geodistill.platform.clusters.folders import DIR_ENV, sweep_stale

    sweep_stale(PREFIX)  # what a SIGKILLed rehearsal left (no process names it any more)
    # Short path: Ray's unix sockets live under it and sun_path is limited to 108 bytes. Private
    # (0700): Ray makes its own temp dir world-writable, so it goes one level down, with the token.
    folder = Path(temp_dir or tempfile.mkdtemp(prefix=PREFIX, dir="/tmp"))
    folder.mkdir(mode=0o700, exist_ok=True)
    folder.chmod(0o700)
    temp_dir = str(folder / "r")
    token_path = folder / "auth_token"
    token_path.write_text(_TOKEN)
    token_path.chmod(0o600)
    os.environ.update(
        {DIR_ENV: str(folder)},  # every process of the cluster inherits it: found, and stopped, by it
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(token_path),
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # single-machine mode: 127.0.0.1 stays 127.0.0.1
        RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",
        RAY_USAGE_STATS_ENABLED="0",
        # The head's job supervisor runs an entrypoint's `python` from PATH: this Python's folder
        # first, so `python -m geodistill` is the interpreter that has Ray (no activated venv needed).
        PATH=os.pathsep.join([_python_bin(), os.environ.get("PATH", "")]),
    )
    import ray._private.ray_constants as ray_constants
    import ray._private.utils as ray_utils
    from ray.cluster_utils import Cluster

    ray_constants.ENABLE_RAY_CLUSTER = False
    gcs_port, dashboard_port, client_port, agent_port, metrics_port = _free_ports(5)
    # Cluster() records the head in /tmp/ray/ray_current_cluster for address="auto"; that file is
    # shared with every other Ray on this machine, so it is left alone.
    saved = ray_utils.write_ray_address
    ray_utils.write_ray_address = lambda *a, **k: None
    try:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 0,
                "node_ip_address": LOOPBACK,
                "gcs_server_port": gcs_port,
                "dashboard_agent_listen_port": agent_port,
                "metrics_export_port": metrics_port,
                "temp_dir": temp_dir,
                "include_dashboard": True,
                "dashboard_host": LOOPBACK,
                "dashboard_port": dashboard_port,
                "ray_client_server_port": client_port,
                "object_store_memory": 100 * 1024 * 1024,
                "resources": {"head": 1},
            },
            shutdown_at_exit=True,
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        ray_utils.write_ray_address = saved
    rehearsal = RehearsalCluster(
        temp_dir=temp_dir,
        folder=str(folder),
        token_path=str(token_path),
        gcs_address=cluster.gcs_address,
        dashboard_url=f"http://{LOOPBACK}:{dashboard_port}",
        nodes={},
        _cluster=cluster,
    )
    try:
        rehearsal.nodes["head"] = _describe(cluster.head_node, {"head": 1})
        for name in node_names(workers):
            resources = {name: 1}
            agent, metrics = _free_ports(2)  # Ray's fixed defaults may be taken by another Ray here
            node = cluster.add_node(
                dashboard_agent_listen_port=agent,
                metrics_export_port=metrics,
                num_cpus=cpus_per_node,
                node_ip_address=LOOPBACK,
                temp_dir=temp_dir,
                object_store_memory=100 * 1024 * 1024,
                resources=resources,
                # Its own runtime-env folder, as its own disk would be: with one shared folder, a
                # node's agent deleting a working_dir it no longer uses deletes it under the job's
                # driver on the head (which then fails in os.getcwd()).
                runtime_env_dir_name=f"runtime_resources_{name}",
            )
            rehearsal.nodes[name] = _describe(node, {"CPU": cpus_per_node, **resources})
        _wait_for_dashboard(rehearsal.dashboard_url)
    except BaseException:
        rehearsal.shutdown()
        raise
    return rehearsal


def _python_bin() -> str:
    """The folder of this Python (a venv's bin/): its `ray` and `python` work without activating it."""
    import sys

    return str(Path(sys.executable).parent)


def _describe(node: Any, resources: dict[str, float]) -> dict[str, Any]:
    raylet = node.all_processes["raylet"][0].process
    return {"node_id": node.node_id, "raylet_pid": raylet.pid, "resources": resources}


def _wait_for_dashboard(url: str, timeout: float = 120) -> None:
    """The job API answers (the dashboard starts after the GCS, and slowly on a busy machine)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/version", timeout=5)  # noqa: S310 - loopback
            return
        except urllib.error.HTTPError:  # 401 without a token: the server is up
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the rehearsal dashboard at {url} did not answer in {timeout:.0f} s"
                ) from None
            time.sleep(0.5)


def usage(rehearsal: RehearsalCluster) -> str:
    """What the command prints: the addresses and how to submit to the cluster."""
    env = " ".join(f"{k}={v}" for k, v in rehearsal.client_env().items())
    names = ", ".join(f"{n} ({d['node_id'][:8]})" for n, d in rehearsal.nodes.items())
    return "\n".join(
        [
            f"rehearsal cluster up: {names}",
            f"  GCS address:  {rehearsal.gcs_address}",
            f"  dashboard:    {rehearsal.dashboard_url}",
            f"  temp dir:     {rehearsal.temp_dir}",
            "submit to it (from the repository root):",
            f"  export {env}",
            f"  {Path(_python_bin()) / 'ray'} job submit --address {rehearsal.dashboard_url} --working-dir . "
            '--runtime-env-json \'{"py_modules": ["src/geodistill"]}\' -- '
            'python -m geodistill search --smoke-test --num-samples 6 --storage "$PWD/runs/search" '
            '--leaderboard "$PWD/runs/leaderboard"',
            "Ctrl-C tears it down.",
        ]
    )


# Ray gives each node a fixed 30 s to register with the GCS; on a loaded machine that can run out.
# Only that failure is retried, after every process this command started has been killed.
START_TIMED_OUT = "timed out during startup"


def _start_with_retries(*, workers: int, cpus_per_node: int, attempts: int = 5) -> RehearsalCluster:
    import psutil

    for attempt in range(attempts):
        try:
            return start_rehearsal(workers=workers, cpus_per_node=cpus_per_node)
        except Exception as err:
            if START_TIMED_OUT not in str(err) or attempt == attempts - 1:
                raise
            print(
                f"a node timed out during startup (busy machine); retrying ({attempt + 2}/{attempts})",
                flush=True,
            )
            for child in psutil.Process().children(recursive=True):
                try:
                    child.kill()
                except psutil.NoSuchProcess:
                    pass
    raise AssertionError("unreachable")


def run_rehearsal(*, workers: int, cpus_per_node: int, manifest: str | None = None) -> int:
    """Foreground: start the cluster, print how to use it, write the manifest, wait for a signal."""
    stop = {"now": False}

    def _stop(signum: int, frame: Any) -> None:
        stop["now"] = True

    rehearsal = _start_with_retries(workers=workers, cpus_per_node=cpus_per_node)
    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(usage(rehearsal), flush=True)
        out = Path(manifest) if manifest else Path(rehearsal.temp_dir) / MANIFEST
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(rehearsal.manifest(), indent=1))
        tmp.replace(out)  # a reader never sees half a manifest
        print(f"manifest: {out}", flush=True)
        while not stop["now"]:
            time.sleep(0.2)
    finally:
        print("tearing the rehearsal cluster down", flush=True)
        rehearsal.shutdown()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0

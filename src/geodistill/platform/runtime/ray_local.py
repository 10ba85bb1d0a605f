"""Starting or joining Ray: a loopback-only local head by default, a cluster when asked.

Every Ray entry point of geodistill goes through ``init_ray`` so that a laptop or CI run never
opens a port on a public interface: the local head binds 127.0.0.1, starts no dashboard, and
keeps a small object store (checkpoints travel as files, not objects, so little is needed).
``listening_addresses`` lets a test (and the reliability suite) check that promise on the
processes Ray actually started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Iterable, Iterator

from geodistill.errors import ConfigError, one_line

ADDRESS_ENV = "GEODISTILL_RAY_ADDRESS"
OBJECT_STORE_MB_ENV = "GEODISTILL_RAY_OBJECT_STORE_MB"
DEFAULT_OBJECT_STORE_MB = 256  # plenty for Train's control traffic; fits a 2-core / 24 GiB box
LOOPBACK = "127.0.0.1"


def resolve_address(address: str | None = None) -> str | None:
    """The cluster to join: ``address``, else $GEODISTILL_RAY_ADDRESS, else $RAY_ADDRESS, else None.

    None means: start a local head. ``RAY_ADDRESS`` is how a driver under ``ray job submit``
    learns its job's cluster; without it every command run as a job would start a second,
    empty Ray inside the job (which cannot even fetch the job's ``--working-dir``).
    """
    if not address:
        address = os.environ.get(ADDRESS_ENV) or os.environ.get("RAY_ADDRESS") or None
    if address in (None, "", "local"):
        return None
    return address


def init_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    include_dashboard: bool = False,
    object_store_mb: int | None = None,
    log_to_driver: bool = True,
) -> None:
    """Initialise Ray once per process (idempotent when Ray is already up).

    ``address`` None/"local" (and no $GEODISTILL_RAY_ADDRESS) starts a local head on 127.0.0.1;
    "auto", "ray://host:port" or "host:port" joins an existing cluster. ``num_gpus`` overrides
    the GPUs a local head declares (tests declare GPUs a CPU machine does not have).
    ``include_dashboard`` starts the dashboard of a local head on 127.0.0.1 (``dashboard_url`` gives its address).
    ``log_to_driver=False`` keeps workers' output off this console (a search's live view).
    """
    import ray

    if ray.is_initialized():
        return
    # `uv run` drivers would otherwise ship a uv runtime env to every worker (slow, needs network).
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    target = resolve_address(address)
    common = {"ignore_reinit_error": True, "log_to_driver": log_to_driver}
    if target is not None:
        _unpin_node_ip()  # a driver joining a real cluster must advertise its routable IP
        check_cluster_auth(target)
        try:
            ray.init(address=target, **common)
        except ray.exceptions.AuthenticationError:
            raise ConfigError(_auth_message(target)) from None
        except (ConnectionError, ValueError, RuntimeError) as err:
            raise ConfigError(f"cannot connect to Ray at {target!r}: {one_line(err)}") from None
        return
    _pin_node_ip_to_loopback()
    if object_store_mb is None:
        object_store_mb = int(os.environ.get(OBJECT_STORE_MB_ENV, DEFAULT_OBJECT_STORE_MB))
    # Ray 2.60 turns token authentication on for every new local head (creating ~/.ray/auth_token)
    # and says so in a WARNING each time; nothing for the user to do on a loopback-only head.
    with _quiet("ray._private.authentication.authentication_token_setup"):
        ray.init(
            address="local",
            runtime_env={"worker_process_setup_hook": f"{__name__}.quiet_worker_logs"},
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            include_dashboard=include_dashboard,
            dashboard_host=LOOPBACK,
            object_store_memory=object_store_mb * 1024 * 1024,
            _node_ip_address=LOOPBACK,
            **common,
        )


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """The logger ``name`` at ERROR for the block."""
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def dashboard_url() -> str | None:
    """``http://127.0.0.1:PORT`` of the connected cluster's dashboard, or None when it has none."""
    import ray

    try:
        url = ray.get_runtime_context().gcs_address and ray._private.worker.get_dashboard_url()
    except Exception:  # noqa: BLE001 - no dashboard on this cluster
        return None
    if not url:
        return None
    return url if "://" in url else f"http://{url}"


AUTH_HINT = (
    "set RAY_AUTH_MODE=token and give this process the cluster's token "
    "(~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN)"
)


def _auth_message(target: str) -> str:
    return f"cannot join Ray at {target!r}: the cluster requires token authentication; {AUTH_HINT}"


def check_cluster_auth(target: str) -> None:
    """Fail in one line, at once, when the cluster at ``target`` rejects this process's credentials.

    A Ray 2.60 head started while ``~/.ray/auth_token`` exists (or with ``RAY_AUTH_MODE=token``)
    requires a token from every client; ``ray.init`` without one retries for many seconds and
    then reports only "Failed to connect". A GCS client (one RPC, milliseconds) says why. Only
    ``host:port`` and ``auto`` addresses are probed (``ray://`` goes through Ray Client).
    """
    import ray
    from ray._raylet import GcsClient

    address = target
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address

        try:
            address = canonicalize_bootstrap_address(address, None)
        except Exception:  # noqa: BLE001 - several or no clusters: ray.init says which
            return
        if not address:
            return  # no cluster found: ray.init reports that
    if "://" in address or ":" not in address:
        return
    try:
        with _silenced_stderr_fd():  # the C++ client logs the rejection too; our line replaces it
            GcsClient(address=address)
    except ray.exceptions.AuthenticationError:
        raise ConfigError(_auth_message(target)) from None
    except Exception:  # noqa: BLE001 - unreachable etc.: ray.init reports those itself
        return


@contextlib.contextmanager
def _silenced_stderr_fd():
    """Point file descriptor 2 at /dev/null for a moment (C++ logging bypasses sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def quiet_worker_logs() -> None:
    """Worker setup hook of the local head: silence a per-second warning that only means "no dashboard".

    Ray Train's PlacementGroupCleaner polls the State API, which lives in the dashboard; with
    the dashboard off (our default) every poll logs a warning for the whole run.
    """
    import ray

    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").setLevel(
        logging.ERROR
    )
    # The State API finds its cluster by address; with several local heads on one machine
    # (parallel test sessions) auto-detection fails, so point it at this worker's own cluster.
    os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)


def _pin_node_ip_to_loopback() -> None:
    """Make every process of the local head bind 127.0.0.1, not 0.0.0.0 / :: / the host's IP.

    Ray resolves a loopback ``_node_ip_address`` to the host's routable IP unless
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` is off (its single-machine mode); with the node IP on
    loopback the gcs, raylet, agents and workers all listen on loopback. Ray reads the flag at
    import, so besides the environment (inherited by every process Ray spawns) the driver's
    already-imported constant is set too.
    """
    import ray._private.ray_constants as ray_constants

    global _PINNED_HERE
    if os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
        _PINNED_HERE = True
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


# Whether this process set the pin (a local head started here). A pin inherited from the
# environment is kept: a job driver on a loopback head (`ray start --node-ip-address
# 127.0.0.1`) inherits it and must join that head on 127.0.0.1.
_PINNED_HERE = False


def is_loopback_cluster() -> bool:
    """Every alive node of the connected Ray cluster is on 127.0.0.1 (one machine, nothing exposed)."""
    import ipaddress

    import ray

    addresses = [n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")]
    try:
        return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)
    except ValueError:  # a host name: a real network
        return False


def _unpin_node_ip() -> None:
    """Undo ``_pin_node_ip_to_loopback`` (an earlier local head in this process) before joining a cluster."""
    import ray._private.ray_constants as ray_constants

    global _PINNED_HERE
    if _PINNED_HERE and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == "0":
        del os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"]
        ray_constants.ENABLE_RAY_CLUSTER = not ray_constants.IS_WINDOWS_OR_OSX
        _PINNED_HERE = False


def local_ray_pids() -> list[int]:
    """Pids of the processes the local head started (gcs, raylet, agents, workers), with descendants.

    Empty when this driver joined a cluster instead of starting one.
    """
    import psutil
    import ray

    node = getattr(ray._private.worker, "_global_node", None)
    if node is None:
        return []
    roots = []
    for infos in node.all_processes.values():
        for info in infos:
            if info.process is not None and info.process.poll() is None:
                roots.append(info.process.pid)
    pids = set(roots)
    for pid in roots:
        try:
            pids.update(child.pid for child in psutil.Process(pid).children(recursive=True))
        except psutil.NoSuchProcess:
            continue
    return sorted(pids)


def listening_addresses(pids: Iterable[int]) -> set[str]:
    """Local IPs on which ``pids`` accept connections (TCP LISTEN sockets and bound UDP sockets)."""
    import psutil

    addresses: set[str] = set()
    for pid in pids:
        try:
            connections = psutil.Process(pid).net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        for conn in connections:
            if not conn.laddr:
                continue
            is_tcp_listener = conn.type == socket.SOCK_STREAM and conn.status == psutil.CONN_LISTEN
            is_udp_bound = conn.type == socket.SOCK_DGRAM and not conn.raddr
            if is_tcp_listener or is_udp_bound:
                addresses.add(conn.laddr.ip)
    return addresses

"""Helpers for tests that start their own `ray start --head` on 127.0.0.1 and stop exactly it.

Other engineers' Ray clusters run on the same machine, so a test never runs `ray stop`: it
picks free ports, gives its head a private temp dir, and stops the processes whose command
line names that temp dir.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import time
from pathlib import Path


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def pids_naming(text: str) -> list[int]:
    """Processes whose command line contains ``text`` (a head's private temp dir)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry.name))
    return pids


def stop_head(temp_dir: str) -> None:
    """SIGTERM, then SIGKILL, every process of the head that uses ``temp_dir``."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        for pid in pids_naming(temp_dir):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while pids_naming(temp_dir) and time.monotonic() < deadline:
            time.sleep(0.2)


def non_loopback_listeners(temp_dir: str) -> set[str]:
    """Addresses other than loopback on which the head's processes listen (TCP) or bind (UDP)."""
    import psutil

    bad = set()
    for pid in pids_naming(temp_dir):
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        for conn in conns:
            listening = conn.status == psutil.CONN_LISTEN or (
                conn.type == socket.SOCK_DGRAM and not conn.raddr
            )
            if not conn.laddr or not listening:
                continue
            ip = conn.laddr.ip.removeprefix("::ffff:")
            if not ipaddress.ip_address(ip).is_loopback:
                bad.add(conn.laddr.ip)
    return bad


def start_head(temp_dir: str, ports: list[int], env: dict[str, str], *, num_cpus: int = 2) -> str:
    """``ray start --head`` on 127.0.0.1 with ``temp_dir`` and the five ``ports`` (GCS, client server,
    dashboard agent, metrics, runtime-env agent), no dashboard; returns the GCS address. Starting it
    again with the same arguments after ``stop_head`` restarts the head where drivers look for it."""
    import shutil
    import subprocess

    gcs, client, agent, metrics, runtime_env = ports
    ray = shutil.which("ray", path=env.get("PATH")) or "ray"
    start = [
        ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
        "--include-dashboard", "false", "--ray-client-server-port", str(client),
        "--dashboard-agent-listen-port", str(agent), "--metrics-export-port", str(metrics),
        "--runtime-env-agent-port", str(runtime_env), "--num-cpus", str(num_cpus),
        "--temp-dir", temp_dir, "--disable-usage-stats",
    ]  # fmt: skip
    # Ray's own start-up can fail on a loaded 2-core machine, seen in CI: the raylet not yet registered
    # with a just-started GCS ("node registration may not be complete"), or the new GCS too slow to
    # answer ("Failed to get node info ... Deadline Exceeded", while a driver of the stopped head was
    # still reconnecting). The head is set-up, not what a test checks: what is left of a failed start
    # is stopped and, after a pause, it is started again, up to three times; the last failure is raised.
    attempts = 3
    for _ in range(attempts):
        proc = subprocess.run(start, env=env, capture_output=True, text=True, timeout=180)
        if proc.returncode == 0:
            return f"127.0.0.1:{gcs}"
        stop_head(temp_dir)
        time.sleep(5.0)  # let the load that slowed it settle
    raise RuntimeError(f"ray start --head failed {attempts} times; the last: {proc.stderr[-2000:]}")

"""init_ray: a loopback-only local head, idempotent; address resolution for clusters."""

from __future__ import annotations

import ipaddress
import os

import pytest

from geodistill.platform.runtime.ray_local import (
    ADDRESS_ENV,
    init_ray,
    listening_addresses,
    local_ray_pids,
    resolve_address,
)


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def test_every_ray_process_listens_on_loopback_only(ray_local):
    ray = ray_local

    @ray.remote
    def where() -> int:
        return os.getpid()

    worker_pid = ray.get(where.remote())  # forces a worker process to exist
    pids = local_ray_pids()
    assert worker_pid in pids
    names = set()
    import psutil

    for pid in pids:
        try:
            names.add(psutil.Process(pid).name())
        except psutil.NoSuchProcess:
            pass
    assert {"gcs_server", "raylet"} <= names
    # The test process itself is left out: other tests in the session may hold torch stores in it.
    addresses = listening_addresses(pids)
    assert addresses, "Ray processes should be listening somewhere"
    exposed = sorted(a for a in addresses if not _is_loopback(a))
    assert not exposed, f"Ray listens beyond loopback on {exposed}"


def test_the_local_head_is_a_loopback_cluster(ray_local):
    from geodistill.platform.runtime.ray_local import is_loopback_cluster

    assert is_loopback_cluster()


def test_init_ray_is_idempotent(ray_local):
    node_id = ray_local.get_runtime_context().get_node_id()
    init_ray(num_cpus=2)
    assert ray_local.is_initialized()
    assert ray_local.get_runtime_context().get_node_id() == node_id


def test_listening_addresses_sees_a_wildcard_listener():
    """The helper must be able to fail: a socket on 0.0.0.0 is reported as such."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        assert "0.0.0.0" in listening_addresses([os.getpid()])
    finally:
        sock.close()
    assert listening_addresses([2**22 + 12345]) == set()  # no such pid: nothing, no error


@pytest.mark.parametrize(
    ("argument", "env", "job_env", "expected"),
    [
        (None, None, None, None),
        ("local", "10.0.0.1:6379", None, None),
        (None, "ray://head:10001", None, "ray://head:10001"),
        ("auto", "ray://head:10001", None, "auto"),
        (None, "", None, None),
        # Under `ray job submit` the driver's cluster is in RAY_ADDRESS; ours wins over it.
        (None, None, "127.0.0.1:6379", "127.0.0.1:6379"),
        (None, "ray://head:10001", "127.0.0.1:6379", "ray://head:10001"),
        ("local", None, "127.0.0.1:6379", None),
    ],
)
def test_resolve_address(monkeypatch, argument, env, job_env, expected):
    for name, value in ((ADDRESS_ENV, env), ("RAY_ADDRESS", job_env)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert resolve_address(argument) == expected

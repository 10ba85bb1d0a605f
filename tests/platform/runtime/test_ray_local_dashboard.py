"""`--dashboard`: the Ray dashboard of a local head, on 127.0.0.1 only, and its URL."""

from __future__ import annotations

import ipaddress
import urllib.request

import pytest


@pytest.mark.slow
def test_the_dashboard_listens_on_loopback_and_its_url_answers():
    import ray

    from geodistill.platform.runtime.ray_local import (
        dashboard_url,
        init_ray,
        listening_addresses,
        local_ray_pids,
    )

    assert not ray.is_initialized()
    init_ray(num_cpus=1, include_dashboard=True)
    try:
        url = dashboard_url()
        assert url is not None and url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=60) as response:  # loopback only
            assert response.status == 200
        # Loopback only; an IPv6 socket may name 127.0.0.1 in its IPv4-mapped form (::ffff:127.0.0.1).
        addresses = listening_addresses(local_ray_pids())
        exposed = {a for a in addresses if not ipaddress.ip_address(a.removeprefix("::ffff:")).is_loopback}
        assert addresses and not exposed, addresses
    finally:
        ray.shutdown()

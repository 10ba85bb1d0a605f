"""Shared fixtures: small synthetic UniV datasets generated once per test session, a local Ray head
and an S3-compatible server per module."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from geodistill.data.synth import generate_univ


@pytest.fixture(scope="session", autouse=True)
def leaderboard_outside_the_checkout(tmp_path_factory):
    """Commands that write leaderboard rows by default never write into the repository's runs/."""
    if "GEODISTILL_LEADERBOARD" not in os.environ:
        os.environ["GEODISTILL_LEADERBOARD"] = str(tmp_path_factory.mktemp("default_leaderboard"))
    yield


@pytest.fixture(scope="session")
def synth_univ(tmp_path_factory) -> Path:
    """12 places (6 train, 6 test + 1 distractor), 64 px tiles / 48 px frames, drone as jpeg frames."""
    return generate_univ(tmp_path_factory.mktemp("univ") / "univ", buildings=12, seed=0, img_size=64)


@pytest.fixture(scope="session")
def synth_univ_mp4(tmp_path_factory) -> Path:
    """The same places as ``synth_univ`` with each drone flight stored as one 10 fps mp4."""
    return generate_univ(
        tmp_path_factory.mktemp("univ_mp4") / "univ", buildings=12, seed=0, img_size=64, video="mp4"
    )


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    on a shared 2-core machine more threads only oversubscribe it (a step runs ~10x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray head (127.0.0.1, 2 CPUs, no dashboard) shared by the Ray tests of one module.

    Per module, not per session: an actor a test leaves behind (a TrainController of a run
    that failed on purpose, say) keeps its CPUs until Ray shuts down, and a later module's
    trials would wait for them forever.
    """
    import ray

    from geodistill.platform.runtime.ray_local import init_ray

    init_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on 127.0.0.1 for a module (``services.s3_server``: one bucket, fake credentials)."""
    from services import s3_server

    with s3_server() as server:
        yield server

"""Ray Train's torch rendezvous on 127.0.0.1: the store listens on loopback only, and a process group forms on it."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import psutil
import pytest
import torch.distributed as dist

from geodistill.platform.runtime import torch_loopback
from geodistill.platform.runtime.torch_loopback import LOOPBACK, LoopbackTorchConfig


@pytest.fixture
def master_store():
    """Rank 0's store, opened in this process as Ray Train's rank 0 would; closed afterwards."""
    port = torch_loopback._open_master_store(world_size=2, timeout_s=30)
    yield port
    master = torch_loopback._MASTER
    master.pop("socket").detach()  # the store owns the file descriptor and closes it
    master.pop("store")


def test_the_master_store_listens_on_loopback_only_and_answers(master_store):
    port = master_store
    sock = torch_loopback._MASTER["socket"]
    assert sock.getsockname() == (LOOPBACK, port)
    listening = {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process().net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }
    assert listening == {(LOOPBACK, port)}  # no wildcard (0.0.0.0 / ::) socket on the store's port
    client = dist.TCPStore(LOOPBACK, port, 2, False, timeout=datetime.timedelta(seconds=30))
    client.set("rank1", "ready")
    assert torch_loopback._MASTER["store"].get("rank1") == b"ready"


def _all_reduce_worker(config: dict) -> None:
    import os

    import ray.train
    import torch
    import torch.distributed as dist

    rank = ray.train.get_context().get_world_rank()
    value = torch.tensor([float(rank + 1)])
    dist.all_reduce(value)
    Path(config["out"], f"rank{rank}.json").write_text(
        json.dumps({"sum": value.item(), "master": os.environ["MASTER_ADDR"], "world": dist.get_world_size()})
    )


@pytest.mark.slow  # starts Ray and a two-worker Ray Train group
def test_two_workers_form_a_gloo_group_over_the_loopback_store(ray_local, tmp_path):
    import ray.train
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        _all_reduce_worker,
        train_loop_config={"out": str(tmp_path)},
        torch_config=LoopbackTorchConfig(backend="gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        run_config=ray.train.RunConfig(name="loopback", storage_path=str(tmp_path / "storage")),
    )
    trainer.fit()
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks == [{"sum": 3.0, "master": LOOPBACK, "world": 2}] * 2  # 1 + 2 on both ranks

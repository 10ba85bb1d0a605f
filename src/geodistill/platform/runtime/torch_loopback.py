"""A Ray Train torch backend whose rendezvous store listens on 127.0.0.1, not on every interface.

Ray Train's torch backend has rank 0 host torch's ``TCPStore`` for the process-group rendezvous,
and the store's server binds the wildcard address (``::``), whatever MASTER_ADDR says: on a
laptop or CI box that opens a port to the network for the whole run. On a local (single-node,
loopback) head we instead bind the listening socket ourselves on 127.0.0.1 and hand it to the
store (``master_listen_fd``); the process group is then built from that store. Clusters keep
Ray's own backend (their workers must reach rank 0 over the network).
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

import ray.train
import torch
import torch.distributed as dist
from ray.train.torch import TorchConfig
from ray.train.torch.config import _TorchBackend  # on_shutdown (process-group teardown) is reused

LOOPBACK = "127.0.0.1"
_MASTER: dict[str, Any] = {}  # rank 0 keeps its listening socket and store alive here


@dataclass
class LoopbackTorchConfig(TorchConfig):
    """``TorchConfig`` for a single-node loopback Ray head (rendezvous on 127.0.0.1 only)."""

    @property
    def backend_cls(self):
        return _LoopbackTorchBackend


class _LoopbackTorchBackend(_TorchBackend):
    def on_start(self, worker_group, backend_config: TorchConfig) -> None:
        backend = backend_config.backend or "gloo"
        world_size = len(worker_group)
        port = worker_group.execute_single(
            0, _open_master_store, world_size=world_size, timeout_s=backend_config.timeout_s
        )
        futures = [
            worker_group.execute_single_async(
                rank,
                _join_process_group,
                backend=backend,
                world_rank=rank,
                world_size=world_size,
                port=port,
                timeout_s=backend_config.timeout_s,
            )
            for rank in range(world_size)
        ]
        ray.get(futures)


def _open_master_store(*, world_size: int, timeout_s: int) -> int:
    """Rank 0: listen on 127.0.0.1 (a free port) and start the store's server on that socket."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    sock.listen(max(16, 2 * world_size))
    port = sock.getsockname()[1]
    store = dist.TCPStore(
        LOOPBACK,
        port,
        world_size,
        True,
        timeout=datetime.timedelta(seconds=timeout_s),
        wait_for_workers=False,
        master_listen_fd=sock.fileno(),
    )
    _MASTER.update(socket=sock, store=store)
    return port


def _join_process_group(*, backend: str, world_rank: int, world_size: int, port: int, timeout_s: int) -> None:
    """Every rank: torchrun-style environment, then ``init_process_group`` over the loopback store."""
    rank = world_rank
    context = ray.train.get_context()
    os.environ.update(
        MASTER_ADDR=LOOPBACK,
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(context.get_local_rank()),
        LOCAL_WORLD_SIZE=str(context.get_local_world_size()),
        NODE_RANK=str(context.get_node_rank()),
        ACCELERATE_TORCH_DEVICE=str(ray.train.torch.get_device()),
    )
    if backend == "nccl" and not torch.cuda.is_available():
        # NCCL needs a CUDA device. A worker that reserved GPUs but sees none (a CPU machine
        # whose Ray head declares GPU resources, as the placement tests do) joins with gloo.
        logging.getLogger(__name__).warning("rank %d reserved GPUs but sees no CUDA device: using gloo", rank)
        backend = "gloo"
    timeout = datetime.timedelta(seconds=timeout_s)
    if rank == 0:
        store = _MASTER["store"]
    else:
        store = dist.TCPStore(LOOPBACK, port, world_size, False, timeout=timeout)
    dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world_size, timeout=timeout)

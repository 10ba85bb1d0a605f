"""The one interface every training strategy implements: forward, backward, step, state.

The loop calls, once per micro-batch::

    loss, parts = wrapped.forward(drone, satellite, labels, teacher)
    wrapped.backward(loss)        # scales by 1/grad_accum; no gradient sync between boundaries
    wrapped.step()                # on an accumulation boundary: clip, optimizer, scheduler, zero_grad

The scheduler is stepped on optimizer steps only, so the learning rate follows the same curve
under every strategy (``strategies.py``: plain/DDP and Accelerate; ``zero.py``: DeepSpeed).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.distributed as dist

from geodistill.errors import ConfigError
from geodistill.train.config import RunConfig
from geodistill.train.steps import TrainModule

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def distributed_ready() -> bool:
    """A torch.distributed process group is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def check_strategy(cfg: RunConfig, device: torch.device) -> None:
    """Refuse, in one line and before any work, combinations a strategy cannot run here."""
    if cfg.train.strategy == "deepspeed" and cfg.train.precision == "fp16" and device.type == "cpu":
        raise ConfigError("train.precision=fp16 with deepspeed needs a GPU; use bf16 on CPU")


class Wrapped:
    """The common interface; subclasses differ in how they wrap, sync and step."""

    name = "plain"

    def __init__(
        self,
        module: TrainModule,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        cfg: RunConfig,
        device: torch.device,
    ) -> None:
        self.module = module  # what forward calls (maybe a DDP / engine wrapper)
        self._inner = module
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.cfg = cfg
        self.device = device
        self.accum = cfg.train.grad_accum
        self.micro = 0  # micro-batches since the last optimizer step
        self.optimizer_steps = 0

    @property
    def boundary(self) -> bool:
        """The current micro-batch ends an accumulation cycle (the optimizer steps after it)."""
        return (self.micro + 1) % self.accum == 0

    def autocast(self) -> contextlib.AbstractContextManager:
        dtype = AUTOCAST_DTYPES.get(self.cfg.train.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def forward(self, *args: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with self.autocast():
            return self.module(*args)

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.accum).backward()

    def clip(self) -> None:
        if self.cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self._inner.parameters(), self.cfg.train.grad_clip)

    def step(self) -> bool:
        """Optimizer + scheduler step on an accumulation boundary; True when it stepped."""
        stepped = self.boundary
        self.micro += 1
        if not stepped:
            return False
        self.clip()
        self.optimizer.step()
        self.scheduler.step()
        self.zero_grad()
        self.optimizer_steps += 1
        return True

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def unwrap(self) -> TrainModule:
        return self._inner

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The GeoModel's complete state_dict (collective for sharded strategies: call on every rank)."""
        return self._inner.model.state_dict()

    def adapters_state_dict(self) -> dict[str, torch.Tensor] | None:
        adapters = self._inner.adapters
        return None if adapters is None else adapters.state_dict()

    def state(self) -> dict[str, Any]:
        """Optimizer + scheduler state for resuming (weights-only loadable)."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "optimizer_steps": self.optimizer_steps,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("optimizer") is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.optimizer_steps = int(state.get("optimizer_steps", 0))

    def train(self, mode: bool = True) -> None:
        self.module.train(mode)

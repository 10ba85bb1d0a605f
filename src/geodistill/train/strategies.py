"""How the TrainModule is run: plain/DDP, Accelerate or DeepSpeed, behind one ``Wrapped`` interface.

``wrap(module, optimizer, cfg, context, scheduler=...)`` picks the strategy of ``train.strategy``:

- ``ddp``: ``DistributedDataParallel`` when a process group with world size > 1 is up (gloo on
  CPU, NCCL on GPU), the module itself otherwise; autocast for bf16/fp16 (+ GradScaler for fp16).
- ``accelerate``: ``Accelerator(mixed_precision, gradient_accumulation_steps, cpu)``; it reuses an
  existing process group (it reads RANK/WORLD_SIZE from the environment).
- ``deepspeed``: ``zero.DeepSpeedWrapped`` (ZeRO stage, bf16/fp16, optional CPU offload).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from geodistill.errors import ConfigError
from geodistill.train.config import RunConfig
from geodistill.train.context import TrainContext
from geodistill.train.steps import TrainModule
from geodistill.train.wrapped import Wrapped, distributed_ready
from geodistill.train.zero import DeepSpeedWrapped, scalar_params_to_1d


class DDPWrapped(Wrapped):
    """torch DDP (world size > 1) or the plain module; fp16 uses a GradScaler."""

    name = "ddp"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if distributed_ready():
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [self.device.index] if self.device.type == "cuda" else None
            # find_unused_parameters: some timm heads (e.g. ConvNeXt's head norm) never run
            # in forward_intermediates, and InfoNCE's logit scale is unused when its weight is 0.
            self.module = DistributedDataParallel(
                self._inner, device_ids=device_ids, find_unused_parameters=True
            )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.cfg.train.precision == "fp16")
        self._sync_ctx: contextlib.ExitStack | None = None

    def forward(self, *args: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        stack = contextlib.ExitStack()
        if isinstance(self.module, nn.parallel.DistributedDataParallel) and not self.boundary:
            stack.enter_context(self.module.no_sync())  # gradients stay local until the boundary
        self._sync_ctx = stack
        with self.autocast():
            return self.module(*args)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss / self.accum).backward()
        if self._sync_ctx is not None:
            self._sync_ctx.close()
            self._sync_ctx = None

    def step(self) -> bool:
        stepped = self.boundary
        self.micro += 1
        if not stepped:
            return False
        if self.cfg.train.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self._inner.parameters(), self.cfg.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.zero_grad()
        self.optimizer_steps += 1
        return True

    def state(self) -> dict[str, Any]:
        state = super().state()
        if self.scaler.is_enabled():
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])


def prepare_module(module: TrainModule, cfg: RunConfig) -> None:
    """Strategy-specific changes to the module that must precede building its optimizer."""
    if cfg.train.strategy == "deepspeed":
        module.scalar_param_names = scalar_params_to_1d(module.model)


def wrap(
    module: TrainModule,
    optimizer: torch.optim.Optimizer,
    cfg: RunConfig,
    context: TrainContext,
    *,
    scheduler: Any,
    micro_batch: int = 1,
) -> Wrapped:
    """Wrap ``module`` (already on ``context.device``) with ``cfg.train.strategy``.

    ``micro_batch`` is the per-rank batch size (DeepSpeed's config needs it).
    """
    strategy = cfg.train.strategy
    if strategy == "ddp":
        return DDPWrapped(module, optimizer, scheduler, cfg, context.device)
    if strategy == "accelerate":
        return AccelerateWrapped(module, optimizer, scheduler, cfg, context.device)
    if strategy == "deepspeed":
        return DeepSpeedWrapped(module, optimizer, scheduler, cfg, context.device, micro_batch=micro_batch)
    raise ConfigError(f"train.strategy must be ddp, accelerate or deepspeed; got {strategy!r}")


class AccelerateWrapped(Wrapped):
    """Accelerator(mixed_precision, gradient_accumulation_steps); we step the scheduler ourselves."""

    name = "accelerate"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from accelerate import Accelerator, DistributedDataParallelKwargs
        from accelerate.state import AcceleratorState, GradientState

        # Accelerate keeps process-wide singletons and refuses a second Accelerator with other
        # settings; a process may run several fits (tests, a Tune worker), each with its own.
        # The process group itself is not touched.
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
        precision = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[self.cfg.train.precision]
        self.accelerator = Accelerator(
            mixed_precision=precision,
            gradient_accumulation_steps=self.accum,
            cpu=self.device.type == "cpu",
            step_scheduler_with_optimizer=False,
            # as for ddp: some timm head parameters never take part in forward_intermediates
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        self.module, self.optimizer = self.accelerator.prepare(self._inner, self.optimizer)
        self._accumulate: contextlib.ExitStack | None = None

    def forward(self, *args: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        stack = contextlib.ExitStack()
        stack.enter_context(self.accelerator.accumulate(self.module))
        self._accumulate = stack
        return self.module(*args)  # prepare() wrapped forward in autocast

    def backward(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(loss)  # divides by gradient_accumulation_steps

    def step(self) -> bool:
        stepped = self.accelerator.sync_gradients
        self.micro += 1
        try:
            if not stepped:
                return False
            if self.cfg.train.grad_clip > 0:
                self.accelerator.clip_grad_norm_(self.module.parameters(), self.cfg.train.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.optimizer_steps += 1
            return True
        finally:
            if self._accumulate is not None:
                self._accumulate.close()
                self._accumulate = None

    def unwrap(self) -> TrainModule:
        return self.accelerator.unwrap_model(self.module)

    def state(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "optimizer_steps": self.optimizer_steps,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("optimizer") is not None:
            self.optimizer.optimizer.load_state_dict(state["optimizer"])
        if state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.optimizer_steps = int(state.get("optimizer_steps", 0))

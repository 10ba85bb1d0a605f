"""How the TrainModule is run: plain/DDP, Accelerate, or DeepSpeed, behind one small interface.

One file over 400 lines on purpose: the three strategies implement one ``Wrapped`` contract
and are read side by side (what each does at forward, backward, step and checkpoint).

``wrap(module, optimizer, cfg, context, scheduler=...)`` returns a ``Wrapped`` whose
``forward`` / ``backward`` / ``step`` the loop calls once per micro-batch:

    loss, parts = wrapped.forward(drone, satellite, labels, teacher)
    wrapped.backward(loss)        # scales by 1/grad_accum; no gradient sync between boundaries
    wrapped.step()                # on an accumulation boundary: clip, optimizer, scheduler, zero_grad

- ``ddp``: ``DistributedDataParallel`` when a process group with world size > 1 is up (gloo on
  CPU, NCCL on GPU), the module itself otherwise; autocast for bf16/fp16 (+ GradScaler for fp16).
- ``accelerate``: ``Accelerator(mixed_precision, gradient_accumulation_steps, cpu)``; it reuses an
  existing process group (it reads RANK/WORLD_SIZE from the environment).
- ``deepspeed``: ``deepspeed.initialize`` with a config dict (ZeRO stage, bf16/fp16, optional
  CPU offload, clipping, accumulation); on a CPU-only host ``DS_ACCELERATOR=cpu`` and the
  optimizer is torch's AdamW handed to DeepSpeed (no fused/CPU-Adam op to compile).

Each strategy's scheduler is stepped by the wrapper on optimizer steps only, so the learning
rate follows the same curve under every strategy.

Why one file over 400 lines: the three strategies implement one small interface and differ in
a few lines each; side by side, a reader sees exactly where they differ.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from geodistill.errors import ConfigError
from geodistill.train.config import RunConfig
from geodistill.train.context import TrainContext
from geodistill.train.steps import TrainModule

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def distributed_ready() -> bool:
    """A torch.distributed process group is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


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


def check_strategy(cfg: RunConfig, device: torch.device) -> None:
    """Refuse, in one line and before any work, combinations a strategy cannot run here."""
    if cfg.train.strategy == "deepspeed" and cfg.train.precision == "fp16" and device.type == "cpu":
        raise ConfigError("train.precision=fp16 with deepspeed needs a GPU; use bf16 on CPU")


def prepare_module(module: TrainModule, cfg: RunConfig) -> None:
    """Strategy-specific changes to the module that must precede building its optimizer."""
    if cfg.train.strategy == "deepspeed":
        module.scalar_param_names = _scalar_params_to_1d(module.model)


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


def deepspeed_config(cfg: RunConfig, world_size: int, micro_batch: int) -> dict[str, Any]:
    """The DeepSpeed config dict for this run (batch sizes are per rank x accumulation x ranks)."""
    t = cfg.train
    zero: dict[str, Any] = {"stage": t.zero_stage}
    if t.offload:
        zero["offload_optimizer"] = {"device": "cpu"}
        if t.zero_stage == 3:
            zero["offload_param"] = {"device": "cpu"}
    return {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": t.grad_accum,
        "train_batch_size": micro_batch * t.grad_accum * world_size,
        "gradient_clipping": t.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": t.precision == "bf16"},
        "fp16": {"enabled": t.precision == "fp16"},
        "zero_allow_untested_optimizer": True,
        # torch's AdamW also with offload: DeepSpeedCPUAdam is a C++ op compiled on first use
        # (about 5 minutes on a 2-core host), too slow for a trial's first epoch.
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


class DeepSpeedWrapped(Wrapped):
    """deepspeed.initialize(model, optimizer=torch AdamW, config=dict); the engine steps and clips."""

    name = "deepspeed"

    def __init__(self, *args: Any, micro_batch: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.device.type == "cpu":
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
        import deepspeed

        if not (dist.is_available() and dist.is_initialized()):
            _init_single_process_group(self.device)
        world = dist.get_world_size()
        # DeepSpeed insists on its launcher's variables; describe the group we already have.
        os.environ.setdefault(
            "LOCAL_RANK", str(self.device.index or 0) if self.device.type == "cuda" else "0"
        )
        os.environ.setdefault("RANK", str(dist.get_rank()))
        os.environ.setdefault("WORLD_SIZE", str(world))
        # DeepSpeed broadcasts and partitions parameters through p.view(uint8), which fails for
        # 0-d tensors (the logit scale, GeM's p): hold those as [1] while DeepSpeed owns the
        # module (broadcasting keeps the maths) and give them back their shape in state dicts.
        self.scalar_names = getattr(self._inner, "scalar_param_names", None)
        if self.scalar_names is None:
            raise RuntimeError("call prepare_module(module, cfg) before building the optimizer")
        check_strategy(self.cfg, self.device)
        if self.cfg.train.precision == "bf16":
            # DeepSpeed casts the parameters but not the buffers (BatchNorm statistics): cast all.
            self._inner.to(torch.bfloat16)
        self.engine, self.optimizer, _, _ = deepspeed.initialize(
            model=self._inner,
            optimizer=self.optimizer,
            config=deepspeed_config(self.cfg, world, micro_batch),
            dist_init_required=False,
        )
        self.module = self.engine

    def forward(self, *args: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        drone, satellite, *rest = args
        dtype = self.engine.get_data_types()[0]  # bf16/fp16 engines hold low-precision weights
        return self.engine(drone.to(dtype), satellite.to(dtype), *rest)

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)  # scales by 1/gradient_accumulation_steps itself

    def step(self) -> bool:
        stepped = self.engine.is_gradient_accumulation_boundary()
        self.engine.step()  # clips, steps and zeroes on the boundary only
        self.micro += 1
        if stepped:
            self.scheduler.step()
            self.optimizer_steps += 1
        return stepped

    def zero_grad(self) -> None:
        self.engine.zero_grad()

    def unwrap(self) -> TrainModule:
        return self.engine.module

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        model = self.engine.module.model
        if self.cfg.train.zero_stage < 3:
            state = dict(model.state_dict())
        else:
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
                state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for name in self.scalar_names:
            state[name] = state[name].reshape(())
        return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}

    def adapters_state_dict(self) -> dict[str, torch.Tensor] | None:
        adapters = self.engine.module.adapters
        if adapters is None:
            return None
        if self.cfg.train.zero_stage < 3:
            return {k: v.float() for k, v in adapters.state_dict().items()}
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(adapters.parameters()), modifier_rank=None):
            return {k: v.detach().float().clone() for k, v in adapters.state_dict().items()}

    def state(self) -> dict[str, Any]:
        # ZeRO partitions the optimizer state over ranks; only a world of one can resume it
        # from rank 0's copy. Larger worlds resume weights + schedule and restart the moments.
        state: dict[str, Any] = {
            "scheduler": self.scheduler.state_dict(),
            "optimizer_steps": self.optimizer_steps,
        }
        if not distributed_ready():
            state["optimizer"] = self.optimizer.state_dict()
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("optimizer") is not None and not distributed_ready():
            try:
                self.optimizer.load_state_dict(state["optimizer"])
            except (KeyError, ValueError, RuntimeError):
                pass  # a different ZeRO layout: restart the moments
        if state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.optimizer_steps = int(state.get("optimizer_steps", 0))


def _scalar_params_to_1d(model: nn.Module) -> list[str]:
    """Replace every 0-d parameter of ``model`` by a [1] one in place; return their state_dict names."""
    names = []
    for module_name, module in model.named_modules():
        for pname, p in list(module.named_parameters(recurse=False)):
            if p.dim() == 0:
                setattr(module, pname, nn.Parameter(p.data.reshape(1), requires_grad=p.requires_grad))
                names.append(f"{module_name}.{pname}" if module_name else pname)
    return names


def _init_single_process_group(device: torch.device) -> None:
    """DeepSpeed needs a process group even for one process: a world of one on a free local port."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)

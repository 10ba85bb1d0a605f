"""The DeepSpeed strategy: ``deepspeed.initialize`` with a config dict built from the run config.

ZeRO stage 1/2/3, bf16/fp16, optional CPU offload, clipping and accumulation are DeepSpeed's;
on a CPU-only host ``DS_ACCELERATOR=cpu`` and the optimizer is torch's AdamW handed to DeepSpeed
(no fused or CPU-Adam op to compile). DeepSpeed needs a process group even for one process, so
a world of one is started on a free loopback port.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from geodistill.train.config import RunConfig
from geodistill.train.steps import TrainModule
from geodistill.train.wrapped import Wrapped, check_strategy, distributed_ready


class _NoCudaRuntime(logging.Filter):
    """Drops torch's "No CUDA runtime is found, using CUDA_HOME=..." (a CUDA toolkit on a host
    without a GPU): the CPU ops DeepSpeed builds need g++ only, so the line misleads a CPU user."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No CUDA runtime is found")


_NO_CUDA_RUNTIME = _NoCudaRuntime()


def quiet_deepspeed(*, cpu: bool) -> None:
    """Before importing DeepSpeed: drop what misleads a user and asks nothing of them. Always
    torch's FutureWarnings that ``all_gather_into_tensor`` and ``reduce_scatter_tensor`` (which
    ZeRO calls) are deprecated; on a CPU host, name DeepSpeed's CPU accelerator
    (``DS_ACCELERATOR=cpu``, so it does not warn that it was "unable to detect" a GPU) and drop
    torch's CUDA_HOME warning."""
    warnings.filterwarnings(
        "ignore",
        message=r"`torch\.distributed\.(all_gather_into_tensor|reduce_scatter_tensor)` is deprecated",
        category=FutureWarning,
    )
    if cpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        logging.getLogger("torch.utils.cpp_extension").addFilter(_NO_CUDA_RUNTIME)  # once: same instance


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
        # (minutes on a small CPU host), too slow for a trial's first epoch.
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


class DeepSpeedWrapped(Wrapped):
    """deepspeed.initialize(model, optimizer=torch AdamW, config=dict); the engine steps and clips."""

    name = "deepspeed"

    def __init__(self, *args: Any, micro_batch: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        quiet_deepspeed(cpu=self.device.type == "cpu")
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


def scalar_params_to_1d(model: nn.Module) -> list[str]:
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

"""GPU placement: what a trial or a Ray Train worker reserves, and hiding GPUs it did not reserve.

Ray sets ``CUDA_VISIBLE_DEVICES`` only for a task or actor that reserved GPUs: a 0-GPU task
sees every GPU of its node, so 0-GPU trials would all run on ``cuda:0`` while Ray counts none
in use. Every process geodistill runs on Ray therefore calls ``hide_unreserved_gpus()`` before
torch touches CUDA. An in-process trial reserves its GPUs itself (``--gpus-per-trial G``, a
fraction lets small students share one); a Ray Train trial reserves none and each of its N
workers reserves ``G / N``. Why and what is reserved: docs/design.md, "GPU placement on Ray".
"""

from __future__ import annotations

import copy
import os

from geodistill.errors import ConfigError
from geodistill.train.config import RunConfig, ScalingConfig

VISIBLE_DEVICES_ENV = "CUDA_VISIBLE_DEVICES"
TRIAL_TOKEN_MEMORY = 2**20  # bytes: what a multi-worker trial's own (coordinating) process asks for


def gpus_per_worker(scaling: ScalingConfig) -> float:
    """GPUs one worker reserves: ``scaling.gpus_per_worker``, else 1 with ``use_gpu``, else 0."""
    if scaling.gpus_per_worker is not None:
        return float(scaling.gpus_per_worker)
    return 1.0 if scaling.use_gpu else 0.0


def check_gpus_per_trial(gpus_per_trial: float | None) -> None:
    """Refuse a negative ``--gpus-per-trial`` or a fraction above 1 that is not a whole number."""
    if gpus_per_trial is None:
        return
    if gpus_per_trial < 0:
        raise ConfigError(f"--gpus-per-trial must be >= 0; got {gpus_per_trial:g}")
    if gpus_per_trial > 1 and not float(gpus_per_trial).is_integer():
        raise ConfigError(
            f"--gpus-per-trial above 1 must be a whole number (Ray cannot split a trial over part GPUs); "
            f"got {gpus_per_trial:g}"
        )


def with_gpus_per_trial(cfg: RunConfig, gpus_per_trial: float | None) -> RunConfig:
    """``cfg`` with the trial's GPU override applied to its workers (a copy; ``cfg`` is unchanged).

    Multi-worker: each of the N workers reserves ``G / N`` GPUs (``use_gpu`` follows ``G > 0``).
    Single-worker: the trial itself reserves ``G`` (see ``trial_resources``), and ``use_gpu``
    follows too, so the config on the leaderboard row says where it ran.
    """
    if gpus_per_trial is None:
        return cfg
    cfg = copy.deepcopy(cfg)
    workers = max(cfg.scaling.num_workers, 1)
    cfg.scaling.gpus_per_worker = gpus_per_trial / workers
    cfg.scaling.use_gpu = gpus_per_trial > 0
    return cfg


def trial_resources(cfg: RunConfig, *, cpus: float, gpus_per_trial: float | None) -> dict[str, float]:
    """The resources one Tune trial of ``cfg`` reserves for its own process (``tune.with_resources``).

    A multi-worker trial only coordinates its TorchTrainer (whose workers reserve CPUs and GPUs
    themselves); Ray treats an all-zero request as "default resources" (1 CPU), so it asks for
    a token amount of memory instead.
    """
    cfg = with_gpus_per_trial(cfg, gpus_per_trial)
    if not cfg.scaling.in_process:
        return {"CPU": 0, "memory": TRIAL_TOKEN_MEMORY}
    return {"CPU": cpus, "GPU": gpus_per_worker(cfg.scaling)}


def worker_resources(scaling: ScalingConfig) -> dict[str, float]:
    """``resources_per_worker`` of a Ray Train ``ScalingConfig``."""
    gpus = gpus_per_worker(scaling)
    return {"CPU": scaling.cpus_per_worker, **({"GPU": gpus} if gpus > 0 else {})}


def reserved_gpu_ids() -> list[str]:
    """The GPU ids Ray granted this task or actor (empty outside Ray or with no GPU reserved)."""
    import ray

    if not ray.is_initialized():
        return []
    return [str(i) for i in ray.get_runtime_context().get_accelerator_ids().get("GPU", [])]


def hide_unreserved_gpus() -> list[str]:
    """Inside a Ray task/actor: hide every GPU unless this process reserved one; return the ids.

    Call before torch initialises CUDA (torch reads ``CUDA_VISIBLE_DEVICES`` once). Processes
    that reserved GPUs keep what Ray (or Ray Train, for a worker group) set.
    """
    ids = reserved_gpu_ids()
    if not ids:
        os.environ[VISIBLE_DEVICES_ENV] = ""
    return ids


__all__ = [
    "check_gpus_per_trial",
    "gpus_per_worker",
    "hide_unreserved_gpus",
    "reserved_gpu_ids",
    "trial_resources",
    "with_gpus_per_trial",
    "worker_resources",
]

"""Run ``geodistill.train.loop.fit`` in this process or on Ray Train workers: ``run_training(cfg)``.

``scaling.num_workers == 0``: ``fit`` here with an ``InProcessContext``; ``>= 1``: a ``TorchTrainer``
whose workers call ``fit`` with a ``RayTrainWorkerContext`` (rank 0's checkpoints under
``<run dir>/checkpoints/epoch_NNNN``; the group restarts from the latest when a worker dies).
``train.keep_checkpoints=last_best`` keeps the latest and the best-scoring epoch (the earlier of
equal ones), the best without training state, on local or URI storage. Both runners write
``config.json`` (before any compute), ``metrics.jsonl`` (rank 0's epochs) and pid/node files.
Resuming with a different config is refused in one line naming the keys (``check_run_config``;
``RESUME_FREE_KEYS`` say how long or where a run goes) unless ``train.resume=force``.
``prepare_config`` checks the inputs once, the teacher through ``remote.resolve_teacher``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from geodistill.errors import ConfigError, UserError
from geodistill.platform.runtime.train_worker import (
    CHECKPOINT_SCORE,
    CHECKPOINTS_DIR,
    FitFn,
    RayTrainWorkerContext,
    StopRule,
    atomic_write_text,
    fetch_teacher,
    tracked_fit,
    train_loop,
)
from geodistill.schema import dotted
from geodistill.train.config import RunConfig
from geodistill.train.context import InProcessContext, TrainContext, drop_stale_state

DEFAULT_MAX_FAILURES = 2
RUN_CONFIG_FILE = "config.json"  # <output_dir>/<run_name>/config.json: the resolved RunConfig
PRINT_PATCH_ENV = "RAY_TRAIN_ENABLE_PRINT_PATCH"  # Ray Train's switch, propagated to its workers
PREEMPTION_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"  # likewise, to its controller
RAY_SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"  # Ray's record of a run's checkpoints
# May differ between a run and its resumption: length, bookkeeping and placement, not the result.
RESUME_FREE_KEYS = frozenset(
    {
        "train.epochs",  # extending a finished run is what resuming is for
        "train.eval_every",
        "train.resume",
        "train.keep_checkpoints",
        "experiment",  # the leaderboard group the row goes to
        "output_dir",  # the run directory is the same one either way
        "ray_address",
        "scaling.cpus_per_worker",
    }
)


def run_name_of(cfg: RunConfig) -> str:
    """``cfg.run_name``, or ``<stage>_<backbone>`` (re-using a name resumes that run)."""
    return cfg.run_name or f"{cfg.stage}_{cfg.model.backbone}"


def prepare_config(cfg: RunConfig) -> RunConfig:
    """A copy with the run name filled in and every path absolute (workers may start elsewhere).

    Also checks, before any worker starts, the inputs a user can get wrong: a student needs
    an existing teacher checkpoint, and an explicit data root must exist.
    """
    cfg = RunConfig.from_dict(cfg.to_dict())
    cfg.run_name = run_name_of(cfg)
    if any(sep in cfg.run_name for sep in ("/", "\\")) or cfg.run_name in (".", ".."):
        raise ConfigError(f"run_name must be a plain name, got {cfg.run_name!r}")
    cfg.output_dir = str(Path(cfg.output_dir).expanduser().resolve())
    if cfg.data.root is not None:
        root = Path(cfg.data.root).expanduser().resolve()
        if not root.exists():
            raise ConfigError(f"data.root does not exist: {root}")
        cfg.data.root = str(root)
    from geodistill.platform.tracking import parse_loggers, require

    require(parse_loggers(cfg.logger))  # a missing tracker library: one line, before any worker starts
    if cfg.model.weights is not None:
        cfg.model.weights = str(Path(cfg.model.weights).expanduser().resolve())
    if cfg.stage == "student":
        if not cfg.distill.teacher_checkpoint:
            raise ConfigError(
                "stage=student needs distill.teacher_checkpoint=PATH (a stage-1 checkpoint or run dir)"
            )
        from geodistill.platform.runtime.remote import resolve_teacher

        # checked here; a URI is fetched once per node where it trains (fetch_teacher)
        cfg.distill.teacher_checkpoint = resolve_teacher(cfg.distill.teacher_checkpoint)
    return cfg


def check_run_config(cfg: RunConfig, run_dir: str | Path) -> None:
    """Refuse (ConfigError, one line) to resume ``run_dir`` with a config that differs from the
    one it was started with, outside ``RESUME_FREE_KEYS``; ``train.resume=force`` allows it.

    A run directory without ``config.json`` (new, or from before configs were saved) passes.
    """
    path = Path(run_dir) / RUN_CONFIG_FILE
    if cfg.train.resume == "force" or not path.is_file():
        return
    try:
        saved = dotted(json.loads(path.read_text()))
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"run {cfg.run_name} has an unreadable {path} ({err}); pass train.resume=force to resume "
            "anyway, or choose another run_name"
        ) from None
    now = dotted(cfg.to_dict())
    differ = sorted(
        k for k in saved.keys() | now.keys() if k not in RESUME_FREE_KEYS and saved.get(k) != now.get(k)
    )
    if differ:
        was = ", ".join(f"{k}={saved.get(k)}" for k in differ)
        has = ", ".join(f"{k}={now.get(k)}" for k in differ)
        raise ConfigError(
            f"run {cfg.run_name} exists with {was}; this run has {has} — pass train.resume=force to resume "
            "anyway, or choose another run_name"
        )


def run_training(
    cfg: RunConfig,
    *,
    storage_path: str | None = None,
    should_stop: StopRule | None = None,
    max_failures: int = DEFAULT_MAX_FAILURES,
    fit_fn: FitFn | None = None,
    prepared: bool = False,
) -> Any:
    """Train ``cfg`` and return fit's ``TrainResult`` (its checkpoint: the last persisted one).

    ``should_stop`` (picklable for Ray) is consulted on rank 0 after every epoch, e.g. a
    search's rung rule. ``fit_fn`` replaces ``geodistill.eval.fit_evaluated`` (benchmarks, tests).
    ``prepared``: ``cfg`` is what ``prepare_config`` returned; it is copied, not checked again.
    """
    if not prepared:
        cfg = prepare_config(cfg)
    elif cfg.run_name and Path(cfg.output_dir).is_absolute():
        cfg = RunConfig.from_dict(cfg.to_dict())  # a URI teacher is replaced by its local copy below
    else:
        raise ValueError("run_training(prepared=True) needs prepare_config's output")
    run_dir = Path(cfg.output_dir) / cfg.run_name
    check_run_config(cfg, run_dir)  # before any compute
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / RUN_CONFIG_FILE, json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")
    if fit_fn is None:
        from geodistill.eval import fit_evaluated as fit_fn
    if cfg.scaling.in_process:
        fetch_teacher(cfg)
        context = InProcessContext(run_dir, rule=should_stop, keep=cfg.train.keep_checkpoints)
        return tracked_fit(fit_fn, cfg, context, run_dir)
    return _run_on_ray(
        cfg,
        run_dir=run_dir,
        storage_path=storage_path,
        should_stop=should_stop,
        max_failures=max_failures,
        fit_fn=fit_fn,
    )


def _run_on_ray(
    cfg: RunConfig,
    *,
    run_dir: Path,
    storage_path: str | None,
    should_stop: StopRule | None,
    max_failures: int,
    fit_fn: FitFn,
) -> Any:
    import pyarrow.fs
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from geodistill.platform.runtime.ray_local import init_ray, is_loopback_cluster
    from geodistill.platform.runtime.torch_loopback import LoopbackTorchConfig

    if max_failures < -1:
        raise ConfigError(f"max_failures must be >= -1, got {max_failures}")
    init_ray(cfg.ray_address)
    from geodistill.platform.runtime.gpus import gpus_per_worker, worker_resources

    use_gpu = gpus_per_worker(cfg.scaling) > 0
    backend = "nccl" if use_gpu else "gloo"
    # A loopback (one-machine) cluster keeps torch's rendezvous store on loopback too; a real
    # cluster needs it reachable from the other nodes.
    local = is_loopback_cluster()
    if local:
        _check_local_resources(cfg)
    torch_config = LoopbackTorchConfig(backend=backend) if local else TorchConfig(backend=backend)
    if storage_path is None:
        # Ray persists to <storage>/<name>/epoch_NNNN: this puts a Ray run's checkpoints where an
        # in-process run keeps them, so eval, resume and teacher paths read the same layout.
        storage, name = str(run_dir), CHECKPOINTS_DIR
    else:
        storage, name = storage_path, cfg.run_name
        if "://" not in storage:
            storage = str(Path(storage).expanduser().resolve())
    # Ray Train patches print in its workers to log each line as well as print it, so every line
    # a worker prints (the epoch line, DeepSpeed's) reached the console twice; Ray passes this
    # switch on to the workers. A value the user set stays.
    os.environ.setdefault(PRINT_PATCH_ENV, "0")
    if local:
        # Ray Train's PreemptionWatcher watches for nodes being drained, which one machine has
        # none of; starting it logs a C++ error line (its actor's arguments are in the object
        # store) that no Python logger can filter. A value the user set stays.
        os.environ.setdefault(PREEMPTION_ENV, "0")
    scaling = cfg.scaling
    trainer = TorchTrainer(
        train_loop_per_worker=train_loop,
        train_loop_config={
            "cfg": cfg.to_dict(),
            "run_dir": str(run_dir),
            "should_stop": should_stop,
            "fit_fn": fit_fn,
        },
        torch_config=torch_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=scaling.num_workers,
            use_gpu=use_gpu,
            resources_per_worker=worker_resources(scaling),
            placement_strategy=scaling.placement_strategy,
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=checkpoint_config(keep := _keep_checkpoints(cfg, storage, name)),
        ),
    )
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as err:
        user_error = _user_error_in(err)
        if user_error is not None:
            raise user_error from None
        raise
    latest = result.checkpoint  # what the result names and a re-run resumes from
    if keep == "last_best" and latest is not None:  # the best: weights only
        if isinstance(latest.filesystem, pyarrow.fs.LocalFileSystem):
            drop_stale_state(Path(latest.path).parent, keep=latest.path)
        else:  # a URI store (storage_path s3://...): the same, through its pyarrow file system
            from geodistill.platform.runtime.remote import drop_stale_state_on

            drop_stale_state_on(latest.filesystem, latest.path.rstrip("/").rpartition("/")[0], latest.path)
    return _with_persisted_checkpoint(result.return_value, result, storage)


def _keep_checkpoints(cfg: RunConfig, storage: str, name: str) -> str:
    """``train.keep_checkpoints``, except ``all`` when resuming a run begun before its checkpoints
    carried ``CHECKPOINT_SCORE`` (local storage): Ray would log an error for each of them and
    delete them, the best included."""
    keep = cfg.train.keep_checkpoints
    if keep == "all" or "://" in storage:
        return keep
    try:
        saved = json.loads((Path(storage) / name / RAY_SNAPSHOT_FILE).read_text())["checkpoint_results"]
        unscored = any(CHECKPOINT_SCORE not in r["metrics"] for r in saved)
    except (OSError, ValueError, LookupError, TypeError):  # none yet, or not a format we know
        return keep
    return "all" if unscored else keep


def checkpoint_config(keep: str) -> Any:
    """Ray's ``CheckpointConfig`` for ``train.keep_checkpoints``: ``all`` keeps every epoch;
    ``last_best`` keeps one by ``CHECKPOINT_SCORE`` (the best) and Ray always keeps the latest."""
    import ray.train

    if keep == "all":
        return ray.train.CheckpointConfig()
    return ray.train.CheckpointConfig(
        num_to_keep=1, checkpoint_score_attribute=CHECKPOINT_SCORE, checkpoint_score_order="max"
    )


def _check_local_resources(cfg: RunConfig) -> None:
    """On a one-machine head (no autoscaler) a request it cannot meet would wait forever: refuse it."""
    import ray

    from geodistill.platform.runtime.gpus import worker_resources

    total = ray.cluster_resources()
    scaling = cfg.scaling
    needs = {k: scaling.num_workers * v for k, v in worker_resources(scaling).items()}
    for resource, wanted in needs.items():
        have = total.get(resource, 0)
        if wanted > have:
            raise ConfigError(
                f"scaling asks for {wanted:g} {resource}(s) ({scaling.num_workers} worker(s)) but this machine's "
                f"Ray has {have:g}; lower scaling.num_workers / scaling.cpus_per_worker / scaling.gpus_per_worker or set ray_address"
            )


def _user_error_in(err: Exception) -> UserError | None:
    """The first UserError a worker raised (Ray wraps it), rebuilt as its own one-line class."""
    failures = getattr(err, "worker_failures", None) or {}
    for rank in sorted(failures):
        failure = failures[rank]
        for candidate in (failure, getattr(failure, "cause", None), getattr(failure, "__cause__", None)):
            if isinstance(candidate, UserError):
                cls = type(candidate)
                # RayTaskError subclasses mix the user class in; rebuild the plain one.
                plain = next(
                    (c for c in cls.__mro__ if issubclass(c, UserError) and "RayTaskError" not in c.__name__),
                    UserError,
                )
                lines = str(getattr(candidate, "cause", None) or candidate).strip().splitlines()
                message = lines[-1] if lines else plain.__name__
                try:
                    return plain(message)
                except TypeError:  # a subclass with a richer constructor
                    return UserError(message)
    return None


def _with_persisted_checkpoint(train_result: Any, result: Any, storage: str) -> Any:
    """Point ``train_result.checkpoint`` at the checkpoint Ray persisted: a local path, or on URI
    storage the URI (``remote.uri_on``: Ray's path has lost the scheme and the query)."""
    from geodistill.platform.runtime.remote import is_uri, uri_on

    checkpoint = result.checkpoint
    if train_result is None:
        raise RuntimeError(f"Ray Train finished without a result from rank 0 (run at {result.path})")
    if checkpoint is not None and dataclasses.is_dataclass(train_result):
        where = uri_on(storage, checkpoint.path) if is_uri(storage) else Path(checkpoint.path)
        train_result = dataclasses.replace(train_result, checkpoint=where)
    return train_result


def worker_pids(run_dir: str | Path) -> dict[int, int]:
    """rank -> pid of the Ray Train workers of ``run_dir`` (as each wrote it; may be stale)."""
    found = {}
    for path in Path(run_dir).glob("worker_*.pid"):
        try:
            found[int(path.stem.split("_", 1)[1])] = int(path.read_text().strip())
        except ValueError:
            continue
    return found


def worker_nodes(run_dir: str | Path) -> dict[int, str]:
    """rank -> Ray node id of the Ray Train workers of ``run_dir`` (as each last wrote it)."""
    return {
        int(path.stem.split("_", 1)[1]): path.read_text().strip()
        for path in Path(run_dir).glob("worker_*.node")
        if path.stem.split("_", 1)[1].isdigit()
    }


__all__ = [
    "RESUME_FREE_KEYS",
    "RUN_CONFIG_FILE",
    "RayTrainWorkerContext",
    "TrainContext",
    "check_run_config",
    "checkpoint_config",
    "prepare_config",
    "run_name_of",
    "run_training",
    "worker_nodes",
    "worker_pids",
]

"""The search driver: Ray Tune + Optuna over a space, precision up, GFLOPs down.

One file over 400 lines on purpose: ``run_search`` and each step it calls read top to bottom
here (the trial body, rows, tuner and space each have their own module already).

``run_search`` reads top to bottom as its steps:

1. ``_check_arguments`` and ``_prepare_space``: the space is loaded and validated first
   (``space.load_space``) and the teacher checked; a bad space never starts Ray.
2. ``_locate``: where Tune's state, the Optuna study and the leaderboard live; the
   leaderboard is checked writable before any trial spends compute.
3. ``_make_trainable``: ``trial.run_trial`` with its ``TrialSetup`` and resources (a
   ``RungStore`` when trials run TorchTrainers and must stop themselves). ``_check_resume``
   refuses an existing experiment without ``--resume``; ``_prepare_tune`` records the study.
4. ``tuner.restore_tuner`` (``--resume``) or ``tuner.new_tuner``: ``OptunaSearch`` samples each trial
   define-by-run, multi-objective (``[metric, "gflops"]``, modes ``["max", "min"]``), with
   TPE / NSGA-II / random by name. The study lives where ``--study-storage`` says
   (``study``: SQLite beside Tune's state by default, PostgreSQL, a journal file), recorded
   with the experiment so a fresh driver's ``--resume`` finds it. With a ``flops_budget`` the define-by-run function
   counts the candidate's GFLOPs (meta device, no arithmetic) and sets it as the trial's
   constraint (``Trial.set_constraint``). Before restoring,
   ``resume.reconcile_searcher_state`` repairs the saved searcher of a driver killed between
   Tune's two state files (else the resumed search waits forever on a trial that had finished).
5. ``_finish``: rows the ``rows.LeaderboardCallback`` could not write are written from the
   trials' final state; the experiment's rows and their Pareto set are returned.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ray import tune

from geodistill.errors import ConfigError
from geodistill.eval.names import OBJECTIVE_METRICS
from geodistill.leaderboard.pareto import pareto_rows
from geodistill.platform.search.rows import LeaderboardCallback
from geodistill.platform.search.space import (
    SearchSpace,
    first_assignment,
    load_space,
    trial_config,
    uses_ray_train,
)
from geodistill.platform.search.trial import TrialSetup, run_trial, trial_placement
from geodistill.platform.search.tuner import (
    DEFAULT_SAMPLER,
    SAMPLERS,
    SearchPaths,
    asha_scheduler,
    new_tuner,
    restore_tuner,
)

TERMINAL = ("TERMINATED", "ERROR")
STUDY_DIR_ENV = "GEODISTILL_OPTUNA_DIR"  # where SQLite studies go when the storage is a URI


# ---------------------------------------------------------------- the search


@dataclasses.dataclass
class SearchResult:
    experiment: str
    experiment_path: str
    study_url: str
    leaderboard_root: str
    rows: Any  # polars.DataFrame: this experiment's rows (deduplicated)
    pareto: Any  # polars.DataFrame: the Pareto-optimal rows among status "ok"
    trials: int
    interrupted: bool
    written: list[str]


def resolve_storage(storage: str | None) -> tuple[str, bool]:
    """(storage path or URI, is_local) with a local path made absolute."""
    if storage is None:
        storage = "runs/search"
    if "://" in storage and not storage.startswith("file://"):
        return storage, False
    return str(Path(storage.removeprefix("file://")).expanduser().absolute()), True


def study_url(experiment: str, storage_root: str, local: bool) -> str:
    """SQLite URL of the experiment's Optuna study when no ``--study-storage`` is given (beside
    Tune's state when storage is local, else under ``$GEODISTILL_OPTUNA_DIR``)."""
    from geodistill.platform.search.study_storage import default_url

    return default_url(experiment, storage_root, local, study_dir=os.environ.get(STUDY_DIR_ENV))


def run_search(
    space: str | Path | SearchSpace,
    *,
    experiment: str,
    num_samples: int = 4,
    sampler: str = DEFAULT_SAMPLER,
    metric: str | None = None,
    overrides: Sequence[str] = (),
    max_concurrent: int = 2,
    time_budget_s: float | None = None,
    storage: str | None = None,
    study_storage: str | None = None,
    leaderboard: str | None = None,
    address: str | None = None,
    teacher: str | None = None,
    resume: bool = False,
    early_stopping: bool = True,
    grace_period: int = 1,
    reduction_factor: float = 2,
    cpus_per_trial: float = 1,
    gpus_per_trial: float | None = None,
    seed: int | None = 0,
    max_failures: int = 0,
    objective: Callable[..., Any] | None = None,
    callbacks: Sequence[Any] = (),
    verbose: int = 1,
    loggers: str | Sequence[str] | None = None,
    dashboard: bool = False,
) -> SearchResult:
    """Run (or ``resume``) a multi-objective search; return its leaderboard rows and Pareto set.

    ``overrides`` are Hydra overrides of the base run config (``train.epochs=1``); the space's
    ``fixed`` and the sampled parameters go on top. ``teacher`` sets
    ``distill.teacher_checkpoint``. ``objective`` replaces ``eval.fit_evaluated`` in single-worker
    trials (benchmarks use trivial objectives to measure the platform's own overhead).

    ``verbose``: 0 prints nothing; 1 (the CLI's default) shows the live trial table
    (``live.LiveTable``) while each trial's output goes to files in its folder; 2 streams the
    trials' output and Tune's own status as before. ``loggers`` (``"tensorboard,mlflow"``;
    default: the base config's ``logger``) adds Tune's logger callbacks (``tracking.py``).
    ``dashboard`` starts the Ray dashboard on 127.0.0.1 (a local head only) and prints its URL.
    """
    _check_arguments(
        experiment, num_samples, max_concurrent, time_budget_s, sampler, gpus_per_trial, max_failures
    )
    space, base = _prepare_space(space, overrides=overrides, teacher=teacher, metric=metric)
    where, base = _locate(
        experiment,
        storage=storage,
        study_storage=study_storage,
        resume=resume,
        leaderboard=leaderboard,
        base=base,
    )

    _start_ray(address, dashboard=dashboard, verbose=verbose)

    ray_train = uses_ray_train(space, base)
    setup = TrialSetup(
        space=space,
        base=base,
        experiment=experiment,
        metric=space.metric,
        storage_path=where.storage_root,
        rung_store=_rung_store(experiment, where) if early_stopping and ray_train else None,
        grace_period=grace_period,
        reduction_factor=reduction_factor,
        objective=objective,
        gpus_per_trial=gpus_per_trial,
    )
    trainable = _make_trainable(setup, cpus=cpus_per_trial)
    restore = _check_resume(experiment, where, resume=resume, verbose=verbose)
    _prepare_tune(experiment, where)

    callback = LeaderboardCallback(where.leaderboard, experiment, space, base)
    shown = _console_callbacks(space, base, where, experiment, loggers, num_samples, time_budget_s, verbose)
    started = time.monotonic()
    if restore:
        tuner, callback = restore_tuner(where, experiment, space, trainable, callback, verbose=verbose)
    else:
        tuner = new_tuner(
            trainable,
            where,
            experiment,
            space,
            base,
            callbacks=[callback, *shown, *callbacks],
            sampler=sampler,
            seed=seed,
            num_samples=num_samples,
            max_concurrent=max_concurrent,
            time_budget_s=time_budget_s,
            scheduler=asha_scheduler(space, base, grace_period, reduction_factor)
            if early_stopping and not ray_train
            else None,
            verbose=verbose,
            max_failures=max_failures,
        )
    tuner.fit()
    out_of_time = time_budget_s is not None and time.monotonic() - started >= time_budget_s
    return _finish(experiment, where, space, callback, num_samples=num_samples, out_of_time=out_of_time)


# ---------------------------------------------------------------- the steps of run_search


def _start_ray(address: str | None, *, dashboard: bool, verbose: int) -> None:
    """Start or join Ray; trials' output reaches this console only with ``verbose >= 2``."""
    from geodistill.platform.runtime.ray_local import dashboard_url, init_ray

    # Inside `ray job submit` the job's cluster is in RAY_ADDRESS: resolve_address joins it.
    init_ray(
        address,
        include_dashboard=dashboard,
        log_to_driver=verbose >= 2,
    )
    if dashboard and verbose:
        url = dashboard_url()
        print(f"Ray dashboard: {url}" if url else "Ray dashboard: not running on this cluster", flush=True)


def _console_callbacks(
    space: SearchSpace,
    base: dict[str, Any],
    where: SearchPaths,
    experiment: str,
    loggers: str | Sequence[str] | None,
    num_samples: int,
    time_budget_s: float | None,
    verbose: int,
) -> list[Any]:
    """The trackers' callbacks (``tracking.py``) and, at ``verbose == 1``, the live table (``live.py``)."""
    from geodistill.platform.tracking import parse_loggers

    chosen = parse_loggers(base.get("logger") if loggers is None else loggers)
    out: list[Any] = []
    if chosen:
        from geodistill.platform.search.tracking import tune_callbacks

        out += tune_callbacks(
            chosen,
            experiment=experiment,
            experiment_path=where.experiment_path,
            local=where.local,
            space=space,
            base=base,
        )
    if verbose == 1:
        from geodistill.platform.search.live import LiveTable

        out.append(LiveTable(metric=space.metric, num_samples=num_samples, time_budget_s=time_budget_s))
    return out


def _check_arguments(
    experiment: str,
    num_samples: int,
    max_concurrent: int,
    time_budget_s: float | None,
    sampler: str,
    gpus_per_trial: float | None = None,
    max_failures: int = 0,
) -> None:
    """Refuse bad command-line values before anything is composed or started."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", experiment or ""):
        raise ConfigError(f"--experiment must be letters, digits, '_', '-', '.', '+'; got {experiment!r}")
    if num_samples < 1 or max_concurrent < 1:
        raise ConfigError("--num-samples and --max-concurrent must be at least 1")
    if time_budget_s is not None and time_budget_s <= 0:
        raise ConfigError(f"--time-budget must be > 0 seconds; got {time_budget_s}")
    if max_failures < -1:
        raise ConfigError(f"--max-failures must be >= -1 (-1: retry forever); got {max_failures}")
    if sampler not in SAMPLERS:
        raise ConfigError(f"--sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
    from geodistill.platform.runtime.gpus import check_gpus_per_trial

    check_gpus_per_trial(gpus_per_trial)


def _prepare_space(
    space: str | Path | SearchSpace,
    *,
    overrides: Sequence[str],
    teacher: str | None,
    metric: str | None,
) -> tuple[SearchSpace, dict[str, Any]]:
    """The validated space and the base run config (as a dict), the teacher made absolute."""
    from geodistill.platform.compose import compose_run_config

    base_cfg = compose_run_config(list(overrides))
    if teacher is not None:
        base_cfg.distill.teacher_checkpoint = str(teacher)
    base = base_cfg.to_dict()
    space = space if isinstance(space, SearchSpace) else load_space(space, base=base)
    if metric is not None:
        if metric not in OBJECTIVE_METRICS:
            raise ConfigError(f"--metric must be one of {', '.join(OBJECTIVE_METRICS)}; got {metric!r}")
        space = dataclasses.replace(space, metric=metric)
    stage_cfg = trial_config(space, first_assignment(space), base=base)
    if stage_cfg.stage == "student" and not stage_cfg.distill.teacher_checkpoint:
        raise ConfigError(
            f"search space {space.name} trains students: give --teacher CHECKPOINT "
            "(or fixed: distill.teacher_checkpoint in the space)"
        )
    teacher_path = stage_cfg.distill.teacher_checkpoint
    if teacher_path:
        from geodistill.platform.runtime.remote import is_uri, locate_checkpoint

        if is_uri(teacher_path):  # reachable and complete now; each node fetches it once (remote.py)
            path = locate_checkpoint(teacher_path)[0]
        else:
            path = Path(teacher_path).expanduser().absolute()
            if not path.exists():
                raise ConfigError(f"teacher checkpoint not found: {path}")
        base = _set_teacher(base, str(path))
        if "distill.teacher_checkpoint" in space.fixed:
            space = dataclasses.replace(space, fixed={**space.fixed, "distill.teacher_checkpoint": str(path)})
    return space, base


def _set_teacher(base: dict[str, Any], path: str) -> dict[str, Any]:
    out = json.loads(json.dumps(base))
    out["distill"]["teacher_checkpoint"] = path
    return out


def _locate(
    experiment: str,
    *,
    storage: str | None,
    study_storage: str | None,
    resume: bool,
    leaderboard: str | None,
    base: dict[str, Any],
) -> tuple[SearchPaths, dict[str, Any]]:
    """Where the experiment lives; ``base`` with its output folder under it when local.

    The leaderboard is checked writable and the study's storage connected here, before Ray
    starts: an unreachable store costs a second, not a trial.
    """
    from geodistill.leaderboard import Leaderboard, default_root
    from geodistill.platform.runtime.remote import join_uri
    from geodistill.platform.search import study_storage as stores

    storage_root, local = resolve_storage(storage)

    experiment_path = join_uri(storage_root, experiment)
    if local and not Path(base["output_dir"]).is_absolute():
        # Trials share the synthetic data and the teacher cache under the experiment folder
        # (an absolute output_dir is kept: several searches can share one cache).
        base = {**base, "output_dir": str(Path(experiment_path) / "work")}
    lb_root = str(leaderboard or default_root())
    if "://" not in lb_root:
        lb_root = str(Path(lb_root).expanduser().absolute())
    Leaderboard(lb_root).check_writable(experiment)  # before any trial spends compute
    url = stores.resolve(
        study_storage,
        experiment=experiment,
        experiment_path=experiment_path,
        storage_root=storage_root,
        local=local,
        resume=resume,
        study_dir=os.environ.get(STUDY_DIR_ENV),
    )
    stores.open_storage(url)  # reachable now, or one line and exit 2
    where = SearchPaths(
        storage_root=storage_root,
        local=local,
        experiment_path=experiment_path,
        study_url=url,
        leaderboard=lb_root,
    )
    return where, base


def _check_resume(experiment: str, where: SearchPaths, *, resume: bool, verbose: int) -> bool:
    """True when Tune's state is there to restore; an existing experiment without ``--resume`` is refused."""
    can_restore = tune.Tuner.can_restore(where.experiment_path)
    if can_restore and not resume:
        raise ConfigError(
            f"experiment {experiment!r} already exists at {where.experiment_path}; pass --resume to "
            "continue it or choose another --experiment"
        )
    if resume and not can_restore and verbose:
        print(f"nothing to resume at {where.experiment_path}: starting experiment {experiment!r}")
    return can_restore


def _prepare_tune(experiment: str, where: SearchPaths) -> None:
    """Record the study's URL with the experiment (``--resume`` finds it) and set Tune's switches."""
    from geodistill.platform.search.study_storage import record_url

    record_url(where.experiment_path, where.study_url, study_name=experiment)
    # Epochs between evaluations report no precision metric; ASHA skips those results.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    # Every epoch checkpoints (num_to_keep=1): Tune's "snapshotting too often" warning is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def _rung_store(experiment: str, where: SearchPaths) -> Any:
    """Where Ray Train trials share their rung results (a file when local, else an actor)."""
    from geodistill.platform.search.rung import FileRungStore, RayRungStore

    if where.local:
        return FileRungStore(Path(where.experiment_path) / "rungs")
    return RayRungStore(f"rungs-{experiment}").create()


def _make_trainable(setup: TrialSetup, *, cpus: float) -> Any:
    """``run_trial`` bound to its setup, with what each trial reserves (``gpus.trial_resources``:
    CPUs and GPUs of a single-worker trial; a token for a multi-worker one, whose workers reserve)."""
    placement = functools.partial(
        trial_placement, space=setup.space, base=setup.base, cpus=cpus, gpus_per_trial=setup.gpus_per_trial
    )
    return tune.with_resources(tune.with_parameters(run_trial, setup=setup), placement)


def _finish(
    experiment: str,
    where: SearchPaths,
    space: SearchSpace,
    callback: LeaderboardCallback,
    *,
    num_samples: int,
    out_of_time: bool,
) -> SearchResult:
    """Write the rows still missing, then read the experiment's rows and Pareto set back."""
    from geodistill.leaderboard import Leaderboard
    from geodistill.platform.search.study_storage import public_url

    trials = list(callback.trials)
    # Rows that the callback could not write (Ctrl-C between completion and the write, or a
    # resumed run whose callback state was lost) are written now from the trials' final state.
    for trial in trials:
        if trial.status in TERMINAL:
            callback.write(trial)
    done = sum(t.status in TERMINAL for t in trials)
    interrupted = done < num_samples and not out_of_time  # Ctrl-C / SIGINT: Tune saved its state
    frame = Leaderboard(where.leaderboard).read(experiment)
    return SearchResult(
        experiment=experiment,
        experiment_path=where.experiment_path,
        study_url=public_url(where.study_url),
        leaderboard_root=where.leaderboard,
        rows=frame,
        pareto=pareto_rows(frame, metric=space.metric),
        trials=len(trials),
        interrupted=interrupted,
        written=list(callback.written),
    )


def format_pareto(pareto: Any, *, metric: str = "d2s_recall1") -> str:
    """The Pareto set as a fixed-width table (GFLOPs ascending)."""
    header = (
        f"{'trial':<14} {'backbone':<16} {'img':>4} {'views':>5} {'GFLOPs':>9} {metric:>12} {'status':<8}"
    )
    lines = [header, "-" * len(header)]
    for row in pareto.iter_rows(named=True):
        lines.append(
            f"{row['trial_id']:<14} {row['backbone'] or '-':<16} {row['img_size'] or 0:>4} "
            f"{row['views'] or 0:>5} {row['gflops']:>9.4f} {row[metric]:>12.2f} {row['status']:<8}"
        )
    return "\n".join(lines)

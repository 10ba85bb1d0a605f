"""The search driver: Ray Tune + Optuna over a space, precision up, GFLOPs down.

``run_search(space, base, options)`` reads top to bottom as its steps: ``options.check()`` and
``SearchPlan.build`` check the request, the space (loaded once) and the teacher before Ray
starts; ``_locate`` finds Tune's state, the study and the leaderboard and checks them before any
trial spends compute; ``_make_trainable`` wraps ``trial.run_trial`` with its resources;
``tuner.restore_tuner`` (``--resume``) or ``tuner.new_tuner`` samples each trial define-by-run,
multi-objective; ``_finish`` writes the rows the callback could not and returns the experiment's
rows and the Pareto set of its own trials.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from pathlib import Path
from typing import Any

import polars as pl
from ray import tune

from geodistill.errors import ConfigError
from geodistill.leaderboard.pareto import pareto_rows
from geodistill.platform.search.experiment_lock import hold_experiment, released_after
from geodistill.platform.search.options import SearchOptions
from geodistill.platform.search.plan import SearchPlan
from geodistill.platform.search.rows import LeaderboardCallback
from geodistill.platform.search.space import SearchSpace, load_space
from geodistill.platform.search.trial import TrialSetup, run_trial, trial_placement
from geodistill.platform.search.tuner import SearchPaths, asha_scheduler, new_tuner, restore_tuner
from geodistill.train.config import RunConfig

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


@released_after
def run_search(space: str | Path | SearchSpace, base: RunConfig, options: SearchOptions) -> SearchResult:
    """Run (or ``options.resume``) a multi-objective search; return its leaderboard rows and Pareto set.

    ``space`` is a loaded space (or a name or path, loaded once here against ``base``); ``base``
    the run config every trial starts from (the space's ``fixed`` and the sampled parameters go
    on top); ``options`` how the search runs (``options.SearchOptions``: defaults and help there).
    """
    options = options.check()
    if not isinstance(space, SearchSpace):
        space = load_space(space, base=base.to_dict())
    options = options.named(space.name)
    experiment = options.experiment
    plan = SearchPlan.build(
        space, base, metric=options.metric, teacher=options.teacher, check_teacher=not options.replay
    )
    if options.replay:  # every trial in the table, or one line before anything runs
        options = _replayed(plan, options)
    where, plan = _locate(experiment, options, plan)

    if where.local:  # a second driver on this experiment stops here, before Ray or Tune start
        hold_experiment(experiment, where.experiment_path)
    _start_ray(options.address, dashboard=options.dashboard, verbose=options.verbose)

    setup = TrialSetup(
        plan=plan,
        options=options.for_trials(),
        experiment=experiment,
        storage_path=where.storage_root,
        rung_store=_rung_store(experiment, where) if options.early_stopping and plan.ray_train else None,
    )
    trainable = _make_trainable(setup)
    restore = _check_resume(experiment, where, resume=options.resume, verbose=options.verbose)
    _prepare_tune(experiment, where)

    callback = LeaderboardCallback(where.leaderboard, experiment, plan, storage=where.storage_root)
    started = time.monotonic()
    if restore:
        tuner = restore_tuner(where, experiment, plan, trainable, callback, verbose=options.verbose)
    else:
        early = options.early_stopping and not plan.ray_train
        tuner = new_tuner(
            trainable,
            where,
            experiment,
            plan,
            options,
            callbacks=[callback, *_console_callbacks(plan, where, experiment, options), *options.callbacks],
            scheduler=asha_scheduler(plan, options) if early else None,
        )
    if options.verbose and "tensorboard" in _chosen_loggers(plan, options):
        print(f"TensorBoard: tensorboard --logdir {where.experiment_path}", flush=True)
    tuner.fit()
    budget = options.time_budget_s
    out_of_time = budget is not None and time.monotonic() - started >= budget
    return _finish(
        experiment,
        where,
        plan,
        callback,
        num_samples=options.num_samples,
        out_of_time=out_of_time,
        keep_checkpoints=options.keep_checkpoints,
    )


# ---------------------------------------------------------------- the steps of run_search


def _replayed(plan: SearchPlan, options: SearchOptions) -> SearchOptions:
    """``options`` whose trials answer from ``options.replay`` (checked against the space first)."""
    from geodistill.platform.search.replay import ReplayFit, config_values, load_table

    path = str(Path(options.replay).expanduser().absolute())
    table = load_table(path)
    table.check_space(plan.space, plan.metric, config_values(plan.first_config(), table.knobs))
    return dataclasses.replace(options, replay=path, objective=ReplayFit(path, options.replay_speed))


def _start_ray(address: str | None, *, dashboard: bool, verbose: int) -> None:
    """Start or join Ray; trials' output reaches this console only with ``verbose >= 2``."""
    from geodistill.platform.runtime.ray_local import dashboard_url, init_ray

    # Inside `ray job submit` the job's cluster is in RAY_ADDRESS: resolve_address joins it.
    init_ray(address, include_dashboard=dashboard, log_to_driver=verbose >= 2)
    if dashboard and verbose:
        url = dashboard_url()
        print(f"Ray dashboard: {url}" if url else "Ray dashboard: not running on this cluster", flush=True)


def _chosen_loggers(plan: SearchPlan, options: SearchOptions) -> tuple[str, ...]:
    """The trackers of ``--logger`` (default: the base config's ``logger=``)."""
    from geodistill.platform.tracking import parse_loggers

    return parse_loggers(plan.base.logger if options.loggers is None else options.loggers)


def _console_callbacks(
    plan: SearchPlan, where: SearchPaths, experiment: str, options: SearchOptions
) -> list[Any]:
    """The trackers' callbacks (``platform.tracking``) and, at ``verbose == 1``, the live table (``live.py``)."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from geodistill.platform.search.disk import DropFinishedState

    chosen = _chosen_loggers(plan, options)
    # Tune's result.json / progress.csv per trial; TensorBoard events only with --logger tensorboard
    # (_prepare_tune turns Tune's automatic loggers off: they wrote event files under --logger none);
    # an ended trial's checkpoint loses its train_state.pt (disk.py).
    out: list[Any] = [CSVLoggerCallback(), JsonLoggerCallback(), DropFinishedState()]
    if chosen:
        from geodistill.platform.tracking.callbacks import tune_callbacks

        out += tune_callbacks(
            chosen, experiment=experiment, experiment_path=where.experiment_path, local=where.local, plan=plan
        )
    if options.verbose == 1:
        from geodistill.platform.search.live import LiveTable

        out.append(
            LiveTable(
                metric=plan.metric, num_samples=options.num_samples, time_budget_s=options.time_budget_s
            )
        )
    return out


def _locate(experiment: str, options: SearchOptions, plan: SearchPlan) -> tuple[SearchPaths, SearchPlan]:
    """Where the experiment lives; ``plan`` with its output folder under it when local.

    The leaderboard is checked writable and the study's storage connected here, before Ray
    starts: an unreachable store costs a second, not a trial.
    """
    from geodistill.leaderboard import Leaderboard, default_root
    from geodistill.platform.runtime.remote import join_uri
    from geodistill.platform.search import study_storage as stores

    storage_root, local = resolve_storage(options.storage)

    experiment_path = join_uri(storage_root, experiment)
    if local and not Path(plan.base.output_dir).is_absolute():
        # Trials share the synthetic data and the teacher cache under the experiment folder
        # (an absolute output_dir is kept: several searches can share one cache).
        plan = plan.with_output_dir(str(Path(experiment_path) / "work"))
    lb_root = str(options.leaderboard or default_root())
    if "://" not in lb_root:
        lb_root = str(Path(lb_root).expanduser().absolute())
    Leaderboard(lb_root).check_writable(experiment)  # before any trial spends compute
    url = stores.resolve(
        options.study_storage,
        experiment=experiment,
        experiment_path=experiment_path,
        storage_root=storage_root,
        local=local,
        resume=options.resume,
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
    return where, plan


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
    # No automatic TensorBoard logger (its "To visualize your results" line pointed into Ray's
    # session folder, and --logger none still wrote event files); _console_callbacks adds CSV/JSON.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    # Every epoch checkpoints (num_to_keep=1): Tune's "snapshotting too often" warning is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def _rung_store(experiment: str, where: SearchPaths) -> Any:
    """Where Ray Train trials share their rung results (a file when local, else an actor)."""
    from geodistill.platform.search.rung import FileRungStore, RayRungStore

    if where.local:
        return FileRungStore(Path(where.experiment_path) / "rungs")
    return RayRungStore(f"rungs-{experiment}").create()


def _make_trainable(setup: TrialSetup) -> Any:
    """``run_trial`` bound to its setup, with what each trial reserves (``gpus.trial_resources``:
    CPUs and GPUs of a single-worker trial; a token for a multi-worker one, whose workers reserve)."""
    placement = functools.partial(
        trial_placement,
        plan=setup.plan,
        cpus=setup.options.cpus_per_trial,
        gpus_per_trial=setup.options.gpus_per_trial,
    )
    return tune.with_resources(tune.with_parameters(run_trial, setup=setup), placement)


def _finish(
    experiment: str,
    where: SearchPaths,
    plan: SearchPlan,
    callback: LeaderboardCallback,
    *,
    num_samples: int,
    out_of_time: bool,
    keep_checkpoints: str = "front",
) -> SearchResult:
    """Write the rows still missing, settle the ended trials' checkpoints (``disk.settle_ended``),
    read the experiment's rows and Pareto set back, and (``front``) remove ended trials'
    checkpoints off the front (``disk.prune_off_front``)."""
    from geodistill.leaderboard import Leaderboard
    from geodistill.platform.search.disk import prune_off_front, settle_ended
    from geodistill.platform.search.study_storage import public_url

    trials = list(callback.trials)
    # Ended for good, as Tune saved them: not a trial the interrupt cut (Tune ends it without
    # telling the callbacks), which runs again on resume and writes its row when it ends.
    ended = callback.ended_trials()
    # Rows that the callback could not write (Ctrl-C between completion and the write, a trial
    # the time budget stopped, or a resumed run whose callback state was lost) are written now.
    for trial in ended:
        callback.write(trial)
    interrupted = len(ended) < num_samples and not out_of_time  # Ctrl-C / SIGINT: Tune saved its state
    settle_ended(ended)  # no training state, nor the unregistered checkpoint a budget stop leaves
    frame = Leaderboard(where.leaderboard).read(experiment)
    # The front of this search's own trials: a teacher's or a baseline's row filed under the
    # same experiment (the demo writes its teacher there) is not a candidate.
    ids = [t.trial_id for t in trials]
    own = (
        frame.filter(pl.col("trial_id").is_in(ids) & (pl.col("stage") == plan.stage))
        if frame.height
        else frame
    )
    front = pareto_rows(own, metric=plan.metric)
    if keep_checkpoints == "front" and own.height:
        # Ended trials only: a trial of an interrupted search resumes from its checkpoint.
        prune_off_front(ended, own, front, where.leaderboard)
        frame = Leaderboard(where.leaderboard).read(experiment)  # the pruned rows say no checkpoint
    return SearchResult(
        experiment=experiment,
        experiment_path=where.experiment_path,
        study_url=public_url(where.study_url),
        leaderboard_root=where.leaderboard,
        rows=frame,
        pareto=front,
        trials=len(trials),
        interrupted=interrupted,
        written=list(callback.written),
    )

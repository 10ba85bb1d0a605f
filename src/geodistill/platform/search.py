"""Ray Tune + Optuna search over a search space: precision up, GFLOPs down, one leaderboard row per trial.

Shape of a search (``run_search``):

- The space is loaded and validated first (``spaces.load_space``); a bad space never starts Ray.
- ``OptunaSearch`` samples each trial define-by-run from the space, multi-objective
  (``[metric, "gflops"]``, modes ``["max", "min"]``), with TPE / NSGA-II / random by name. The
  study lives in SQLite (``optuna.storages.RDBStorage``) so ``optuna-dashboard`` can open it.
  With a ``flops_budget`` the define-by-run function counts the candidate's GFLOPs (meta
  device, no arithmetic) and sets it as the trial's constraint (``Trial.set_constraint``), and the trial itself refuses to train
  an over-budget model (it reports at once, status "stopped").
- GFLOPs per drone query are counted before training and reported with every result.
- Early stopping without hangs (ray issue #54305: a scheduler stopping a trial that hosts a
  ``TorchTrainer`` leaks its workers). Single-worker trials (``scaling.num_workers <= 1``) run
  ``fit`` inside the trial with a ``TuneTrialContext``; ASHA stops them like any function
  trainable. Multi-worker trials run ``run_training`` (a TorchTrainer) with a ``RungRule`` as
  ``should_stop``: they stop themselves inside the loop, and no scheduler is installed.
- Leaderboard rows are written by a Tune ``Callback`` in the driver (``on_trial_complete`` /
  ``on_trial_error``), so a trial whose process crashed or was stopped still gets its row
  (failed rows carry the error). A pass after the run writes any row still missing, and row
  keys already present are skipped: ``--resume`` neither re-runs finished trials nor
  duplicates their rows. Before restoring, ``resume.reconcile_searcher_state`` repairs the
  saved searcher of a driver killed between Tune's two state files (else the resumed search
  waits forever on a trial that had finished).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ray import tune

from geodistill.errors import ConfigError
from geodistill.platform.resume import reconcile_searcher_state
from geodistill.platform.spaces import SearchSpace, load_space, suggest, trial_config
from geodistill.train.config import RunConfig
from geodistill.train.context import default_device

SAMPLERS = ("tpe", "nsga2", "random")
TERMINAL = ("TERMINATED", "ERROR")
STUDY_DIR_ENV = "GEODISTILL_OPTUNA_DIR"  # where SQLite studies go when the storage is a URI


# ---------------------------------------------------------------- cost and constraints


def trial_cost(cfg: RunConfig) -> dict[str, Any]:
    """GFLOPs/GMACs/params of one drone query of ``cfg``'s student, counted on the meta device."""
    model = dataclasses.replace(cfg.model, weights=None)
    return dict(_cost(json.dumps(dataclasses.asdict(model), sort_keys=True), cfg.data.views))


@functools.lru_cache(maxsize=256)
def _cost(model_json: str, views: int) -> tuple[tuple[str, Any], ...]:
    import torch

    from geodistill.models import GeoModel, ModelConfig, profile

    model_cfg = ModelConfig(**json.loads(model_json))
    with torch.device("meta"):
        model = GeoModel(model_cfg, num_classes=1)
    cost = profile(model, img_size=model_cfg.img_size, views=views, measure_latency=False)
    return (
        ("gflops", cost.gflops),
        ("gmacs", cost.gmacs),
        ("params_m", cost.params_m),
        ("flop_counter", cost.counter),
    )


def define_by_run(trial: Any, *, space: SearchSpace, base: Mapping[str, Any]) -> dict[str, Any]:
    """What ``OptunaSearch`` calls per trial: sample the space; cost it when there is a budget."""
    params = suggest(trial, space)
    if space.flops_budget is not None:
        gflops = trial_cost(trial_config(space, params, base=base))["gflops"]
        trial.set_user_attr("gflops", gflops)
        # Feasible when <= 0: TPE and NSGA-II prefer feasible trials (Optuna 5 constraint API).
        trial.set_constraint("gflops_over_budget", gflops - space.flops_budget)
    return params


def make_sampler(name: str, *, seed: int | None) -> Any:
    """An Optuna sampler by name, with its Optuna defaults (constraints come from the trials)."""
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"--sampler must be one of {', '.join(SAMPLERS)}; got {name!r}")


# ---------------------------------------------------------------- inside a trial


class TuneTrialContext:
    """``TrainContext`` for a single-worker trial: ``fit`` reports straight to Tune.

    Every report carries the trial's cost (and the planned epochs), so the searcher and the
    leaderboard callback read GFLOPs from any result. ``should_stop`` is the optional rung
    rule; with ASHA installed the scheduler stops the trial instead.
    """

    def __init__(self, extra: Mapping[str, Any], *, should_stop: Callable | None = None) -> None:
        self.rank, self.world_size = 0, 1
        self.device = default_device()
        self.extra = dict(extra)
        self._should_stop = should_stop
        self._restored: tempfile.TemporaryDirectory | None = None

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None = None) -> None:
        checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        tune.report({**metrics, **self.extra}, checkpoint=checkpoint)

    def latest_checkpoint(self) -> Path | None:
        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        self._restored = tempfile.TemporaryDirectory(prefix="geodistill-resume-")
        return Path(checkpoint.to_directory(self._restored.name))

    def should_stop(self, epoch: int, metrics: dict[str, float]) -> bool:
        return bool(self._should_stop and self._should_stop(epoch, metrics))


@dataclasses.dataclass
class TrialSetup:
    """What every trial needs besides its sampled parameters (shipped once via the object store)."""

    space: SearchSpace
    base: dict[str, Any]
    experiment: str
    metric: str
    storage_path: str
    rung_store: Any | None = None  # a RungStore for multi-worker trials (None: no early stopping)
    grace_period: int = 1
    reduction_factor: float = 2
    objective: Callable[..., Any] | None = None  # fit(cfg, *, context) stand-in; default train.loop.fit


def run_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """The Tune function trainable: compose the trial's RunConfig, cost it, train it, report."""
    # Every epoch's checkpoint is on the leaderboard row; Ray's per-save INFO line only buries
    # the epoch lines the driver forwards.
    for name in ("ray.train._internal.storage", "ray.train.v2._internal.execution.storage"):
        logging.getLogger(name).setLevel(logging.WARNING)
    trial_id = tune.get_context().get_trial_id()
    cfg = trial_config(setup.space, config, base=setup.base)
    cfg.experiment, cfg.run_name = setup.experiment, trial_id
    extra = {**trial_cost(cfg), "epochs_planned": cfg.train.epochs}
    budget = setup.space.flops_budget
    if budget is not None and extra["gflops"] > budget:
        # Refused before any training: reported once so Optuna gets both objectives.
        tune.report({setup.metric: 0.0, "epoch": 0, "over_budget": 1, **extra})
        return
    rule = None
    if setup.rung_store is not None:
        from geodistill.platform.rung import RungRule

        rule = RungRule(
            setup.rung_store,
            trial_id=trial_id,
            metric=setup.metric,
            grace_period=setup.grace_period,
            reduction_factor=setup.reduction_factor,
            max_t=cfg.train.epochs,
        )
    if cfg.scaling.num_workers <= 1:
        cfg.scaling.num_workers = 0  # fit runs right here, in the trial's own process
        context = TuneTrialContext(extra, should_stop=rule)
        objective = setup.objective
        if objective is None:
            from geodistill.train.loop import fit as objective
        objective(cfg, context=context)
        return
    # Multi-worker: a TorchTrainer inside the trial, stopped only by its own rung rule.
    from geodistill.platform.train_driver import run_training

    trainers = f"{setup.storage_path.rstrip('/')}/{setup.experiment}/trainers"
    result = run_training(cfg, storage_path=trainers, should_stop=rule, fit_fn=setup.objective)
    tune.report(
        {
            **result.metrics,
            **extra,
            "stopped_early": int(result.stopped_early),
            "checkpoint_uri": str(result.checkpoint) if result.checkpoint else None,
        }
    )


# ---------------------------------------------------------------- leaderboard rows


def one_line_error(err: BaseException | None) -> str:
    """``Type: message`` of the root cause (Ray wraps trial errors), first line only."""
    if err is None:
        return "trial failed"
    cause = err
    for _ in range(5):
        inner = getattr(cause, "cause", None) or cause.__cause__
        if inner is None or inner is cause:
            break
        cause = inner
    text = str(cause).strip()
    # RayTaskError text starts with a header line; the original message is on the last line.
    lines = [line for line in text.splitlines() if line.strip()]
    message = lines[-1].strip() if lines else ""
    name = type(cause).__name__
    if re.match(rf"^{re.escape(name)}\b", message) or re.match(r"^\w+(Error|Exception)\b", message):
        return message
    return f"{name}: {message}" if message else name


def trial_error(trial: Any) -> str:
    """One line for a failed trial, read from the error files Tune just wrote on the driver."""
    from ray import cloudpickle

    for path in (getattr(trial, "pickled_error_file", None),):
        if path and Path(path).is_file():
            try:
                return one_line_error(cloudpickle.loads(Path(path).read_bytes()))
            except Exception:  # an unpicklable error: fall back to the text file
                pass
    text_path = getattr(trial, "error_file", None)
    text = Path(text_path).read_text() if text_path and Path(text_path).is_file() else None
    if text is None:
        try:
            error = trial.get_pickled_error()
            if error is not None:
                return one_line_error(error)
            text = trial.get_error()
        except Exception:  # storage not reachable: still record the failure
            text = None
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return "trial failed (no error recorded)"
    return re.sub(r"^(?:\w+\.)+(\w+(?:Error|Exception))", r"\1", lines[-1])


def checkpoint_uri(checkpoint: Any) -> str | None:
    """A Ray ``Checkpoint`` as a URI (a plain path on the local file system)."""
    if checkpoint is None:
        return None
    fs = getattr(checkpoint, "filesystem", None)
    scheme = getattr(fs, "type_name", "local") if fs is not None else "local"
    return checkpoint.path if scheme == "local" else f"{scheme}://{checkpoint.path}"


def trial_row(
    *,
    experiment: str,
    trial_id: str,
    cfg: RunConfig,
    result: Mapping[str, Any],
    status: str,
    error: str | None = None,
    checkpoint: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """The leaderboard row of one trial (``leaderboard.make_row`` fields)."""
    from geodistill.leaderboard import METRIC_COLUMNS, make_row

    over_budget = bool(result.get("over_budget"))
    metrics = {} if over_budget else {k: result[k] for k in METRIC_COLUMNS if result.get(k) is not None}
    epochs = result.get("epoch")
    return make_row(
        row_key=f"{experiment}/{trial_id}/{cfg.stage}",
        run_id=run_id,
        trial_id=trial_id,
        experiment=experiment,
        stage=cfg.stage,
        status=status,
        error=error,
        dataset_name="synthetic" if cfg.data.root is None else Path(cfg.data.root).name,
        dataset_elevation=cfg.data.elevation,
        dataset_fps=cfg.data.fps,
        teacher=cfg.distill.teacher_checkpoint if cfg.stage == "student" else None,
        backbone=cfg.model.backbone,
        img_size=cfg.data.img_size,
        views=cfg.data.views,
        refiner=cfg.model.refiner,
        temperature=cfg.distill.temperature,
        w_task=cfg.distill.w_task,
        w_logit=cfg.distill.w_logit,
        w_feature=cfg.distill.w_feature,
        w_relation=cfg.distill.w_relation,
        lr=cfg.train.lr,
        epochs=None if epochs is None else int(epochs),
        **metrics,
        params_m=result.get("params_m"),
        gflops=result.get("gflops"),
        gmacs=result.get("gmacs"),
        flop_counter=result.get("flop_counter"),
        device=str(default_device()) if cfg.scaling.num_workers <= 1 else None,
        checkpoint_uri=checkpoint or result.get("checkpoint_uri"),
        config_json=cfg.to_dict(),
    )


def write_run_row(
    cfg: RunConfig,
    metrics: Mapping[str, Any],
    *,
    checkpoint: str | None,
    root: str | Path | None = None,
    stopped: bool = False,
) -> str:
    """Write the leaderboard row of one training run outside a search (trial id = run name).

    ``geodistill train`` and the demo's teacher use it, so their rows have a trial's shape and
    cost. Returns the row key.
    """
    from geodistill.leaderboard import Leaderboard, default_root

    row = trial_row(
        experiment=cfg.experiment,
        trial_id=cfg.run_name,
        cfg=cfg,
        result={**metrics, **trial_cost(cfg)},
        status="stopped" if stopped else "ok",
        checkpoint=checkpoint,
    )
    Leaderboard(root or default_root()).write([row])
    return row["row_key"]


def _status(result: Mapping[str, Any], cfg: RunConfig) -> tuple[str, str | None]:
    if result.get("over_budget"):
        return "stopped", f"over the flops budget ({result.get('gflops', float('nan')):.3f} GFLOPs)"
    epoch = result.get("epoch")
    if result.get("stopped_early") or epoch is None or int(epoch) < cfg.train.epochs:
        return "stopped", None
    return "ok", None


class LeaderboardCallback(tune.Callback):
    """Writes one leaderboard row per trial from the driver, whatever became of the trial."""

    def __init__(self, root: str, experiment: str, space: SearchSpace, base: dict[str, Any]) -> None:
        self.root, self.experiment, self.space, self.base = root, experiment, space, base
        self.present: set[str] | None = None
        self.trials: list[Any] = []
        self.written: list[str] = []

    def __getstate__(self) -> dict[str, Any]:  # saved with the experiment: keep it small
        return {**self.__dict__, "present": None, "trials": [], "written": []}

    def _keys(self) -> set[str]:
        if self.present is None:
            from geodistill.leaderboard import Leaderboard

            self.present = Leaderboard(self.root).keys(self.experiment)
        return self.present

    def setup(self, **info: Any) -> None:
        self._keys()

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        self.trials = trials

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.trials = trials
        self._safe_write(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.trials = trials
        self._safe_write(trial, failed=True)

    def _safe_write(self, trial: Any, *, failed: bool) -> None:
        # An exception here would end the whole search (Tune re-raises callback errors); the
        # pass after the run retries rows that could not be written and raises then.
        try:
            self.write(trial, failed=failed)
        except Exception as err:  # noqa: BLE001
            import logging

            logging.getLogger(__name__).warning(
                "leaderboard row for trial %s not written yet: %s", trial.trial_id, one_line_error(err)
            )

    def write(self, trial: Any, *, failed: bool | None = None) -> bool:
        """Write ``trial``'s row unless its key is present; True when written."""
        from geodistill.leaderboard import Leaderboard

        failed = trial.status == "ERROR" if failed is None else failed
        cfg = trial_config(self.space, trial.config, base=self.base)
        key = f"{self.experiment}/{trial.trial_id}/{cfg.stage}"
        if key in self._keys():
            return False
        result = dict(trial.last_result or {})
        if failed:
            status, error = "failed", trial_error(trial)
        else:
            status, error = _status(result, cfg)
        row = trial_row(
            experiment=self.experiment,
            trial_id=trial.trial_id,
            cfg=cfg,
            result=result,
            status=status,
            error=error,
            checkpoint=checkpoint_uri(trial.checkpoint),
            run_id=getattr(trial.storage, "trial_dir_name", None) if trial.storage else None,
        )
        Leaderboard(self.root).write([row])
        self.present.add(key)
        self.written.append(key)
        return True


def train_teacher_for(space: SearchSpace, base: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Train a small stage-1 teacher on the data the space's students see (for --smoke-test).

    Same data settings, backbone and embedding width as the students' fixed part, stage
    teacher, one epoch, in this process. Returns its last checkpoint directory (reused when present).
    """
    from geodistill.train.context import LocalContext, latest_checkpoint_in
    from geodistill.train.loop import fit

    run_dir = Path(out_dir)
    found = latest_checkpoint_in(run_dir / "checkpoints")
    if found is not None:
        return found
    student = trial_config(space, first_assignment(space), base=base).to_dict()
    student.update(stage="teacher", run_name="teacher")
    student["distill"]["teacher_checkpoint"] = None
    cfg = RunConfig.from_dict(student)
    cfg.scaling.num_workers, cfg.train.epochs = 0, 1
    fit(cfg, context=LocalContext(run_dir))
    found = latest_checkpoint_in(run_dir / "checkpoints")
    if found is None:
        raise RuntimeError(f"teacher training wrote no checkpoint under {run_dir}")
    return found


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
    """SQLite URL of the experiment's Optuna study (beside Tune's state when storage is local)."""
    if local:
        folder = Path(storage_root) / experiment
    else:
        folder = Path(os.environ.get(STUDY_DIR_ENV, Path.home() / "geodistill" / "optuna"))
    folder.mkdir(parents=True, exist_ok=True)
    name = "optuna.db" if local else f"{experiment}.db"
    return f"sqlite:///{folder / name}"


def run_search(
    space: str | Path | SearchSpace,
    *,
    experiment: str,
    num_samples: int = 4,
    sampler: str = "tpe",
    metric: str | None = None,
    overrides: Sequence[str] = (),
    max_concurrent: int = 2,
    time_budget_s: float | None = None,
    storage: str | None = None,
    leaderboard: str | None = None,
    address: str | None = None,
    teacher: str | None = None,
    resume: bool = False,
    early_stopping: bool = True,
    grace_period: int = 1,
    reduction_factor: float = 2,
    cpus_per_trial: float = 1,
    gpus_per_trial: float = 0,
    seed: int | None = 0,
    objective: Callable[..., Any] | None = None,
    callbacks: Sequence[Any] = (),
    verbose: int = 1,
) -> SearchResult:
    """Run (or ``resume``) a multi-objective search; return its leaderboard rows and Pareto set.

    ``overrides`` are Hydra overrides of the base run config (``train.epochs=1``); the space's
    ``fixed`` and the sampled parameters go on top. ``teacher`` sets
    ``distill.teacher_checkpoint``. ``objective`` replaces ``train.loop.fit`` in single-worker
    trials (benchmarks use trivial objectives to measure the platform's own overhead).
    """
    import optuna
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from geodistill.leaderboard import Leaderboard, default_root
    from geodistill.platform.config import compose_run_config

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", experiment or ""):
        raise ConfigError(f"--experiment must be letters, digits, '_', '-', '.', '+'; got {experiment!r}")
    if num_samples < 1 or max_concurrent < 1:
        raise ConfigError("--num-samples and --max-concurrent must be at least 1")
    if time_budget_s is not None and time_budget_s <= 0:
        raise ConfigError(f"--time-budget must be > 0 seconds; got {time_budget_s}")
    if sampler not in SAMPLERS:
        raise ConfigError(f"--sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")

    base_cfg = compose_run_config(list(overrides))
    if teacher is not None:
        base_cfg.distill.teacher_checkpoint = str(teacher)
    base = base_cfg.to_dict()
    space = space if isinstance(space, SearchSpace) else load_space(space, base=base)
    if metric is not None:
        from geodistill.platform.spaces import METRICS

        if metric not in METRICS:
            raise ConfigError(f"--metric must be one of {', '.join(METRICS)}; got {metric!r}")
        space = dataclasses.replace(space, metric=metric)
    stage_cfg = trial_config(space, first_assignment(space), base=base)
    if stage_cfg.stage == "student" and not stage_cfg.distill.teacher_checkpoint:
        raise ConfigError(
            f"search space {space.name} trains students: give --teacher CHECKPOINT "
            "(or fixed: distill.teacher_checkpoint in the space)"
        )
    if "://" in (stage_cfg.distill.teacher_checkpoint or ""):
        raise ConfigError(
            "the teacher checkpoint must be a path every trial can read (local or a shared filesystem), "
            f"not a URI: {stage_cfg.distill.teacher_checkpoint}"
        )
    if stage_cfg.distill.teacher_checkpoint:
        path = Path(stage_cfg.distill.teacher_checkpoint).expanduser().absolute()
        if not path.exists():
            raise ConfigError(f"teacher checkpoint not found: {path}")
        base = _set_teacher(base, str(path))
        if "distill.teacher_checkpoint" in space.fixed:
            space = dataclasses.replace(space, fixed={**space.fixed, "distill.teacher_checkpoint": str(path)})

    storage_root, local = resolve_storage(storage)
    experiment_path = f"{storage_root.rstrip('/')}/{experiment}"
    if local and not Path(base["output_dir"]).is_absolute():
        # Trials share the synthetic data and the teacher cache under the experiment folder
        # (an absolute output_dir is kept: several searches can share one cache).
        base["output_dir"] = str(Path(experiment_path) / "work")
    lb_root = str(leaderboard or default_root())
    if "://" not in lb_root:
        lb_root = str(Path(lb_root).expanduser().absolute())
    Leaderboard(lb_root).check_writable(experiment)  # before any trial spends compute

    from geodistill.platform.ray_local import init_ray

    # Inside `ray job submit` the job's cluster is in RAY_ADDRESS: join it, never start another.
    init_ray(address or os.environ.get("GEODISTILL_RAY_ADDRESS") or os.environ.get("RAY_ADDRESS"))

    multi_worker = _multi_worker(space, base)
    rung_store = None
    if early_stopping and multi_worker:
        from geodistill.platform.rung import FileRungStore, RayRungStore

        rung_store = (
            FileRungStore(Path(experiment_path) / "rungs")
            if local
            else RayRungStore(f"rungs-{experiment}").create()
        )
    setup = TrialSetup(
        space=space,
        base=base,
        experiment=experiment,
        metric=space.metric,
        storage_path=storage_root,
        rung_store=rung_store,
        grace_period=grace_period,
        reduction_factor=reduction_factor,
        objective=objective,
    )
    # A multi-worker trial only drives its TorchTrainer: it takes no CPU from the workers
    # (Tune refuses an empty request, so it asks for a token amount of memory instead).
    resources = (
        {"cpu": cpus_per_trial, "gpu": gpus_per_trial} if not multi_worker else {"cpu": 0, "memory": 2**20}
    )
    trainable = tune.with_resources(tune.with_parameters(run_trial, setup=setup), resources)

    url = study_url(experiment, storage_root, local)
    can_restore = tune.Tuner.can_restore(experiment_path)
    if can_restore and not resume:
        raise ConfigError(
            f"experiment {experiment!r} already exists at {experiment_path}; pass --resume to continue it "
            "or choose another --experiment"
        )
    # Epochs between evaluations report no precision metric; ASHA skips those results.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    # Every epoch checkpoints (num_to_keep=1): Tune's "snapshotting too often" warning is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    callback = LeaderboardCallback(lb_root, experiment, space, base)
    started = time.monotonic()
    if resume and can_restore:
        if local:  # a driver killed between Tune's two state files leaves them disagreeing
            repaired = reconcile_searcher_state(
                experiment_path,
                study_url=url,
                study_name=experiment,
                objectives=[space.metric, space.efficiency],
            )
            if repaired and verbose:
                print(
                    f"resume: {len(repaired)} finished trial(s) were still running in the saved searcher; fixed"
                )
        tuner = tune.Tuner.restore(
            experiment_path, trainable=trainable, resume_errored=False, restart_errored=False
        )
        restored = _find_callback(tuner)
        if restored is not None:  # the callback Tune saved with the experiment: point it at today's root
            restored.root, callback = lb_root, restored
    else:
        if resume and verbose:
            print(f"nothing to resume at {experiment_path}: starting experiment {experiment!r}")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        searcher = OptunaSearch(
            space=functools.partial(define_by_run, space=space, base=base),
            metric=[space.metric, space.efficiency],
            mode=["max", "min"],
            sampler=make_sampler(sampler, seed=seed),
            storage=optuna.storages.RDBStorage(url),
            study_name=experiment,
        )
        scheduler = None
        if early_stopping and not multi_worker:
            scheduler = ASHAScheduler(
                time_attr="epoch",
                metric=space.metric,
                mode="max",
                max_t=max(_max_epochs(space, base), grace_period),
                grace_period=grace_period,
                reduction_factor=reduction_factor,
            )
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=ConcurrencyLimiter(searcher, max_concurrent=max_concurrent),
                scheduler=scheduler,
                num_samples=num_samples,
                time_budget_s=time_budget_s,
                reuse_actors=True,  # one trial process per slot: torch and timm import once
            ),
            run_config=tune.RunConfig(
                name=experiment,
                storage_path=storage_root,
                callbacks=[callback, *callbacks],
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                failure_config=tune.FailureConfig(max_failures=0),
                verbose=verbose,
            ),
        )
    tuner.fit()
    elapsed = time.monotonic() - started
    trials = list(callback.trials)
    # Rows that the callback could not write (Ctrl-C between completion and the write, or a
    # resumed run whose callback state was lost) are written now from the trials' final state.
    for trial in trials:
        if trial.status in TERMINAL:
            callback.write(trial)
    done = sum(t.status in TERMINAL for t in trials)
    out_of_time = time_budget_s is not None and elapsed >= time_budget_s
    interrupted = done < num_samples and not out_of_time  # Ctrl-C / SIGINT: Tune saved its state
    frame = Leaderboard(lb_root).read(experiment)
    return SearchResult(
        experiment=experiment,
        experiment_path=experiment_path,
        study_url=url,
        leaderboard_root=lb_root,
        rows=frame,
        pareto=pareto_rows(frame, metric=space.metric),
        trials=len(trials),
        interrupted=interrupted,
        written=list(callback.written),
    )


def first_assignment(space: SearchSpace) -> dict[str, Any]:
    """A valid assignment (first choice / low bound) to learn what the fixed part implies."""
    values: dict[str, Any] = {}
    for p in space.params:
        if p.active(values):
            values[p.name] = (
                p.choices[0] if p.type == "choice" else (int(p.low) if p.type == "int" else p.low)
            )
    return values


def _set_teacher(base: dict[str, Any], path: str) -> dict[str, Any]:
    out = json.loads(json.dumps(base))
    out["distill"]["teacher_checkpoint"] = path
    return out


def _multi_worker(space: SearchSpace, base: Mapping[str, Any]) -> bool:
    """Whether any trial may run a TorchTrainer (> 1 worker): then no scheduler may stop trials."""
    for p in space.params:
        if p.name == "scaling.num_workers":
            values = p.choices if p.type == "choice" else (p.high,)
            return any(v > 1 for v in values)
    workers = space.fixed.get("scaling.num_workers", base["scaling"]["num_workers"])
    return workers > 1


def _max_epochs(space: SearchSpace, base: Mapping[str, Any]) -> int:
    for p in space.params:
        if p.name == "train.epochs":
            return int(max(p.choices) if p.type == "choice" else p.high)
    return int(space.fixed.get("train.epochs", base["train"]["epochs"]))


def _find_callback(tuner: Any) -> Any | None:
    """The restored experiment's own leaderboard callback (it was saved with the Tuner)."""
    internal = getattr(tuner, "_local_tuner", None)
    run_config = getattr(internal, "_run_config", None) if internal is not None else None
    for cb in getattr(run_config, "callbacks", None) or []:
        if type(cb).__name__ == "LeaderboardCallback":
            return cb
    return None


def pareto_rows(frame: Any, *, metric: str = "d2s_recall1") -> Any:
    """The rows on the (metric max, GFLOPs min) Pareto front among finished ("ok") trials."""
    import numpy as np
    import polars as pl

    from geodistill.leaderboard.pareto import pareto_mask

    usable = frame.filter(
        pl.col(metric).is_not_null() & pl.col("gflops").is_not_null() & (pl.col("status") == "ok")
    )
    if usable.height == 0:
        return usable
    points = np.column_stack([usable[metric].to_numpy(), usable["gflops"].to_numpy()])
    mask = pareto_mask(points, maximize=[True, False])
    return usable.filter(pl.Series(mask)).sort("gflops")


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

"""Experiment tracking: TensorBoard, MLflow and Weights & Biases, for runs and searches.

One choice, ``logger`` (``none | tensorboard | mlflow | wandb``, several at once), from the run
config or ``geodistill search --logger``. A training run writes through ``RunTracker`` here
(rank 0): tensorboardX events under ``<run dir>/tensorboard``; MLflow to ``$MLFLOW_TRACKING_URI``
or a local SQLite ``<output dir>/mlflow.db``; W&B offline unless ``WANDB_MODE`` says otherwise
(``<run dir>/wandb/offline-run-*``). A search uses Ray Tune's own logger callbacks
(``callbacks.py``, which imports Ray; this module does not). Each run logs every epoch's losses
and metrics, its cost and its resolved config; nothing contacts a network host unless the user
configured a server. A missing library is one line naming the extra to install.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from geodistill.errors import ConfigError, UserError
from geodistill.schema import dotted
from geodistill.train.config import LOGGERS

# logger -> (module that must import, pip extra that installs it)
REQUIRES = {
    "tensorboard": ("tensorboardX", "tensorboard"),
    "mlflow": ("mlflow", "mlflow"),
    "wandb": ("wandb", "wandb"),
}
WANDB_PROJECT = "geodistill"
MLFLOW_DB = "mlflow.db"


class MissingExtra(UserError):
    """A chosen logger's library is not installed."""


def parse_loggers(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"tensorboard,mlflow"`` or a list -> the chosen trackers, in order, "none" dropped."""
    if value is None:
        return ()
    parts = value.split(",") if isinstance(value, str) else list(value)
    names: list[str] = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        if part not in LOGGERS:
            raise ConfigError(f"logger must be among {', '.join(LOGGERS)}; got {part!r}")
        if part != "none" and part not in names:
            names.append(part)
    return tuple(names)


def require(loggers: Iterable[str]) -> None:
    """Raise one line naming the extra to install when a chosen logger's library is missing."""
    for name in loggers:
        module, extra = REQUIRES[name]
        if importlib.util.find_spec(module) is None:
            raise MissingExtra(f"logger {name} needs the {module} package: pip install 'geodistill[{extra}]'")


def mlflow_uri(folder: str | Path) -> str:
    """The user's ``$MLFLOW_TRACKING_URI``, else a SQLite store in ``folder`` (created)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    Path(folder).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(folder).absolute() / MLFLOW_DB}"


def wandb_mode() -> str:
    """W&B stays offline unless the user chose a mode (``WANDB_MODE``); set for child processes too."""
    return os.environ.setdefault("WANDB_MODE", "offline")


def flatten(config: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``, lists and None as their JSON text (what trackers take)."""
    return {
        name: value if isinstance(value, bool | int | float | str) else json.dumps(value)
        for name, value in dotted(config).items()
    }


def numeric(metrics: Mapping[str, Any], *, skip: Iterable[str] = ()) -> dict[str, float]:
    """The finite numbers of a metrics dict (strings, None and NaN left out)."""
    skip = set(skip)
    out = {}
    for key, value in metrics.items():
        if key in skip or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            out[key] = float(value)
    return out


class RunTracker:
    """The chosen trackers of one training run (rank 0 only): ``start``, ``log`` per epoch, ``close``."""

    def __init__(
        self,
        loggers: Sequence[str],
        *,
        experiment: str,
        run_name: str,
        run_dir: str | Path,
        output_dir: str | Path,
        config: Mapping[str, Any],
        cost: Mapping[str, Any] | None = None,
    ) -> None:
        self.loggers = parse_loggers(loggers)
        require(self.loggers)
        self.experiment, self.run_name = experiment, run_name
        self.run_dir, self.output_dir = Path(run_dir), Path(output_dir)
        self.config, self.cost = dict(config), dict(cost or {})
        self._tb: Any = None
        self._mlflow: Any = None
        self._mlflow_run: str | None = None
        self._wandb: Any = None

    def start(self) -> RunTracker:
        flat = flatten(self.config)
        cost = numeric(self.cost)
        if "tensorboard" in self.loggers:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tensorboard"), flush_secs=5)
            self._tb.add_text("config", "```\n" + json.dumps(self.config, indent=2, sort_keys=True) + "\n```")
            for key, value in cost.items():
                self._tb.add_scalar(f"cost/{key}", value, global_step=0)
        if "mlflow" in self.loggers:
            from mlflow import MlflowClient

            self._mlflow = MlflowClient(mlflow_uri(self.output_dir))
            found = self._mlflow.get_experiment_by_name(self.experiment)
            exp_id = found.experiment_id if found else self._mlflow.create_experiment(self.experiment)
            run = self._mlflow.create_run(
                exp_id, run_name=self.run_name, tags={"geodistill.run": self.run_name}
            )
            self._mlflow_run = run.info.run_id
            self._mlflow_params(flat)
            for key, value in cost.items():
                self._mlflow.log_metric(self._mlflow_run, f"cost/{key}", value, step=0)
        if "wandb" in self.loggers:
            import wandb

            wandb_mode()
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._wandb = wandb.init(
                project=os.environ.get("WANDB_PROJECT", WANDB_PROJECT),
                group=self.experiment,
                name=self.run_name,
                config=self.config,
                dir=str(self.run_dir),
                reinit="create_new",
            )
            for key, value in cost.items():
                self._wandb.summary[f"cost/{key}"] = value
        return self

    def _mlflow_params(self, flat: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        params = [Param(k, str(v)[:6000]) for k, v in flat.items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self._mlflow.log_batch(self._mlflow_run, params=params[i : i + 100])

    def log(self, metrics: Mapping[str, Any]) -> None:
        """One epoch's report (step = its ``epoch``)."""
        values = numeric(metrics, skip=("epoch",))
        step = int(metrics.get("epoch", 0))
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(key, value, global_step=step)
            self._tb.flush()
        if self._mlflow is not None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            batch = [Metric(k, v, now, step) for k, v in values.items()]
            self._mlflow.log_batch(self._mlflow_run, metrics=batch)
        if self._wandb is not None:
            self._wandb.log({**values, "epoch": step}, step=step)

    def close(self, *, failed: bool = False) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._mlflow is not None:
            self._mlflow.set_terminated(self._mlflow_run, status="FAILED" if failed else "FINISHED")
            self._mlflow = None
        if self._wandb is not None:
            self._wandb.finish(exit_code=1 if failed else 0)
            self._wandb = None


class TrackedContext:
    """A ``TrainContext`` that also hands rank 0's reports to a ``RunTracker`` (the train layer never sees it)."""

    def __init__(self, inner: Any, tracker: RunTracker) -> None:
        self.inner, self.tracker = inner, tracker
        self.rank, self.world_size, self.device = inner.rank, inner.world_size, inner.device

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None = None) -> None:
        self.inner.report(metrics, checkpoint_dir)
        if self.rank == 0:
            self.tracker.log(metrics)

    def latest_checkpoint(self) -> Path | None:
        return self.inner.latest_checkpoint()

    def should_stop(self, epoch: int, metrics: dict[str, float]) -> bool:
        return self.inner.should_stop(epoch, metrics)

    def __getattr__(self, name: str) -> Any:  # history, run_dir, ... of the wrapped context
        return getattr(self.inner, name)


def run_tracker(cfg: Any, run_dir: str | Path) -> RunTracker | None:
    """The started tracker of ``cfg`` (a prepared ``RunConfig``), or None when it logs nowhere."""
    loggers = parse_loggers(cfg.logger)
    if not loggers:
        return None
    from geodistill.models.cost import config_cost

    return RunTracker(
        loggers,
        experiment=cfg.experiment,
        run_name=cfg.run_name,
        run_dir=run_dir,
        output_dir=cfg.output_dir,
        config=cfg.to_dict(),
        cost=config_cost(cfg.model, cfg.data.views),
    ).start()

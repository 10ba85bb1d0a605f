"""A search's experiment tracking: Ray Tune's own logger callbacks, given each trial's resolved config.

``--logger tensorboard,mlflow,wandb`` adds, in the driver, Tune's ``TBXLoggerCallback`` (event
files in each trial's folder: ``tensorboard --logdir <storage>/<experiment>``),
``MLflowLoggerCallback`` (a run per trial in ``<storage>/<experiment>/mlflow.db`` unless
``$MLFLOW_TRACKING_URI``) and ``WandbLoggerCallback`` (a run per trial, grouped by experiment,
offline in the trial folder unless ``$WANDB_MODE``). Every result already carries the epoch's
metrics and the trial's cost; Tune's callbacks only know the sampled parameters, so the
subclasses here add the trial's resolved run config (``SearchPlan.config``): TensorBoard as a
``config`` text, MLflow as ``cfg.<dotted key>`` parameters, W&B in the run's config.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.air.integrations.wandb import WandbLoggerCallback
from ray.tune.logger import LoggerCallback, TBXLoggerCallback

from geodistill.platform.search.plan import SearchPlan
from geodistill.platform.tracking import WANDB_PROJECT, flatten, mlflow_uri, require, wandb_mode


def resolved_config(config: dict[str, Any], *, plan: SearchPlan) -> dict[str, Any]:
    """The run config a trial with sampled ``config`` trains (nested dict); {} if it cannot be composed."""
    try:
        return plan.config(config).to_dict()
    except Exception:  # noqa: BLE001 - a bad trial fails in the trial, with its own error row
        return {}


class _ConfigTBX(TBXLoggerCallback):
    """Tune's TensorBoard logger, plus the trial's resolved config as a text summary."""

    def __init__(self, resolve: Any) -> None:
        super().__init__()
        self.resolve = resolve

    def log_trial_start(self, trial: Any) -> None:
        super().log_trial_start(trial)
        text = json.dumps(self.resolve(trial.config), indent=2, sort_keys=True)
        self._trial_writer[trial].add_text("config", f"```\n{text}\n```")


class TensorBoardCallback(LoggerCallback):
    """``_ConfigTBX`` held, not inherited: for any ``TBXLoggerCallback`` Tune prints "To visualize
    your results with TensorBoard, run: tensorboard --logdir <its driver staging folder>", a
    folder in Ray's session directory; the driver prints the experiment folder instead."""

    def __init__(self, resolve: Any) -> None:
        self.tbx = _ConfigTBX(resolve)

    def setup(self, *args: Any, **kwargs: Any) -> None:
        self.tbx.setup(*args, **kwargs)

    def log_trial_start(self, trial: Any) -> None:
        self.tbx.log_trial_start(trial)

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        self.tbx.log_trial_result(iteration, trial, result)

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        self.tbx.log_trial_end(trial, failed)


class MLflowCallback(MLflowLoggerCallback):
    """Tune's MLflow logger, plus the trial's resolved config as ``cfg.*`` parameters."""

    def __init__(self, resolve: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resolve = resolve

    def log_trial_start(self, trial: Any) -> None:
        started = trial in getattr(self, "_trial_runs", {})
        super().log_trial_start(trial)
        if not started:  # a restored trial keeps the parameters it logged
            params = {f"cfg.{k}": str(v)[:6000] for k, v in flatten(self.resolve(trial.config)).items()}
            self.mlflow_util.log_params(run_id=self._trial_runs[trial], params_to_log=params)


class WandbCallback(WandbLoggerCallback):
    """Tune's W&B logger, plus the trial's resolved config in the run's config.

    With local storage the run folder is written straight into the trial's folder
    (``wandb.init(dir=trial.path)``). Tune's logging actor would write it into the driver's
    staging folder (``trial.local_path``), which is copied to storage only at Tune's periodic
    syncs: the W&B actor finishes after the last of them, so the offline run went missing or
    half-written from the trial folder.
    """

    def __init__(self, resolve: Any, *, local: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resolve = resolve
        self.local = local

    def _start_logging_actor(self, trial: Any, exclude_results: list[str], **wandb_init_kwargs: Any) -> None:
        config = dict(wandb_init_kwargs.get("config") or {})
        config["run_config"] = self.resolve(trial.config)
        wandb_init_kwargs["config"] = config
        if self.local and trial.path:
            os.makedirs(trial.path, exist_ok=True)
            wandb_init_kwargs.setdefault("dir", trial.path)
        super()._start_logging_actor(trial, exclude_results, **wandb_init_kwargs)


def tune_callbacks(
    loggers: Sequence[str],
    *,
    experiment: str,
    experiment_path: str,
    local: bool,
    plan: SearchPlan,
) -> list[Any]:
    """The Tune callbacks for the chosen trackers (``tracking.parse_loggers`` output)."""
    require(loggers)
    resolve = functools.partial(resolved_config, plan=plan)
    callbacks: list[Any] = []
    if "tensorboard" in loggers:
        callbacks.append(TensorBoardCallback(resolve))
    if "mlflow" in loggers:
        if not local and not os.environ.get("MLFLOW_TRACKING_URI"):
            from geodistill.errors import ConfigError

            raise ConfigError(
                "--logger mlflow with a URI --storage needs $MLFLOW_TRACKING_URI (a shared store)"
            )
        callbacks.append(
            MLflowCallback(
                resolve,
                tracking_uri=mlflow_uri(experiment_path),
                experiment_name=experiment,
                tags={"geodistill.experiment": experiment},
            )
        )
    if "wandb" in loggers:
        mode = wandb_mode()
        callbacks.append(
            WandbCallback(
                resolve,
                local=local,
                project=os.environ.get("WANDB_PROJECT", WANDB_PROJECT),
                group=experiment,
                mode=mode,
            )
        )
    return callbacks

"""Leaderboard rows of search trials (and of single training runs, which share their shape).

Rows are written by a Tune ``Callback`` in the driver (``on_trial_complete`` /
``on_trial_error``), so a trial whose process crashed or was stopped still gets its row
(failed rows carry the error, one line). Row keys already present are skipped, so a resumed
search never duplicates a row; the driver's pass after ``Tuner.fit`` writes any row the
callback could not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray import tune

from geodistill.errors import one_line
from geodistill.platform.search.space import SearchSpace, trial_config
from geodistill.platform.search.trial import trial_cost
from geodistill.train.config import RunConfig
from geodistill.train.context import default_device


def trial_error(trial: Any) -> str:
    """One line for a failed trial, read from the error files Tune just wrote on the driver."""
    from ray import cloudpickle

    for path in (getattr(trial, "pickled_error_file", None),):
        if path and Path(path).is_file():
            try:
                return one_line(cloudpickle.loads(Path(path).read_bytes()), root_cause=True)
            except Exception:  # an unpicklable error: fall back to the text file
                pass
    text_path = getattr(trial, "error_file", None)
    text = Path(text_path).read_text() if text_path and Path(text_path).is_file() else None
    if text is None:
        try:
            error = trial.get_pickled_error()
            if error is not None:
                return one_line(error, root_cause=True)
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
    from geodistill.eval.names import METRIC_KEYS
    from geodistill.leaderboard import make_row

    over_budget = bool(result.get("over_budget"))
    metrics = {} if over_budget else {k: result[k] for k in METRIC_KEYS if result.get(k) is not None}
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
        device=str(default_device()) if cfg.scaling.in_process else None,
        checkpoint_uri=checkpoint or result.get("checkpoint_uri"),
        config_json=cfg.to_dict(),
        node_id=result.get("node_id"),
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
                "leaderboard row for trial %s not written yet: %s",
                trial.trial_id,
                one_line(err, root_cause=True),
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

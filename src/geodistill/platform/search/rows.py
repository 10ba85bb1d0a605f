"""The Tune callback that writes a search trial's leaderboard row (``leaderboard.rows.trial_row``).

Rows are written by a Tune ``Callback`` in the driver (``on_trial_complete`` /
``on_trial_error``), so a trial whose process crashed or was stopped still gets its row
(failed rows carry the error, one line). Row keys already present are skipped, so a resumed
search never duplicates a row, except the row an older driver wrote for a trial its interrupt
cut before any result ("stopped", no epoch): that trial runs again on resume and its end writes
the row that replaces it. The driver's pass after ``Tuner.fit`` writes any row the callback could
not (``ended_trials``: those that ended for good, as Tune saved them). A Ray Train trial that the
time budget cut reported nothing: its row is filled from its run folder (``trial.cut_result``).
A checkpoint on URI storage is named by the URI a user opens (``remote.uri_on``: scheme and query).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from ray import tune

from geodistill.errors import one_line
from geodistill.leaderboard.rows import row_status, trial_row
from geodistill.platform.search.plan import SearchPlan


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


BUCKET_SCHEMES = ("s3", "gcs")  # the type_name of pyarrow file systems whose path starts with the bucket


def checkpoint_uri(checkpoint: Any, storage: str | None = None) -> str | None:
    """A Ray ``Checkpoint`` as a URI (a plain path on the local file system); on the URI storage
    ``storage`` (Tune's, with its ``?query``) the URI ``remote.uri_on`` makes of its path.

    ``LeaderboardCallback`` always passes Tune's storage. Without it only a path that keeps its
    bucket (s3, gcs) names the checkpoint; on a store whose path drops the host or account (hdfs,
    abfs: ``remote.store_path``) it is None, logged: the leaderboard's column holds no URI rather
    than one that opens elsewhere or nowhere."""
    from geodistill.platform.runtime.remote import is_uri, uri_on

    if checkpoint is None:
        return None
    fs = getattr(checkpoint, "filesystem", None)
    scheme = getattr(fs, "type_name", "local") if fs is not None else "local"
    if scheme == "local":
        return checkpoint.path
    if storage is not None and is_uri(storage):
        return uri_on(storage, checkpoint.path)
    if scheme in BUCKET_SCHEMES:
        return f"{scheme}://{checkpoint.path}"
    logging.getLogger(__name__).warning(
        "checkpoint %s on %s not named: its path lost the store's host (no storage URI given)",
        checkpoint.path,
        scheme,
    )
    return None


ENDED = ("TERMINATED", "ERROR")  # Tune's statuses of a trial that never runs again


class LeaderboardCallback(tune.Callback):
    """Writes one leaderboard row per trial from the driver, whatever became of the trial.

    It also knows which trials ended for good (``ended_trials``): the statuses after Tune's last
    step, which Tune saves for ``--resume``. After Ctrl-C, Tune's clean-up marks the running
    trials TERMINATED in memory, but they were saved RUNNING and resume.
    """

    def __init__(self, root: str, experiment: str, plan: SearchPlan, storage: str | None = None) -> None:
        self.root, self.experiment, self.plan = root, experiment, plan
        self.storage = storage  # Tune's storage root (a path or URI): where checkpoints are
        self.present: set[str] | None = None
        self.cut: set[str] = set()  # present keys of rows without a result (see the module docstring)
        self.trials: list[Any] = []
        self.written: list[str] = []
        self.ended: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:  # saved with the experiment: keep it small
        return {**self.__dict__, "present": None, "cut": set(), "trials": [], "written": [], "ended": set()}

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        # A trial the time budget stopped ends without on_trial_complete; one the interrupt cut is
        # still RUNNING here (Tune's clean-up marks it TERMINATED only after this last step).
        self.trials = trials
        self.ended |= {t.trial_id for t in trials if t.status in ENDED}

    def ended_trials(self) -> list[Any]:
        """The trials that will not run again (finished, stopped early or by the time budget,
        failed); not those an interrupted search saved as running."""
        return [t for t in self.trials if t.trial_id in self.ended]

    def _keys(self) -> set[str]:
        if self.present is None:
            import polars as pl

            from geodistill.leaderboard import Leaderboard

            rows = Leaderboard(self.root).read(self.experiment)
            self.present = set(rows["row_key"].to_list()) if rows.height else set()
            if rows.height and self.plan.metric in rows.columns:
                empty = (
                    (pl.col("status") == "stopped") & pl.col("epochs").is_null() & pl.col("error").is_null()
                )
                cut = rows.filter(empty & pl.col(self.plan.metric).is_null())
                self.cut = set(cut["row_key"].to_list())
        return self.present

    def setup(self, **info: Any) -> None:
        self._keys()

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        self.trials = trials

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        key = self._key(trial)
        if key in self.cut:  # its end writes the row that replaces it (the newest row of a key is read)
            self._keys().discard(key)
            self.cut.discard(key)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.trials = trials
        self.ended.add(trial.trial_id)
        self._safe_write(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.trials = trials
        self.ended.add(trial.trial_id)
        self._safe_write(trial, failed=True)

    def _safe_write(self, trial: Any, *, failed: bool) -> None:
        # An exception here would end the whole search (Tune re-raises callback errors); the
        # pass after the run retries rows that could not be written and raises then.
        try:
            self.write(trial, failed=failed)
        except Exception as err:  # noqa: BLE001
            logging.getLogger(__name__).warning(
                "leaderboard row for trial %s not written yet: %s",
                trial.trial_id,
                one_line(err, root_cause=True),
            )

    def _key(self, trial: Any, cfg: Any = None) -> str:
        stage = (cfg or self.plan.config(trial.config)).stage
        return f"{self.experiment}/{trial.trial_id}/{stage}"

    def write(self, trial: Any, *, failed: bool | None = None) -> bool:
        """Write ``trial``'s row unless its key is present; True when written."""
        from geodistill.leaderboard import Leaderboard

        failed = trial.status == "ERROR" if failed is None else failed
        cfg = self.plan.config(trial.config)
        key = self._key(trial, cfg)
        if key in self._keys():
            return False
        result = dict(trial.last_result or {})
        if not failed and "epoch" not in result and not cfg.scaling.in_process and self.storage:
            from geodistill.platform.search.trial import cut_result

            result.update(cut_result(cfg, trial.trial_id, self.storage, self.experiment))
        if failed:
            status, error = "failed", trial_error(trial)
        else:
            status, error = row_status(result, cfg)
        row = trial_row(
            experiment=self.experiment,
            trial_id=trial.trial_id,
            cfg=cfg,
            result=result,
            status=status,
            error=error,
            checkpoint=checkpoint_uri(trial.checkpoint, self.storage),
            run_id=getattr(trial.storage, "trial_dir_name", None) if trial.storage else None,
        )
        Leaderboard(self.root).write([row])
        self.present.add(key)
        self.written.append(key)
        return True

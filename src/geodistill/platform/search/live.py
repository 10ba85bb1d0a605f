"""The live view of a search: one compact table of trials instead of interleaved worker logs.

By default a search's console shows this table (a Tune ``Callback`` in the driver): each
trial's status, epoch, metric, GFLOPs and elapsed time, and the search's budget left (trials
and, with ``--time-budget``, seconds). On a terminal it refreshes in place (``rich.live``); on
a pipe or a file it prints a plain snapshot every ``period_s`` seconds and whenever a trial
ends, so CI logs stay readable. The trials' own output goes to ``stdout``/``stderr`` files in
each trial folder (Tune's ``log_to_file``); ``--verbose`` streams it to the console as before.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import IO, Any

from ray import tune

STATUS_ORDER = ("RUNNING", "PENDING", "PAUSED", "TERMINATED", "ERROR")


@dataclasses.dataclass
class TrialLine:
    """What the table shows of one trial."""

    trial_id: str
    status: str = "PENDING"
    epoch: int | None = None
    epochs: int | None = None
    metric: float | None = None
    gflops: float | None = None
    started: float | None = None
    ended: float | None = None
    compute: float = 0.0  # epochs trained x GFLOPs per query so far

    def elapsed(self, now: float) -> float:
        if self.started is None:
            return 0.0
        return (self.ended or now) - self.started


class LiveTable(tune.Callback):
    """Tune callback rendering the trial table (rich ``Live`` on a TTY, periodic plain text otherwise)."""

    def __init__(
        self,
        *,
        metric: str,
        num_samples: int,
        time_budget_s: float | None = None,
        period_s: float = 30.0,
        stream: IO[str] | None = None,
        tty: bool | None = None,
    ) -> None:
        self.metric, self.num_samples, self.time_budget_s = metric, num_samples, time_budget_s
        self.period_s = period_s
        self._stream = stream
        self._tty = tty
        self.trials: dict[str, TrialLine] = {}
        self.started = time.monotonic()
        self._live: Any = None
        self._last_print = 0.0
        self._last_text = ""

    def __getstate__(self) -> dict[str, Any]:  # saved with the experiment: no console, no stream
        return {**self.__dict__, "_live": None, "_stream": None, "trials": {}}

    # ------------------------------------------------------------ what is shown

    @property
    def stream(self) -> IO[str]:
        return self._stream or sys.stdout

    def summary(self, now: float | None = None) -> str:
        """One line: trials done / running / left, and the time budget left."""
        now = time.monotonic() if now is None else now
        done = sum(t.status in ("TERMINATED", "ERROR") for t in self.trials.values())
        running = sum(t.status == "RUNNING" for t in self.trials.values())
        failed = sum(t.status == "ERROR" for t in self.trials.values())
        text = f"trials {done}/{self.num_samples} done, {running} running, {self.num_samples - done} left"
        if failed:
            text += f" ({failed} failed)"
        text += f"; elapsed {now - self.started:.0f}s"
        if self.time_budget_s is not None:
            text += f", time budget left {max(0.0, self.time_budget_s - (now - self.started)):.0f}s"
        spent = sum(t.compute for t in self.trials.values())
        return text + f"; compute {spent:.3g} GFLOPs x epochs"

    def rows(self, now: float | None = None) -> list[tuple[str, ...]]:
        """The table's rows (strings), running trials first: trial, status, epoch, metric, GFLOPs, elapsed."""
        now = time.monotonic() if now is None else now
        out = []
        order = {s: i for i, s in enumerate(STATUS_ORDER)}
        for line in sorted(self.trials.values(), key=lambda t: (order.get(t.status, 9), t.trial_id)):
            epoch = (
                "-" if line.epoch is None else f"{line.epoch}" + (f"/{line.epochs}" if line.epochs else "")
            )
            out.append(
                (
                    line.trial_id,
                    line.status,
                    epoch,
                    "-" if line.metric is None else f"{line.metric:.2f}",
                    "-" if line.gflops is None else f"{line.gflops:.4f}",
                    f"{line.elapsed(now):.0f}s",
                )
            )
        return out

    def header(self) -> tuple[str, ...]:
        return ("trial", "status", "epoch", self.metric, "GFLOPs", "elapsed")

    def plain(self, now: float | None = None) -> str:
        """The table as fixed-width text (pipes, files, CI logs)."""
        rows = [self.header(), *self.rows(now)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        return "\n".join([f"[search] {self.summary(now)}", *lines])

    def renderable(self) -> Any:
        from rich.table import Table

        table = Table(title=self.summary(), title_justify="left", expand=False)
        for name in self.header():
            table.add_column(name, justify="left" if name in ("trial", "status") else "right")
        for row in self.rows():
            table.add_row(*row)
        return table

    # ------------------------------------------------------------ Tune's hooks

    def _is_tty(self) -> bool:
        if self._tty is not None:
            return self._tty
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def setup(self, **info: Any) -> None:
        self.started = time.monotonic()
        if self._is_tty():
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self.renderable(), console=Console(file=self.stream), refresh_per_second=2)
            self._live.start()

    def _line(self, trial: Any) -> TrialLine:
        line = self.trials.get(trial.trial_id)
        if line is None:
            line = self.trials[trial.trial_id] = TrialLine(trial.trial_id)
        return line

    def _update(self, trial: Any, status: str | None = None, result: dict | None = None) -> None:
        line = self._line(trial)
        line.status = status or trial.status
        if line.status == "RUNNING" and line.started is None:
            line.started = time.monotonic()
        if line.status in ("TERMINATED", "ERROR") and line.ended is None:
            line.ended = time.monotonic()
        result = result or {}
        if result.get("epoch") is not None:
            line.epoch = int(result["epoch"])
        if result.get("epochs_planned") is not None:
            line.epochs = int(result["epochs_planned"])
        if result.get(self.metric) is not None and not result.get("over_budget"):
            line.metric = float(result[self.metric])
        if result.get("gflops") is not None:
            line.gflops = float(result["gflops"])
        if result.get("compute") is not None:
            line.compute = float(result["compute"])

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._update(trial, "RUNNING")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._update(trial, "RUNNING", result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._update(trial, "TERMINATED", trial.last_result)
        self._refresh(force=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._update(trial, "ERROR", trial.last_result)
        self._refresh(force=True)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        for trial in trials:
            if trial.trial_id not in self.trials or trial.status == "PENDING":
                self._line(trial).status = trial.status
        self._refresh()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._refresh(force=True)
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _refresh(self, *, force: bool = False) -> None:
        if self._live is not None:
            self._live.update(self.renderable())
            return
        now = time.monotonic()
        if force or now - self._last_print >= self.period_s:
            self._last_print = now
            text = self.plain(now)
            same = text.split(";", 1)[0] + text.partition("\n")[2]  # all but the clock
            if same == self._last_text:  # the last trial's end printed it already (a pipe showed it twice)
                return
            self._last_text = same
            print(text, file=self.stream, flush=True)

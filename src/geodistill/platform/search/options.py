"""One search request, typed: every setting of ``run_search`` with its single default and help.

``SearchOptions`` is declared like ``RunConfig`` (``schema.setting``: the rule next to the
field), so the CLI's ``geodistill search`` flags are generated from it
(``platform.flags.add_setting_flags``), the demo, the benchmarks and the tests build it, and
``run_search(space, base, options)`` checks it once (``check``) before Ray starts: a wrong value
is one ``ConfigError`` line, exit 2. Imports no Ray (the CLI builds its parser from it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from geodistill.schema import SEED_MAX, rule_of, setting

SAMPLERS = ("tpe", "gp", "nsga2", "random")
DEFAULT_SAMPLER = "tpe"  # benchmarks/RESULTS.md compares the samplers
KEEP_CHECKPOINTS = ("front", "all")


def _metrics() -> tuple[str, ...]:
    from geodistill.eval.names import OBJECTIVE_METRICS

    return OBJECTIVE_METRICS


def _logger_names(text: str) -> None:
    """--logger: comma-separated names, each one of LOGGERS."""
    from geodistill.errors import ConfigError
    from geodistill.train.config import LOGGERS

    for name in (part.strip() for part in text.split(",")):
        if name not in LOGGERS:
            raise ConfigError(f"must be one of {', '.join(LOGGERS)} (comma-separated); got {name!r}")


@dataclasses.dataclass(frozen=True)
class SearchOptions:
    """How one search runs (what it searches is the space; what each trial starts from, the base)."""

    experiment: str | None = setting(
        None, kind="name", help="name (default <space>-<UTC time>); reuse it with --resume"
    )
    num_samples: int = setting(8, ge=1, le=100_000, help="trials to run")
    sampler: str = setting(
        DEFAULT_SAMPLER,
        choices=SAMPLERS,
        help="tpe (multivariate, 4 random start-up trials) | gp (Gaussian-process BO, 4 start-up) | "
        "nsga2 | random (benchmarks/RESULTS.md compares them)",
    )
    metric: str | None = setting(
        None, choices=_metrics, help="precision objective (default: the space's objectives.metric)"
    )
    max_concurrent: int = setting(2, ge=1, le=10_000, help="trials at once")
    time_budget_s: float | None = setting(
        None, gt=0.0, le=1e9, flag="--time-budget", help="stop starting/continuing trials after S seconds"
    )
    storage: str | None = setting(
        None, kind="store", help="Tune results: local dir or URI (default runs/search)"
    )
    study_storage: str | None = setting(
        None,
        kind="text",
        help="the Optuna study: sqlite:///FILE, postgresql://USER@HOST/DB, journal:///SHARED/FILE "
        "(default SQLite beside --storage's state; --resume finds the recorded one)",
    )
    leaderboard: str | None = setting(
        None,
        kind="store",
        help="leaderboard root, a folder or a URI (default $GEODISTILL_LEADERBOARD or runs/leaderboard)",
    )
    address: str | None = setting(
        None, kind="text", help="Ray cluster to join (default: the job's cluster, or a local head)"
    )
    teacher: str | None = setting(
        None, kind="text", help="stage-1 checkpoint the students distil from: a path or a URI (s3://...)"
    )
    resume: bool = setting(False, help="continue an interrupted experiment")
    keep_checkpoints: str = setting(
        "all",
        choices=KEEP_CHECKPOINTS,
        help="all: keep every trial's last checkpoint (Tune's rule) | front: when the search ends, "
        "remove the checkpoints of ended trials off the Pareto front (their rows are rewritten with "
        "checkpoint_uri empty; the demo uses it)",
    )
    early_stopping: bool = setting(True, flag="--no-early-stopping", help="run every trial to its last epoch")
    grace_period: int = setting(1, ge=1, le=100_000, help="epochs before a trial may stop")
    reduction_factor: float = setting(
        4.0,
        gt=1.0,
        le=1000.0,
        help="ASHA reduction factor: the top 1/F at a rung go on, ranked by Pareto front on "
        "(metric, GFLOPs) and cheapest first within a front (benchmarks/RESULTS.md compares settings)",
    )
    cpus_per_trial: float = setting(1.0, gt=0.0, le=4096.0, help="CPUs each single-worker trial reserves")
    gpus_per_trial: float | None = setting(
        None,
        ge=0.0,
        le=1024.0,
        help="GPUs each trial reserves, fractions allowed (default: scaling.use_gpu x workers); "
        "a multi-worker trial splits them over its workers; a trial with none never sees a GPU",
    )
    seed: int | None = setting(0, ge=0, le=SEED_MAX, help="sampler seed")
    max_failures: int = setting(
        0,
        ge=-1,
        le=1000,
        help="retry a trial whose process or node died this many times, from its last checkpoint "
        "(-1: forever)",
    )
    loggers: str | None = setting(
        None,
        kind="text",
        validator=_logger_names,
        flag="--logger",
        help="experiment tracking, comma-separated: none | tensorboard | mlflow | wandb "
        "(default: the config's logger=; MLflow to <storage>/<experiment>/mlflow.db, W&B offline)",
    )
    dashboard: bool = setting(False, help="start the Ray dashboard on 127.0.0.1 and print its URL")
    verbose: int = setting(
        1,
        ge=0,
        le=2,
        const=2,
        help="stream every trial's output and Tune's status (default: a live trial table; "
        "trial output in <trial dir>/stdout and stderr)",
    )
    replay: str | None = setting(
        None,
        kind="text",
        help="answer every trial from a recorded table of per-epoch metrics (TABLE.parquet: "
        "record_search_table.py, or `geodistill leaderboard replay-table`) on a simulated clock; "
        "nothing trains",
    )
    replay_speed: float = setting(
        0.01, ge=0.0, le=1000.0, help="simulated clock: a replayed epoch sleeps its recorded seconds x this"
    )
    # Not on the command line: what a program (benchmarks, tests) passes in.
    objective: Callable[..., Any] | None = setting(
        None, flag="", help="fit(cfg, *, context) replacing eval.fit_evaluated in every trial"
    )
    callbacks: Sequence[Any] = setting((), flag="", help="more Tune callbacks")

    def check(self) -> SearchOptions:
        """Every declared rule and the rules between fields; ConfigError (one line) on the first broken."""
        from geodistill.errors import ConfigError
        from geodistill.platform.runtime.gpus import check_gpus_per_trial

        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            problem = None if value is None else rule_of(f).problem(value, filesystem=False)
            if problem:  # named as the user typed it: the flag
                name = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
                raise ConfigError(f"{name} {problem}; got {value!r}")
        check_gpus_per_trial(self.gpus_per_trial)
        return self

    def named(self, space_name: str) -> SearchOptions:
        """These options with the experiment named (``<space>-<UTC time>`` unless it has a name)."""
        if self.experiment:
            return self
        return dataclasses.replace(self, experiment=f"{space_name}-{datetime.now(UTC):%Y%m%d-%H%M%S}")

    def for_trials(self) -> SearchOptions:
        """What trials need shipped to them (the driver-side callbacks stay on the driver)."""
        return dataclasses.replace(self, callbacks=())

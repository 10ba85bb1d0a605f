"""`geodistill search search_space=NAME [key=value ...]`: multi-objective Ray Tune + Optuna search."""

from __future__ import annotations

import argparse
import sys

from geodistill.platform.cli.flags import add_leaderboard_flag, flag
from geodistill.schema import SEED_MAX


def METRICS() -> tuple[str, ...]:  # noqa: N802 - lazy: the search objectives
    from geodistill.eval.names import OBJECTIVE_METRICS as names

    return names


def SAMPLERS() -> tuple[str, ...]:  # noqa: N802 - lazy: importing the tuner imports Ray
    from geodistill.platform.search.tuner import SAMPLERS as names

    return names


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "search",
        help="search a space with Ray Tune + Optuna: precision up, GFLOPs per query down",
        description=(
            "Runs one trial per sampled config (stage 2 against a cached teacher by default), "
            "early-stops weak trials (ASHA), writes one leaderboard row per trial and prints the "
            "Pareto set. search_space= names a YAML in search_spaces/ (found from the working "
            "directory up, or $GEODISTILL_SEARCH_SPACES) or is a path; key=value are Hydra "
            "overrides of the base run config. Runs unchanged as `ray job submit ... -- geodistill search ...`."
        ),
    )
    parser.add_argument("args", nargs="*", metavar="search_space=NAME | key=value")
    parser.add_argument(
        "--experiment",
        type=flag(kind="name"),
        help="name (default <space>-<UTC time>); reuse it with --resume",
    )
    parser.add_argument(
        "--num-samples", type=flag(int, ge=1, le=100_000), default=8, help="trials to run (default 8)"
    )
    parser.add_argument(
        "--sampler",
        default="tpe",
        type=flag(choices=SAMPLERS),
        help="tpe (multivariate, 4 random start-up trials) | gp (Gaussian-process BO, 4 start-up; "
        "the best sampler for tens of trials) | nsga2 | random (default tpe; benchmarks/RESULTS.md "
        "compares them)",
    )
    parser.add_argument(
        "--metric",
        type=flag(choices=METRICS),
        help="precision objective: d2s_recall1 | d2s_ap | s2d_recall1 | s2d_ap",
    )
    parser.add_argument(
        "--max-concurrent", type=flag(int, ge=1, le=10_000), default=2, help="trials at once (default 2)"
    )
    parser.add_argument(
        "--time-budget",
        type=flag(float, gt=0.0, le=1e9),
        help="stop starting/continuing trials after S seconds",
    )
    parser.add_argument(
        "--storage", type=flag(kind="store"), help="Tune results: local dir or URI (default runs/search)"
    )
    add_leaderboard_flag(parser)
    parser.add_argument(
        "--address",
        type=flag(kind="text"),
        help="Ray cluster to join (default: the job's cluster, or a local head)",
    )
    parser.add_argument(
        "--teacher",
        type=flag(kind="text"),
        help="stage-1 checkpoint the students distil from: a path or a URI (s3://...)",
    )
    parser.add_argument(
        "--study-storage",
        metavar="URL",
        type=flag(kind="text"),
        help="the Optuna study: sqlite:///FILE, postgresql://USER@HOST/DB, journal:///SHARED/FILE "
        "(default SQLite beside --storage's state; --resume finds the recorded one)",
    )
    parser.add_argument("--resume", action="store_true", help="continue an interrupted experiment")
    parser.add_argument("--no-early-stopping", action="store_true", help="run every trial to its last epoch")
    parser.add_argument(
        "--grace-period",
        type=flag(int, ge=1, le=100_000),
        default=1,
        help="epochs before a trial may stop (default 1)",
    )
    parser.add_argument(
        "--reduction-factor",
        type=flag(float, gt=1.0, le=1000.0),
        default=3,
        help="ASHA reduction factor: a trial below the top 1/F at a rung stops (default 3: on the "
        "recorded benchmark it saved more epochs than 2 at the same hypervolume)",
    )
    parser.add_argument("--cpus-per-trial", type=flag(float, gt=0.0, le=4096.0), default=1)
    parser.add_argument(
        "--gpus-per-trial",
        type=flag(float, ge=0.0, le=1024.0),
        help="GPUs each trial reserves, fractions allowed (default: scaling.use_gpu x workers); "
        "a multi-worker trial splits them over its workers; a trial with none never sees a GPU",
    )
    parser.add_argument(
        "--seed", type=flag(int, ge=0, le=SEED_MAX), default=0, help="sampler seed (default 0)"
    )
    parser.add_argument(
        "--max-failures",
        type=flag(int, ge=-1, le=1000),
        default=0,
        help="retry a trial whose process or node died this many times, from its last checkpoint "
        "(-1: forever; default 0)",
    )
    parser.add_argument("--no-report", action="store_true", help="skip the HTML/Markdown report")
    parser.add_argument(
        "--logger",
        type=flag(validator=_logger_names),
        help="experiment tracking, comma-separated: none | tensorboard | mlflow | wandb "
        "(default: the config's logger=; MLflow to <storage>/<experiment>/mlflow.db, W&B offline)",
    )
    parser.add_argument(
        "--dashboard", action="store_true", help="start the Ray dashboard on 127.0.0.1 and print its URL"
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="stream every trial's output and Tune's status (default: a live trial table; "
        "trial output in <trial dir>/stdout and stderr)",
    )
    parser.add_argument(
        "--smoke-test",
        action="store_true",
        help="tiny search for CI: preset=smoke, search_space=smoke unless given, a teacher trained first if none",
    )
    parser.set_defaults(func=_run)


def _split(args: list[str]) -> tuple[str | None, list[str]]:
    from geodistill.errors import ConfigError

    space, overrides = None, []
    for arg in args:
        if arg.startswith("search_space="):
            if space is not None:
                raise ConfigError("search_space= given twice")
            space = arg.split("=", 1)[1]
            if not space:
                raise ConfigError("search_space= needs a name or a path")
        elif "=" in arg:
            overrides.append(arg)
        else:
            raise ConfigError(f"expected search_space=NAME or key=value, got {arg!r}")
    return space, overrides


def _check_cluster_auth(address: str | None) -> None:
    """The cluster this search will join (as ``run_search`` picks it) accepts our credentials."""
    from geodistill.platform.runtime.ray_local import check_cluster_auth, resolve_address

    target = resolve_address(address)
    if target is not None:
        check_cluster_auth(target)


def _run(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime
    from pathlib import Path

    from geodistill.errors import ConfigError

    space, overrides = _split(args.args)
    if args.smoke_test:
        space = space or "smoke"
        overrides = ["preset=smoke", *overrides]
    if space is None:
        raise ConfigError("search_space=NAME is required (a file in search_spaces/ or a path)")
    from geodistill.platform.search.space import load_space, resolve_space

    name = Path(resolve_space(space)).stem
    experiment = args.experiment or f"{name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"

    from geodistill.leaderboard import Leaderboard, default_root
    from geodistill.platform.compose import compose_run_config
    from geodistill.platform.search import format_pareto, resolve_storage, run_search, train_teacher_for

    # One validation pass before Ray starts or a teacher trains: the base config and every
    # bound and choice of the space composed against it, then the leaderboard's root.
    base = compose_run_config(overrides).to_dict()
    loaded = load_space(space, base=base)
    Leaderboard(args.leaderboard or default_root()).check_writable(experiment)  # before any training
    _check_cluster_auth(args.address)  # before any training, too: a token-auth head says so at once
    teacher = args.teacher
    if args.smoke_test and teacher is None:
        from geodistill.platform.search.space import first_assignment, trial_config

        if trial_config(loaded, first_assignment(loaded), base=base).stage == "student":
            root, local = resolve_storage(args.storage)
            if not local:
                raise ConfigError(
                    "--smoke-test trains its teacher locally: give --teacher with a URI --storage"
                )
            base["output_dir"] = str(Path(root) / experiment / "work")
            print(f"--smoke-test: training a tiny teacher first ({root}/{experiment}/teacher)")
            teacher = str(train_teacher_for(loaded, base, Path(root) / experiment / "teacher"))

    result = run_search(
        space,
        experiment=experiment,
        num_samples=args.num_samples,
        sampler=args.sampler,
        metric=args.metric,
        overrides=overrides,
        max_concurrent=args.max_concurrent,
        time_budget_s=args.time_budget,
        storage=args.storage,
        study_storage=args.study_storage,
        leaderboard=args.leaderboard,
        address=args.address,
        teacher=teacher,
        resume=args.resume,
        early_stopping=not args.no_early_stopping,
        grace_period=args.grace_period,
        reduction_factor=args.reduction_factor,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        seed=args.seed,
        verbose=2 if args.verbose else 1,
        loggers=args.logger,
        dashboard=args.dashboard,
        max_failures=args.max_failures,
    )
    metric = args.metric or load_space(space).metric
    counts = result.rows.group_by("status").len().sort("status").iter_rows() if result.rows.height else []
    summary = ", ".join(f"{status} {n}" for status, n in counts)
    print(f"\nexperiment {result.experiment}: {result.rows.height} leaderboard rows ({summary})")
    print(f"  leaderboard  {result.leaderboard_root}")
    print(f"  tune state   {result.experiment_path}")
    print(f"  optuna study {result.study_url}  (optuna-dashboard {result.study_url})")
    print(f"\nPareto set ({metric} up, GFLOPs per query down):")
    print(format_pareto(result.pareto, metric=metric) if result.pareto.height else "  (no finished trial)")
    if not args.no_report and result.pareto.height and "://" not in result.experiment_path:
        from geodistill.leaderboard import Leaderboard
        from geodistill.leaderboard.report import write_report

        # The whole board, not just this search's rows: the teacher's row may be in another experiment.
        paths = write_report(
            Leaderboard(result.leaderboard_root),
            Path(result.experiment_path) / "report",
            experiment=result.experiment,
            metric=metric,
        )
        print(f"\nreport: {paths.get('html')}")
    if result.interrupted:
        print(
            f"geodistill search: interrupted; continue with --experiment {result.experiment} --resume",
            file=sys.stderr,
        )
        return 130
    return 0


def _logger_names(text: str) -> None:
    """--logger: comma-separated names, each one of LOGGERS."""
    from geodistill.errors import ConfigError
    from geodistill.train.config import LOGGERS

    for name in (part.strip() for part in text.split(",")):
        if name not in LOGGERS:
            raise ConfigError(f"must be one of {', '.join(LOGGERS)} (comma-separated); got {name!r}")

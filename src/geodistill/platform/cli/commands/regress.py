"""`geodistill regress`: gate CI on a baseline file, or on another experiment's Pareto front."""

from __future__ import annotations

import argparse

from geodistill.platform.cli.flags import add_data_flag, add_leaderboard_flag, flag


def METRICS() -> tuple[str, ...]:  # noqa: N802 - a lazy constant: the leaderboard's metric columns
    from geodistill.eval.names import METRIC_KEYS

    return METRIC_KEYS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "regress",
        help="check checkpoints against a baseline YAML, or an experiment's front against another's",
        description=(
            "With --baseline: load each checkpoint the YAML names (sha256-checked, weights-only), compare "
            "golden descriptors, cost and retrieval metrics with the expected values, print the table, write "
            "stage=baseline rows to the leaderboard. With --against: compare EXPERIMENT's Pareto front "
            "(metric vs GFLOPs) with the reference experiment's, point by point and by hypervolume. "
            "Exit 1 on any regression, 2 on a user error, 0 otherwise."
        ),
    )
    parser.add_argument(
        "--baseline",
        metavar="NAME|FILE.yaml",
        type=flag(kind="text"),
        help="baseline (checkpoints, dataset, expectations): a packaged name (video2bev_univ, "
        "example_student), one in --config-dir DIR/baseline/, or a path to a YAML file",
    )
    parser.add_argument(
        "--config-dir",
        type=flag(kind="in_dir"),
        help="extra config tree searched before the packaged one (DIR/baseline/NAME.yaml)",
    )
    add_data_flag(parser, "dataset root (overrides dataset.root of the baseline)")
    add_leaderboard_flag(parser)
    parser.add_argument("--no-write", action="store_true", help="do not write rows to the leaderboard")
    parser.add_argument("--write-golden", action="store_true", help="(re)create the golden descriptor files")
    parser.add_argument(
        "--experiment",
        type=flag(kind="name"),
        help="experiment of the rows written (--baseline) or to check (--against)",
    )
    parser.add_argument(
        "--against",
        metavar="EXPERIMENT",
        type=flag(kind="name"),
        help="reference experiment whose front must not be beaten",
    )
    parser.add_argument(
        "--metric",
        default="d2s_recall1",
        type=flag(choices=METRICS),
        help="metric for --against (default d2s_recall1)",
    )
    parser.add_argument(
        "--tol",
        type=flag(float, ge=0.0, le=100.0),
        default=0.3,
        help="points a front may fall for --against (default 0.3)",
    )
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.add_argument(
        "--smoke-test",
        action="store_true",
        help="build a tiny checkpoint, synthetic data and baseline in a temporary folder and gate on it",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from geodistill.errors import ConfigError
    from geodistill.leaderboard import Leaderboard
    from geodistill.leaderboard.regress import checks_json, compare_fronts, format_checks, gate
    from geodistill.platform.baseline import run_baseline

    if args.smoke_test:
        return _smoke(args)
    if bool(args.baseline) == bool(args.against):
        raise ConfigError("give exactly one of --baseline NAME|FILE.yaml or --against EXPERIMENT")
    board = Leaderboard(args.leaderboard)
    if args.baseline:
        result = run_baseline(
            args.baseline,
            data=args.data,
            leaderboard=None if args.no_write or args.write_golden else board,
            write_golden=args.write_golden,
            experiment=args.experiment,
            config_dir=args.config_dir,
        )
        checks = result.checks
        written = not (args.no_write or args.write_golden)
        footer = f"{len(result.rows)} row(s) written to {board.root}" if written else "no rows written"
    else:
        if not args.experiment:
            raise ConfigError("--against needs --experiment (the experiment to check)")
        frame = board.read()
        checks = compare_fronts(frame, args.experiment, args.against, metric=args.metric, tol=args.tol)
        footer = f"{args.experiment} against {args.against} on {args.metric} vs gflops"
    print(checks_json(checks) if args.json else format_checks(checks))
    if not args.json:
        print(footer)
    gate(checks)
    return 0


def _smoke(args: argparse.Namespace) -> int:
    import tempfile

    from geodistill.leaderboard import Leaderboard
    from geodistill.leaderboard.regress import format_checks, gate
    from geodistill.platform.baseline import run_baseline, smoke_baseline

    with tempfile.TemporaryDirectory(prefix="geodistill-regress-smoke-") as tmp:
        baseline = smoke_baseline(tmp)
        board = Leaderboard(args.leaderboard or f"{tmp}/leaderboard")
        result = run_baseline(baseline, leaderboard=board)
        print(format_checks(result.checks))
        print(f"smoke test: {len(result.rows)} row(s) written to {board.root}")
        gate(result.checks)
    return 0

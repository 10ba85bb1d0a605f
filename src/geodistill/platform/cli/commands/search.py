"""`geodistill search search_space=NAME [key=value ...]`: multi-objective Ray Tune + Optuna search.

The flags are generated from ``platform.search.options.SearchOptions`` (one default and one
help text per setting); the handler parses and makes one call, ``console.search_command``.
"""

from __future__ import annotations

import argparse

from geodistill.platform.cli.flags import add_setting_flags, flag, settings_from_args
from geodistill.platform.search.options import SearchOptions


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "search",
        help="search a space with Ray Tune + Optuna: precision up, GFLOPs per query down",
        description=(
            "Runs one trial per sampled config (stage 2 against a cached teacher by default), "
            "early-stops weak trials (ASHA), writes one leaderboard row per trial and prints the "
            "Pareto set. search_space= is a packaged space (demo, distill, pfed, pretrained, smoke, "
            "views_fps), one in --config-dir DIR/search_space/, or a path to a YAML file; key=value "
            "are Hydra overrides of the base run config. Runs unchanged as `ray job submit ... -- geodistill search ...`."
        ),
    )
    parser.add_argument(
        "args",
        nargs="*",
        metavar="search_space=NAME | key=value",
        help="the space (a packaged name or a YAML file) and config overrides for every trial",
    )
    add_setting_flags(parser, SearchOptions)
    parser.add_argument("--no-report", action="store_true", help="skip the HTML/Markdown report")
    parser.add_argument(
        "--write-replay-table",
        metavar="FILE.parquet",
        type=flag(kind="out_file"),
        default=None,
        help="after the search (or with --resume of a finished one), write its trials' per-epoch "
        "history as a table --replay answers from",
    )
    parser.add_argument(
        "--smoke-test",
        action="store_true",
        help="tiny search for CI: preset=smoke, search_space=smoke unless given, a teacher trained first if none",
    )
    parser.add_argument(
        "--config-dir",
        type=flag(kind="in_dir"),
        help="extra config tree searched before the packaged one (DIR/search_space/NAME.yaml, DIR/model/...)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from geodistill.platform.search.console import search_command

    options = settings_from_args(SearchOptions, args)
    return search_command(
        args.args,
        options,
        smoke_test=args.smoke_test,
        report=not args.no_report,
        config_dir=args.config_dir,
        replay_table=args.write_replay_table,
    )

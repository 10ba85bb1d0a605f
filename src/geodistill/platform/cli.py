"""The ``geodistill`` console script.

Each subcommand lives in ``geodistill.platform.commands.<name>`` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``. Keeping the
commands in separate modules keeps start-up fast (heavy imports happen inside ``func``) and
lets each layer own its command.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

from geodistill import __version__
from geodistill.errors import RegressionFailure, UserError

# Order is the order shown in --help.
COMMAND_MODULES = [
    "data",
    "profile",
    "train",
    "eval",
    "export",
    "search",
    "cluster",
    "leaderboard",
    "report",
    "regress",
    "demo",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geodistill",
        description="Cross-view drone geo-localization: distil, search, benchmark, report.",
    )
    parser.add_argument("--version", action="version", version=f"geodistill {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module_name = f"geodistill.platform.commands.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    debug = os.environ.get("GEODISTILL_DEBUG") == "1"
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        if debug:
            raise
        print(f"geodistill {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except RegressionFailure as err:
        print(f"geodistill {args.command}: REGRESSION: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"geodistill {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

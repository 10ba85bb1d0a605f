"""The ``geodistill`` console script.

Each subcommand lives in ``geodistill.platform.cli.commands.<name>`` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``. Keeping the
commands in separate modules keeps start-up fast (heavy imports happen inside ``func``) and
lets each layer own its command.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import os
import sys

from geodistill import __version__
from geodistill.errors import RegressionFailure, UserError
from geodistill.platform.cli.flags import OneLineParser

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
    parser = OneLineParser(
        prog="geodistill",
        description="Cross-view drone geo-localization: distil, search, benchmark, report.",
    )
    parser.add_argument("--version", action="version", version=f"geodistill {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module_name = f"geodistill.platform.cli.commands.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        importlib.import_module(module_name).register(sub)
    return parser


@contextlib.contextmanager
def _one_line_warnings(command: str):
    """geodistill's own warnings (e.g. a file in the leaderboard root it cannot read) as one stderr
    line each, ``geodistill <command>: warning: ...``; other libraries' warnings keep their format."""
    import warnings

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if category.__module__.startswith("geodistill"):
            print(f"geodistill {command}: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():  # restores showwarning; a new scope re-shows each file once per command
        warnings.showwarning = show
        yield


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # every flag's declared type and range is checked here
    except SystemExit as exit_:  # a bad flag (one line already printed), --help, --version
        return exit_.code if isinstance(exit_.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    debug = os.environ.get("GEODISTILL_DEBUG") == "1"
    try:
        with _one_line_warnings(args.command):
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

"""`geodistill leaderboard show|compact`: read the leaderboard, or merge its small files."""

from __future__ import annotations

import argparse

from geodistill.platform.cli.flags import add_leaderboard_flag, flag

DEFAULT_SHOW = (
    "experiment",
    "trial_id",
    "stage",
    "status",
    "backbone",
    "views",
    "dataset_fps",
    "d2s_recall1",
    "d2s_ap",
    "s2d_recall1",
    "gflops",
    "params_m",
)
SORT_ALIASES = {"recall@1": "d2s_recall1", "r@1": "d2s_recall1", "ap": "d2s_ap"}
LOWER_IS_BETTER = {"gflops", "gmacs", "params_m", "latency_ms", "loss", "created_at"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "leaderboard", help="show: print the leaderboard; compact: merge its small files"
    )
    sub = parser.add_subparsers(dest="leaderboard_command", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="print rows (deduplicated by row_key, latest wins)")
    add_leaderboard_flag(show, "--root", "--leaderboard", dest="root")
    show.add_argument("--experiment", type=flag(kind="name"), help="only this experiment")
    show.add_argument(
        "--sort",
        default="d2s_recall1",
        type=flag(kind="text"),
        help="column to sort by, best first (default d2s_recall1; recall@1 and ap are accepted)",
    )
    show.add_argument("--top", type=flag(int, ge=1, le=10**9), help="only the first N rows")
    show.add_argument(
        "--columns",
        type=flag(kind="text"),
        help="comma-separated columns (default: a summary; 'all' for every column)",
    )
    show.add_argument(
        "--format",
        type=flag(choices=("table", "csv", "json", "md")),
        default="table",
        help="table (default), csv, json (a list of row objects) or md (a Markdown table)",
    )
    show.set_defaults(func=_show)
    compact = sub.add_parser(
        "compact", help="merge each experiment's files into one (atomic, keeps every row)"
    )
    add_leaderboard_flag(compact, "--root", "--leaderboard", dest="root")
    compact.add_argument("--experiment", type=flag(kind="name"), help="only this experiment (default: all)")
    compact.set_defaults(func=_compact)


def _open(root: str | None):
    """The leaderboard at ``root``; a local root that does not exist is one line naming it and
    how to point at another (not an empty table: after `make demo` the rows are in demo_out)."""
    from pathlib import Path

    from geodistill.errors import UserError
    from geodistill.leaderboard import Leaderboard

    board = Leaderboard(root)
    if board.local and not Path(board.base).is_dir():
        raise UserError(
            f"no leaderboard at {board.root} ({board.base}); point at one with --leaderboard DIR "
            "or $GEODISTILL_LEADERBOARD (the demo writes demo_out/leaderboard)"
        )
    return board


def _select(args: argparse.Namespace):
    import polars as pl

    from geodistill.errors import ConfigError
    from geodistill.leaderboard import COLUMNS

    frame = _open(args.root).read(args.experiment)
    sort = SORT_ALIASES.get(args.sort.lower(), args.sort)
    if sort not in COLUMNS:
        raise ConfigError(f"unknown --sort column {args.sort!r}; columns: {', '.join(COLUMNS)}")
    if args.columns == "all":
        columns = list(COLUMNS)
    elif args.columns:
        columns = [c.strip() for c in args.columns.split(",") if c.strip()]
        unknown = [c for c in columns if c not in COLUMNS]
        if unknown:
            raise ConfigError(f"unknown column(s) {', '.join(unknown)}")
    else:
        columns = list(DEFAULT_SHOW)
        if sort not in columns:
            columns.append(sort)
    if args.top is not None and args.top < 1:
        raise ConfigError(f"--top must be at least 1, got {args.top}")
    frame = frame.sort(sort, descending=sort not in LOWER_IS_BETTER, nulls_last=True)
    if args.top is not None:
        frame = frame.head(args.top)
    return frame.select(columns).with_columns(pl.col(pl.Datetime).dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ"))


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 0.1 or value == 0 else f"{value:.4g}"
    return str(value)


def _show(args: argparse.Namespace) -> int:
    import os
    import sys

    try:
        return _print(_select(args), args.format)
    except BrokenPipeError:  # `geodistill leaderboard show | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _print(frame, fmt: str) -> int:
    import json

    if fmt == "csv":
        print(frame.write_csv(), end="")
        return 0
    if fmt == "json":
        print(json.dumps(frame.to_dicts(), indent=2))
        return 0
    headers = frame.columns
    rows = [[_cell(v) for v in row] for row in frame.iter_rows()]
    if fmt == "md":
        print("| " + " | ".join(headers) + " |")
        print("|" + "---|" * len(headers))
        for r in rows:
            print("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
        return 0
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return 0


def _compact(args: argparse.Namespace) -> int:
    board = _open(args.root)
    names = [args.experiment] if args.experiment else board.experiments()
    for name in names:
        merged, kept = board.compact(name)
        print(f"{name}: {merged} file(s) -> {1 if merged else 0}, {kept} row(s)")
    if not names:
        print(f"{board.root}: no experiments")
    return 0

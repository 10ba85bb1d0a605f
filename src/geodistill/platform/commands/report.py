"""`geodistill report`: the Pareto report (HTML + Markdown + plots) of the leaderboard."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write the precision-vs-efficiency report (self-contained HTML, Markdown, PNG/SVG plots)",
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--root", "--leaderboard", dest="root", help="leaderboard root (default runs/leaderboard)"
    )
    parser.add_argument("--experiment", help="only this experiment (default: every row)")
    parser.add_argument(
        "--metric", default="d2s_recall1", help="y axis: d2s_recall1 (default), d2s_ap, s2d_..."
    )
    parser.add_argument("--anchors", help="published reference points YAML (default baselines/anchors.yaml)")
    parser.add_argument("--no-anchors", action="store_true", help="leave the published points out")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from geodistill.leaderboard import Leaderboard
    from geodistill.leaderboard.report import write_report

    anchors = None if args.no_anchors else (args.anchors or "default")
    paths = write_report(
        Leaderboard(args.root), args.out, experiment=args.experiment, metric=args.metric, anchors=anchors
    )
    print(f"report: {paths['html']}")
    print(f"summary: {paths['md']}")
    print("plots: " + ", ".join(str(p.name) for k, p in paths.items() if k.endswith(("_png", "_svg"))))
    return 0

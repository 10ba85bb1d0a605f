"""`geodistill report`: the Pareto report (HTML + Markdown + plots) of the leaderboard."""

from __future__ import annotations

import argparse

from geodistill.platform.cli.flags import add_leaderboard_flag, flag


def METRICS() -> tuple[str, ...]:  # noqa: N802 - a lazy constant: the leaderboard's metric columns
    from geodistill.eval.names import METRIC_KEYS

    return METRIC_KEYS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write the precision-vs-efficiency report (self-contained HTML, Markdown, PNG/SVG plots)",
    )
    parser.add_argument("--out", required=True, type=flag(kind="out_dir"), help="output directory")
    add_leaderboard_flag(parser, "--root", "--leaderboard", dest="root")
    parser.add_argument(
        "--experiment", type=flag(kind="name"), help="only this experiment (default: every row)"
    )
    parser.add_argument(
        "--metric",
        default="d2s_recall1",
        type=flag(choices=METRICS),
        help="y axis: d2s_recall1 (default), d2s_ap, s2d_...",
    )
    parser.add_argument(
        "--anchors",
        metavar="NAME|FILE.yaml",
        type=flag(kind="text"),
        help="published reference points: a packaged name (default university1652) or a YAML path",
    )
    parser.add_argument("--no-anchors", action="store_true", help="leave the published points out")
    parser.add_argument(
        "--smoke-test",
        action="store_true",
        help="report on a few synthetic rows (in a temporary leaderboard)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import tempfile

    from geodistill.leaderboard import Leaderboard
    from geodistill.leaderboard.report import write_report

    anchors = None if args.no_anchors else (args.anchors or "default")
    with tempfile.TemporaryDirectory(prefix="geodistill-report-smoke-") as tmp:
        board = _smoke_board(tmp) if args.smoke_test else Leaderboard(args.root)
        paths = write_report(board, args.out, experiment=args.experiment, metric=args.metric, anchors=anchors)
    print(f"report: {paths['html']}")
    print(f"summary: {paths['md']}")
    print("plots: " + ", ".join(str(p.name) for k, p in paths.items() if k.endswith(("_png", "_svg"))))
    return 0


def _smoke_board(folder: str):
    """Twelve synthetic student rows (3 backbones x 2 views x 2 fps) and one failed trial."""
    from geodistill.leaderboard import Leaderboard, make_row

    board = Leaderboard(folder)
    rows = [
        make_row(
            experiment="report-smoke",
            trial_id=f"{backbone}-v{views}-f{fps}",
            stage="student",
            backbone=backbone,
            views=views,
            dataset_fps=fps,
            d2s_recall1=base + 6 * views + fps,
            d2s_ap=base + 5 * views,
            gflops=per_frame * views,
        )
        for backbone, per_frame, base in (
            ("resnet18", 1.0, 40.0),
            ("vit_tiny", 2.0, 50.0),
            ("convnext_atto", 0.5, 30.0),
        )
        for views in (1, 4)
        for fps in (2, 5)
    ]
    rows.append(make_row(experiment="report-smoke", trial_id="failed", stage="student", status="failed"))
    board.write(rows)
    return board

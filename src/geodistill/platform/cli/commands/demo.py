"""`geodistill demo`: the main job end to end on local Ray (what `make demo` runs)."""

from __future__ import annotations

import argparse

from geodistill.platform.cli.flags import flag
from geodistill.schema import SEED_MAX


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="synthesise a UniV set, train a teacher, search distilled students, write the Pareto report",
        description=(
            "Runs the platform's main job on this machine: a synthetic UniV-layout dataset, a stage-1 "
            "teacher, a multi-objective distillation search on local Ray (Recall@1 up, GFLOPs down, "
            "early stopping), every trial on the leaderboard, and the Pareto report (timings: the demo "
            "section of docs/evidence.md); --smoke-test is the short version. Re-running reuses the dataset, "
            "the teacher and finished trials in --out."
        ),
    )
    parser.add_argument(
        "--out", default="demo_out", type=flag(kind="out_dir"), help="output directory (default demo_out)"
    )
    parser.add_argument(
        "--seed",
        type=flag(int, ge=0, le=SEED_MAX),
        default=0,
        help="seed of the dataset, the training runs and the sampler (default 0)",
    )
    parser.add_argument(
        "--address",
        default=None,
        type=flag(kind="text"),
        help="Ray cluster address (default: a local head on 127.0.0.1)",
    )
    parser.add_argument(
        "--smoke-test", action="store_true", help="the shrunk version CI runs (12 places, 3 trials)"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from geodistill.platform.demo_pipeline import FULL, SMOKE, run_demo

    run_demo(args.out, plan=SMOKE if args.smoke_test else FULL, seed=args.seed, address=args.address)
    return 0

"""`geodistill data synth|check`: write a synthetic UniV, or check a dataset on disk."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="generate a synthetic UniV or check a dataset")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    synth = sub.add_parser("synth", help="write a synthetic UniV dataset (frames or mp4 videos)")
    synth.add_argument("--out", required=True, help="output directory")
    synth.add_argument("--buildings", type=int, default=40, help="train + test places (default 40)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--video", choices=["frames", "mp4"], default="frames", help="drone flight storage")
    synth.add_argument("--img-size", type=int, default=128, help="satellite tile px (frames are 3/4 of it)")
    synth.add_argument(
        "--clouds",
        type=float,
        default=0.0,
        help="chance in [0, 1] that a drone frame has a cloud over it (default 0)",
    )
    synth.add_argument("--quiet", action="store_true", help="no progress bar (none is drawn off a terminal)")
    synth.set_defaults(func=_synth)

    check = sub.add_parser("check", help="decode every file of a UniV/University-1652 dataset")
    check.add_argument("root", help="dataset directory")
    check.add_argument("--quiet", action="store_true", help="no progress bar (none is drawn off a terminal)")
    check.set_defaults(func=_check)


def _synth(args: argparse.Namespace) -> int:
    import json
    import time

    from geodistill.data.synth import generate_univ
    from geodistill.errors import DataError

    if args.buildings < 2:
        raise DataError(f"--buildings must be at least 2, got {args.buildings}")
    if not 0.0 <= args.clouds <= 1.0:
        raise DataError(f"--clouds must be between 0 and 1, got {args.clouds}")
    if args.img_size < 16:
        raise DataError(f"--img-size must be at least 16, got {args.img_size}")
    from geodistill.platform.progress import console_progress

    start = time.perf_counter()
    with console_progress(quiet=args.quiet) as progress:
        out = generate_univ(
            args.out,
            buildings=args.buildings,
            seed=args.seed,
            video=args.video,
            img_size=args.img_size,
            clouds=args.clouds,
            progress=progress,
        )
    split = json.loads((out / "dataset_split.json").read_text())
    print(f"wrote synthetic UniV to {out} in {time.perf_counter() - start:.1f}s")
    print(
        f"  {len(split['train'])} train + {len(split['test'])} test buildings + {len(split['distractors'])} "
        f"gallery distractors; elevations 30/45 at 2/5/10 fps; drone as {args.video}; "
        f"satellite {split['img_size']}px, frames {split['frame_size']}px; seed {args.seed}"
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    from geodistill.data.check import check_dataset
    from geodistill.platform.progress import console_progress

    with console_progress(quiet=args.quiet) as progress:
        report = check_dataset(args.root, progress=progress)
    print(f"{report.root}: {report.kind}, {report.files_checked} files decoded")
    print(report.table())
    if report.missing_views:
        shown = report.missing_views[:10]
        more = len(report.missing_views) - len(shown)
        print(
            f"missing views ({len(report.missing_views)}): "
            + "; ".join(shown)
            + (f"; +{more} more" if more else "")
        )
    else:
        print("missing views: none")
    return 0

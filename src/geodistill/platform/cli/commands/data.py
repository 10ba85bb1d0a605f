"""`geodistill data synth|check`: write a synthetic UniV, or check a dataset on disk."""

from __future__ import annotations

import argparse

from geodistill.platform.cli.flags import flag
from geodistill.schema import SEED_MAX

LAYOUTS = ("organized", "archive")  # geodistill.data.synth.LAYOUTS (not imported: numpy, PIL)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data", help="synth: a synthetic UniV; check: decode and count a dataset; organize: a UniV as shipped"
    )
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    synth = sub.add_parser("synth", help="write a synthetic UniV dataset (frames or mp4 videos)")
    synth.add_argument("--out", required=True, type=flag(kind="out_dir"), help="output directory")
    synth.add_argument(
        "--buildings", type=flag(int, ge=2, le=100_000), default=40, help="train + test places (default 40)"
    )
    synth.add_argument(
        "--seed", type=flag(int, ge=0, le=SEED_MAX), default=0, help="random seed of the scenes (default 0)"
    )
    synth.add_argument(
        "--video", type=flag(choices=("frames", "mp4")), default="frames", help="drone flight storage"
    )
    synth.add_argument(
        "--img-size",
        type=flag(int, ge=16, le=4096),
        default=128,
        help="satellite tile px (frames are 3/4 of it)",
    )
    synth.add_argument(
        "--clouds",
        type=flag(float, ge=0.0, le=1.0),
        default=0.0,
        help="chance in [0, 1] that a drone frame has a cloud over it (default 0)",
    )
    synth.add_argument(
        "--layout",
        type=flag(choices=LAYOUTS),
        default="organized",
        help="organized (default) or archive: as the UniV archive ships, without test/query_* "
        "(what `data organize` fixes)",
    )
    synth.add_argument("--quiet", action="store_true", help="no progress bar (none is drawn off a terminal)")
    synth.set_defaults(func=_synth)

    check = sub.add_parser("check", help="decode every file of a UniV/University-1652 dataset")
    check.add_argument(
        "root", type=flag(kind="text"), help="dataset directory"
    )  # check_dataset names what is wrong
    check.add_argument("--quiet", action="store_true", help="no progress bar (none is drawn off a terminal)")
    check.set_defaults(func=_check)

    organize = sub.add_parser(
        "organize",
        help="create a shipped UniV's test/query_* folders and lend 45/2fps's views (hard links)",
        description=(
            "The UniV archive ships only test/gallery_*: this does what its organize_univ.py does. "
            "For the query buildings listed in dataset_split.json it links test/gallery_<view>/<id> "
            "to test/query_<view>/<id> (drone in every subset; satellite and street under 45/2fps), "
            "and links 45/2fps's satellite/street/google folders into the other subsets. Existing "
            "folders are left alone, so running it twice is harmless."
        ),
    )
    organize.add_argument("root", type=flag(kind="text"), help="UniV root (holds 30/ and 45/)")
    organize.add_argument(
        "--split",
        type=flag(kind="in_file"),
        help="JSON with the query building ids (default ROOT/dataset_split.json)",
    )
    organize.set_defaults(func=_organize)


def _synth(args: argparse.Namespace) -> int:
    import json
    import time

    from geodistill.data.synth import generate_univ
    from geodistill.errors import DataError
    from geodistill.platform.cli.progress import console_progress

    start = time.perf_counter()  # the flags' types checked every value, --out included
    try:
        with console_progress(quiet=args.quiet) as progress:
            out = generate_univ(
                args.out,
                buildings=args.buildings,
                seed=args.seed,
                video=args.video,
                img_size=args.img_size,
                clouds=args.clouds,
                layout=args.layout,
                progress=progress,
            )
    except OSError as err:  # the disk filled up, or permissions changed under us
        raise DataError(f"cannot write the synthetic UniV to {args.out}: {err}") from None
    split = json.loads((out / "dataset_split.json").read_text())
    print(f"wrote synthetic UniV to {out} in {time.perf_counter() - start:.1f}s")
    print(
        f"  {len(split['train'])} train + {len(split['test'])} test buildings + {len(split['distractors'])} "
        f"gallery distractors; elevations 30/45 at 2/5/10 fps; drone as {args.video}; "
        f"satellite {split['img_size']}px, frames {split['frame_size']}px; seed {args.seed}"
    )
    if args.layout == "archive":
        print(f"  layout as shipped (no test/query_*): run `geodistill data organize {out}` before use")
    return 0


def _check(args: argparse.Namespace) -> int:
    from geodistill.data.check import check_dataset
    from geodistill.errors import CorruptMediaError
    from geodistill.platform.cli.progress import console_progress

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
    if report.corrupt:
        print(f"corrupt files ({len(report.corrupt)} of {report.files_checked}):")
        for line in report.corrupt:
            print(f"  {line}")
        names = "; ".join(str(p) for p in report.corrupt_files)
        raise CorruptMediaError(f"{len(report.corrupt)} corrupt file(s) in {report.root}: {names}")
    print("corrupt files: none")
    return 0


def _organize(args: argparse.Namespace) -> int:
    from geodistill.data.organize import organize_univ

    report = organize_univ(args.root, split_file=args.split)
    linked = f"{report.files_linked} file(s) linked" + (
        f", {report.files_copied} copied" if report.files_copied else ""
    )
    print(
        f"{report.root}: {report.query_buildings} query buildings; {len(report.created)} folder(s) created, {linked}"
    )
    for folder in report.created:
        print(f"  + {folder}")
    if not report.created:
        print("  already organised: nothing to do")
    return 0

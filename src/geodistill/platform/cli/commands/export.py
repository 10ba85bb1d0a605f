"""`geodistill export`: a trained student's encoder(s) in timm's layout, for use outside geodistill."""

from __future__ import annotations

import argparse

from geodistill.platform.cli.flags import flag


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a checkpoint's encoder(s) as timm models plus a self-contained descriptor.pt2",
        description=(
            "Writes the encoder of a geodistill checkpoint (or run dir: its latest epoch) with timm's "
            "save_for_hf: model.safetensors + config.json (architecture, model_args, pretrained_cfg with "
            "the training input size and normalisation). Load it with "
            "timm.create_model('local-dir:DIR', pretrained=True). Where timm's head pools as the model "
            "did (ViT class token, ResNet/EfficientNet mean), F.normalize(model(x)) is the one-pass "
            "descriptor; otherwise (ConvNeXt, GeM, LPN) the timm encoder is headless. For every "
            "backbone DIR/descriptor.pt2 is the descriptor the leaderboard evaluated (flip TTA "
            "included) in one file: torch.export.load('DIR/descriptor.pt2').module()(x), with "
            "neither geodistill nor timm installed. Separate drone/satellite encoders go to DIR/drone "
            "and DIR/satellite."
        ),
    )
    parser.add_argument(
        "checkpoint",
        metavar="RUN_OR_CHECKPOINT",
        type=flag(kind="in_path"),
        help="run dir, checkpoint dir or .safetensors",
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", type=flag(kind="out_dir"), help="output folder"
    )
    parser.add_argument(
        "--hub",
        metavar="REPO",
        type=flag(kind="text"),
        help="also push to the Hugging Face Hub (timm's push_to_hf_hub)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of lines")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from safetensors import SafetensorError

    from geodistill.errors import CheckpointError, UserError
    from geodistill.models.export import export_encoders
    from geodistill.train.checkpoint import load_checkpoint

    model, _ = load_checkpoint(args.checkpoint)
    out = Path(args.out)
    if out.is_file():
        raise UserError(f"--out {out} is a file; give a folder")
    try:
        exported = export_encoders(model, out, hub_repo=args.hub)
    except (
        OSError,
        SafetensorError,
    ) as err:  # read-only or full disk (safetensors' own error), the Hub refusing
        raise CheckpointError(f"export to {args.hub or out} failed: {str(err).splitlines()[0]}") from None
    rows = [
        {
            "view": e.view,
            "path": str(e.path),
            "architecture": e.architecture,
            "descriptor_head": e.descriptor_head,
            "max_abs_diff": e.max_abs_diff,
            "program": str(e.program),
            "program_max_abs_diff": e.program_max_abs_diff,
        }
        for e in exported
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        what = (
            "F.normalize(model(x)) is the descriptor"
            if r["descriptor_head"]
            else "headless: timm's head norms after pooling, the descriptor is descriptor.pt2's"
        )
        print(f"{r['view']}: {r['path']} ({r['architecture']}; {what}; checked to {r['max_abs_diff']:.1e})")
        print(
            f"{r['view']}: {r['program']} (the evaluated descriptor, flip TTA included; "
            f"checked to {r['program_max_abs_diff']:.1e})"
        )
    print(f"load with: timm.create_model('local-dir:{exported[0].path}', pretrained=True)")
    print(f"descriptors: torch.export.load('{exported[0].program}').module()(images)")
    return 0

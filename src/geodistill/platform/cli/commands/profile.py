"""`geodistill profile`: parameters, GFLOPs/GMACs and latency of a model per drone query."""

from __future__ import annotations

import argparse

from geodistill.platform.cli.flags import flag


def _known_backbone(name: str) -> None:
    from geodistill.models import get_spec

    get_spec(name)


def _refiners() -> tuple[str, ...]:
    from geodistill.models import REFINERS

    return REFINERS


def _poolings() -> tuple[str, ...]:
    from geodistill.models.heads import POOLINGS

    return POOLINGS


def _device_name(text: str) -> None:
    """A string torch can parse as a device ('cpu', 'cuda:0', 'mps'); usability is checked later."""
    import torch

    from geodistill.errors import ConfigError

    try:
        torch.device(text)
    except (RuntimeError, ValueError) as err:
        raise ConfigError(f"is not a torch device ({str(err).splitlines()[0]})") from None


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "profile",
        help="cost of a backbone per query: params, GFLOPs/GMACs (FlopCounterMode), latency",
        description=(
            "Cost of one drone query with V views (V x per-frame + refiner). FLOPs are counted with "
            "torch.utils.flop_counter.FlopCounterMode on the meta device; GMACs = GFLOPs / 2. "
            "'analytic' is the closed-form backbone MACs per frame (ViT, ConvNeXt, ResNet)."
        ),
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--backbone",
        default="vit_small",
        type=flag(validator=_known_backbone),
        help="an alias or any timm model name, optionally with a tag (default vit_small)",
    )
    which.add_argument("--all", action="store_true", help="profile every alias (a table)")
    parser.add_argument(
        "--img-size", type=flag(int, ge=8, le=4096), default=224, help="square input size in px (default 224)"
    )
    parser.add_argument(
        "--views", type=flag(int, ge=1, le=1024), default=1, help="frames per drone query (default 1)"
    )
    parser.add_argument(
        "--refiner",
        default="mean",
        type=flag(choices=_refiners),
        help="mean | attention | select | mi (default mean)",
    )
    parser.add_argument(
        "--refiner-k",
        type=flag(int, ge=1, le=1024),
        default=4,
        help="frames the select / mi refiners keep (default 4); with --views <= k they fall back to "
        "the mean and add no FLOPs",
    )
    parser.add_argument(
        "--pooling", default="avg", type=flag(choices=_poolings), help="token | avg | gem | lpn (default avg)"
    )
    parser.add_argument(
        "--embed-dim",
        type=flag(int, ge=1, le=65536),
        default=512,
        help="descriptor width of the embedding head (default 512, as model.embed_dim)",
    )
    parser.add_argument(
        "--batch-size", type=flag(int, ge=1, le=65536), default=8, help="queries per timed batch (default 8)"
    )
    parser.add_argument(
        "--device",
        default="cpu",
        type=flag(validator=_device_name),
        help="device for the latency measurement (default cpu)",
    )
    parser.add_argument(
        "--repeats", type=flag(int, ge=1, le=10_000), default=5, help="timed repeats after 2 warm-up runs"
    )
    parser.add_argument("--no-latency", action="store_true", help="count FLOPs only (nothing real runs)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--smoke-test", action="store_true", help="tiny run for CI: vit_tiny, 32 px, 2 views")
    parser.set_defaults(func=_run)


def _rows(args: argparse.Namespace) -> list[dict]:
    from dataclasses import asdict

    import torch

    from geodistill.errors import ConfigError, one_line
    from geodistill.models import BACKBONES, GeoModel, ModelConfig, get_spec
    from geodistill.models.cost import analytic_backbone_macs, profile

    for name, value, low in (("--img-size", args.img_size, 16), ("--views", args.views, 1)):
        if value < low:
            raise ConfigError(f"{name} must be at least {low}, got {value}")
    if args.batch_size < 1 or args.repeats < 1:
        raise ConfigError("--batch-size and --repeats must be at least 1")
    measure = not args.no_latency
    if measure:
        try:
            torch.empty(0, device=args.device)
        except (RuntimeError, AssertionError) as err:
            raise ConfigError(f"device {args.device!r} is not usable here: {one_line(err)}") from None
    names = list(BACKBONES) if args.all else [get_spec(args.backbone).name]
    rows = []
    for name in names:
        cfg = ModelConfig(
            backbone=name,
            img_size=args.img_size,
            embed_dim=args.embed_dim,
            pooling=args.pooling,
            refiner=args.refiner,
            refiner_k=args.refiner_k,
        )
        # Counting only: build on the meta device (no weights are initialised or allocated).
        with torch.device(args.device if measure else "meta"):
            model = GeoModel(cfg, num_classes=1)
        cost = profile(
            model,
            img_size=args.img_size,
            views=args.views,
            batch_size=args.batch_size,
            device=args.device,
            measure_latency=measure,
            repeats=args.repeats,
        )
        analytic = analytic_backbone_macs(model.drone_encoder, args.img_size)
        rows.append(
            {
                "backbone": name,
                "refiner": args.refiner,
                "refiner_k": args.refiner_k,
                "pooling": args.pooling,
                **asdict(cost),
                "batch_size": args.batch_size,
                "analytic_gmacs_per_frame": None if analytic is None else analytic / 1e9,
            }
        )
        del model
    return rows


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _run(args: argparse.Namespace) -> int:
    import json

    if args.smoke_test:
        args.backbone, args.all, args.img_size, args.views = "vit_tiny", False, 32, 2
        args.batch_size, args.repeats = 2, 1
    rows = _rows(args)
    if args.json:
        print(json.dumps(rows if args.all else rows[0], indent=2))
        return 0
    first = rows[0]
    keeps = f" keeping {first['refiner_k']}" if first["refiner"] in ("select", "mi") else ""
    print(
        f"cost per drone query: {first['views']} view(s) at {first['img_size']}px, refiner {first['refiner']}{keeps}, "
        f"pooling {first['pooling']}; FLOPs by {first['counter']}; latency on {first['device']} "
        f"at batch {first['batch_size']}"
    )
    w = max(18, *(len(r["backbone"]) for r in rows))  # any timm name, tag included
    header = f"{'backbone':<{w}} {'params M':>9} {'GFLOPs':>9} {'GMACs':>9} {'analytic/frame':>15} {'ms/query':>9} {'q/s':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['backbone']:<{w}} {r['params_m']:>9.2f} {r['gflops']:>9.3f} {r['gmacs']:>9.3f} "
            f"{_fmt(r['analytic_gmacs_per_frame'], '.3f'):>15} {_fmt(r['latency_ms'], '.2f'):>9} "
            f"{_fmt(r['throughput_qps'], '.1f'):>9}"
        )
    return 0

"""`geodistill eval`: evaluate a checkpoint (ours or a Video2BEV release) in both retrieval directions."""

from __future__ import annotations

import argparse

from geodistill.platform.cli.flags import add_data_flag, flag


def ELEVATIONS() -> tuple[int, ...]:  # noqa: N802 - lazy: importing geodistill.data imports torch
    from geodistill.data.index import ELEVATIONS as values

    return values


def FPS_CHOICES() -> tuple[int, ...]:  # noqa: N802 - lazy, as ELEVATIONS
    from geodistill.data.index import FPS_CHOICES as values

    return values


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint: drone->satellite and satellite->drone Recall@K and AP",
        description=(
            "Loads a geodistill checkpoint (a checkpoint dir, a run dir -> its latest epoch, or a bare "
            ".safetensors/.pth) or a Video2BEV release (--video2bev), evaluates the test split with the "
            "retrieval protocol, and prints the table. Views, fps, elevation and image size default to "
            "the checkpoint's training config; the dataset defaults to the one it was trained on."
        ),
    )
    parser.add_argument(
        "path",
        nargs="?",
        metavar="CHECKPOINT",
        type=flag(kind="in_path"),
        help="the same as --checkpoint: `geodistill eval runs/x --data DIR`",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--checkpoint", type=flag(kind="in_path"), help="checkpoint dir, run dir, or .safetensors/.pth file"
    )
    which.add_argument(
        "--video2bev",
        metavar="FILE",
        type=flag(kind="in_file"),
        help="a Video2BEV net_EEE.pth (opts.yaml beside it)",
    )
    add_data_flag(parser)
    parser.add_argument("--views", type=flag(int, ge=1, le=1024), help="drone frames per query")
    parser.add_argument("--fps", type=flag(int, choices=FPS_CHOICES), help="UniV frame rate")
    parser.add_argument("--elevation", type=flag(int, choices=ELEVATIONS), help="UniV elevation subset")
    parser.add_argument("--img-size", type=flag(int, ge=8, le=4096), help="input size in px")
    parser.add_argument(
        "--batch-size", type=flag(int, ge=1, le=65536), default=32, help="images per forward (default 32)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also report params, GFLOPs/GMACs and latency per query"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bars (none are drawn off a terminal)"
    )
    parser.add_argument(
        "--smoke-test", action="store_true", help="random vit_tiny on a tiny synthetic set (CI)"
    )
    parser.set_defaults(func=_run)


def _load(args: argparse.Namespace):
    """(model, description, training config dict or None)."""
    from geodistill.errors import ConfigError

    if args.path:
        if args.checkpoint or args.video2bev:
            raise ConfigError("give the checkpoint once: as CHECKPOINT, --checkpoint or --video2bev")
        args.checkpoint = args.path
    if args.video2bev:
        from geodistill.models import load_video2bev

        model = load_video2bev(args.video2bev)
        return model, f"Video2BEV {args.video2bev}", None
    if not args.checkpoint:
        raise ConfigError("give --checkpoint PATH or --video2bev FILE (or --smoke-test)")
    from geodistill.train.checkpoint import load_checkpoint

    model, meta = load_checkpoint(args.checkpoint)
    epoch = meta.get("epoch")
    label = f"checkpoint {args.checkpoint}" + (f" (epoch {epoch})" if epoch is not None else "")
    return model, label, meta.get("config")


def _smoke(args: argparse.Namespace, tmp: str):
    import torch

    from geodistill.data.synth import generate_univ
    from geodistill.models import GeoModel, ModelConfig

    args.data = str(generate_univ(f"{tmp}/univ", buildings=6, seed=0, img_size=32))
    args.views, args.fps, args.elevation, args.img_size = (
        args.views or 2,
        args.fps or 2,
        args.elevation or 45,
        32,
    )
    torch.manual_seed(0)
    model = GeoModel(ModelConfig(backbone="vit_tiny", img_size=32, embed_dim=64), num_classes=3)
    return model, "random vit_tiny (smoke test)", None


def _settings(args: argparse.Namespace, train_config: dict | None, model) -> dict:
    """Views/fps/elevation/img_size/data root: flags, else the training config, else defaults."""
    from geodistill.errors import ConfigError

    data = (train_config or {}).get("data", {})
    model_cfg = getattr(model, "cfg", None)
    img_size = args.img_size or data.get("img_size") or getattr(model_cfg, "img_size", None)
    settings = {
        "views": args.views or data.get("views") or 1,
        "fps": args.fps or data.get("fps") or 2,
        "elevation": args.elevation or data.get("elevation") or 45,
        "img_size": img_size,
    }
    if not settings["img_size"]:
        raise ConfigError("cannot tell the model's input size; pass --img-size")
    for name, value in (
        ("--views", settings["views"]),
        ("--img-size", settings["img_size"]),
        ("--batch-size", args.batch_size),
    ):
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    if args.data:
        settings["root"] = args.data
    elif train_config is not None:
        from geodistill.train.batches import dataset_root
        from geodistill.train.config import RunConfig

        # The set it was trained on (a synthetic one is regenerated under its output_dir if gone).
        settings["root"] = str(dataset_root(RunConfig.from_dict(train_config)))
    else:
        raise ConfigError("pass --data DIR (the dataset to evaluate on)")
    return settings


def _run(args: argparse.Namespace) -> int:
    import json
    import tempfile
    from dataclasses import asdict

    from geodistill.data import open_index
    from geodistill.eval import evaluate, flatten_metrics, format_table

    if args.data and not args.smoke_test:
        from geodistill.data.index import require_complete

        require_complete(args.data)  # a UniV not organised yet fails here, before a model is loaded
    with tempfile.TemporaryDirectory(prefix="geodistill-eval-") as tmp:
        model, label, train_config = _smoke(args, tmp) if args.smoke_test else _load(args)
        s = _settings(args, train_config, model)
        index = open_index(s["root"], elevation=s["elevation"], fps=s["fps"])
        model.eval()
        from geodistill.platform.cli.progress import console_progress

        with console_progress(quiet=args.quiet or args.json) as progress:
            result = evaluate(
                model,
                index,
                views=s["views"],
                img_size=s["img_size"],
                batch_size=args.batch_size,
                fps=s["fps"],
                progress=progress,
            )
        cost = None
        if args.profile:
            from geodistill.models import profile

            cost = profile(
                model, img_size=s["img_size"], views=s["views"], batch_size=min(args.batch_size, 8)
            )
    if args.json:
        payload = {
            "model": label,
            "data": s["root"],
            "views": s["views"],
            "fps": s["fps"],
            "elevation": s["elevation"],
            "img_size": s["img_size"],
            "result": result,
            "metrics": flatten_metrics(result),
            "cost": asdict(cost) if cost is not None else None,
        }
        print(json.dumps(payload, indent=2, sort_keys=True))
        return 0
    print(
        f"{label} on {s['root']}: {s['views']} view(s), {s['fps']} fps, elevation {s['elevation']}, {s['img_size']}px"
    )
    print(format_table(result))
    if cost is not None:
        latency = "-" if cost.latency_ms is None else f"{cost.latency_ms:.2f} ms/query"
        print(
            f"cost per query: {cost.params_m:.2f} M params, {cost.gflops:.3f} GFLOPs ({cost.gmacs:.3f} GMACs, "
            f"{cost.counter}), {latency} on {cost.device}"
        )
    return 0

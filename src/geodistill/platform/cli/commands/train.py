"""`geodistill train [overrides...]`: compose a run config with Hydra and train it (here or on Ray Train)."""

from __future__ import annotations

import argparse

from geodistill.platform.cli.flags import add_leaderboard_flag, flag


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a teacher (stage 1) or distil a student (stage 2), in-process or on Ray Train",
        description=(
            "Hydra overrides pick and tweak the config, e.g. `stage=teacher model=vit_small train.epochs=10`, "
            "`stage=student model=resnet18 distill.teacher_checkpoint=runs/teacher_vit_small`, "
            "`scaling=cpu2 train.strategy=deepspeed`. Groups: data, model, train, distill, scaling, preset. "
            "Re-running with the same run_name resumes from its latest checkpoint."
        ),
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="Hydra overrides (group=option or a.b=value)"
    )
    parser.add_argument(
        "--config-dir", type=flag(kind="in_dir"), help="extra config tree searched before the packaged one"
    )
    parser.add_argument(
        "--max-failures",
        type=flag(int, ge=-1, le=1000),
        default=2,
        help="Ray Train restarts after worker failures (default 2)",
    )
    parser.add_argument(
        "--smoke-test", action="store_true", help="tiny run for CI (preset=smoke: vit_tiny, 32 px, 2 steps)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    add_leaderboard_flag(parser)
    parser.add_argument(
        "--no-leaderboard", action="store_true", help="do not write the run's leaderboard row"
    )
    parser.set_defaults(func=_run)


def _summary(cfg) -> str:
    d, m, t, s = cfg.data, cfg.model, cfg.train, cfg.scaling
    data = (
        d.root if d.root is not None else f"synthetic UniV ({d.synth_buildings} places, seed {d.synth_seed})"
    )
    where = (
        "in-process"
        if s.num_workers == 0
        else f"Ray Train, {s.num_workers} worker(s){' on GPU' if s.use_gpu else ''}"
    )
    lines = [
        f"run {cfg.run_name}: stage {cfg.stage}, {where}, strategy {t.strategy}",
        f"  model  {m.backbone} @ {m.img_size}px, embed {m.embed_dim}, pooling {m.pooling}, refiner {m.refiner}",
        f"  data   {data}; elevation {d.elevation}, {d.fps} fps, {d.views} view(s), batch {d.batch_size}",
        f"  train  {t.epochs} epoch(s), lr {t.lr:g} (backbone x{t.backbone_lr_mult:g}), {t.schedule}, {t.precision}"
        + (f", max {t.max_steps_per_epoch} steps/epoch" if t.max_steps_per_epoch else ""),
    ]
    if cfg.stage == "student":
        k = cfg.distill
        lines.append(
            f"  distil from {k.teacher_checkpoint}: T={k.temperature:g}, weights task {k.w_task:g} "
            f"logit {k.w_logit:g} feature {k.w_feature:g} relation {k.w_relation:g}"
        )
    lines.append(f"  output {cfg.output_dir}/{cfg.run_name}")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    import contextlib
    import json
    import sys

    from geodistill.eval import format_table, nested_metrics
    from geodistill.platform.compose import SMOKE_OVERRIDES, compose_run_config
    from geodistill.platform.runtime.train_driver import prepare_config, run_training

    overrides = [*SMOKE_OVERRIDES, *args.overrides] if args.smoke_test else list(args.overrides)
    # Prepared once (run name, absolute paths, the teacher checked): the summary, the leaderboard
    # check and the row see the config run_training trains.
    cfg = prepare_config(compose_run_config(overrides, config_dir=args.config_dir))
    if not args.no_leaderboard:
        from geodistill.leaderboard import Leaderboard, default_root

        Leaderboard(args.leaderboard or default_root()).check_writable(cfg.experiment)  # fail before training
    if not args.json:
        print(_summary(cfg), flush=True)
    if args.json:  # stdout carries the JSON only; anything a library prints goes to stderr
        with contextlib.redirect_stdout(sys.stderr):
            result = run_training(cfg, max_failures=args.max_failures, prepared=True)
    else:
        result = run_training(cfg, max_failures=args.max_failures, prepared=True)
    checkpoint = str(result.checkpoint) if result.checkpoint is not None else None
    row_key = None
    if not args.no_leaderboard:
        from geodistill.leaderboard.rows import write_run_row

        row_key = write_run_row(
            cfg, result.metrics, checkpoint=checkpoint, root=args.leaderboard, stopped=result.stopped_early
        )
    if args.json:
        payload = {
            "run_name": cfg.run_name,
            "run_dir": f"{cfg.output_dir}/{cfg.run_name}",
            "epochs_done": result.epochs_done,
            "stopped_early": result.stopped_early,
            "skipped_media": result.skipped_media,
            "metrics": result.metrics,
            "checkpoint": checkpoint,
            "leaderboard_row": row_key,
            "config": cfg.to_dict(),
        }
        print(json.dumps(payload, indent=2, sort_keys=True))
        return 0
    m = result.metrics
    print(
        f"done: {result.epochs_done} epoch(s){' (stopped early)' if result.stopped_early else ''}; "
        f"loss {m.get('loss', float('nan')):.4f} (task {m.get('loss_task', float('nan')):.4f}, "
        f"logit {m.get('loss_logit', 0.0):.4f}, feature {m.get('loss_feature', 0.0):.4f}, "
        f"relation {m.get('loss_relation', 0.0):.4f}); skipped media {result.skipped_media}"
    )
    table = nested_metrics(m)
    if table:
        print(format_table(table))
    print(f"checkpoint: {checkpoint}")
    if row_key:
        print(f"leaderboard row: {row_key}")
    return 0

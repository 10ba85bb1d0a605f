"""Evidence for stage 2: a distilled student vs the same student trained without distillation.

Run: python benchmarks/distill_evidence.py [--seeds 0 1 2 3 4] [--teacher-run DIR] [--out DIR]

1. Stage 1: a teacher (ResNet-18, 128-d embedding, 40 epochs) trains on a synthetic UniV set
   (256 places with clouds over half the drone frames: 128 train buildings, 128 test queries +
   32 gallery distractors; chance R@1 = 1/160).
2. Stage 2, twice per seed, at equal steps, with the same initialisation, batches and frames:
   - distilled: the student (convnext_atto, 64-d embedding) with its task loss + logit KD
     (T = 4) + feature KD (1 - cosine, across depths + final embedding) + relation KD
     (tau = 0.5) from the frozen teacher;
   - baseline: the same student config with every KD weight at 0 (task loss only).
Prints drone->satellite and satellite->drone Recall@1 / AP side by side, per seed, their means
and the paired deltas. Not a test: one seed's numbers move by several points, read the means.
Random init everywhere (no downloads), so the backbone learns at the heads' rate
(--backbone-lr-mult 1). About 9 minutes on 2 quiet CPU cores (4 of them the teacher).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from geodistill.data import generate_univ
from geodistill.eval import fit_evaluated
from geodistill.train import InProcessContext, RunConfig


def run(out: Path, name: str, d: dict) -> dict[str, float]:
    cfg = RunConfig.from_dict({"output_dir": str(out), "run_name": name, **d})
    return fit_evaluated(cfg, context=InProcessContext(out / name)).metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buildings", type=int, default=256)
    parser.add_argument("--img-size", type=int, default=48)
    parser.add_argument("--teacher", default="resnet18")
    parser.add_argument("--student", default="convnext_atto")
    parser.add_argument("--teacher-epochs", type=int, default=40)
    parser.add_argument("--student-epochs", type=int, default=6)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--backbone-lr-mult", type=float, default=1.0)  # random init: no reason to hold back
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--w-logit", type=float, default=1.0)
    parser.add_argument("--w-feature", type=float, default=1.0)
    parser.add_argument("--w-relation", type=float, default=1.0)
    parser.add_argument("--relation-tau", type=float, default=0.5)
    parser.add_argument("--feature-loss", default="cosine", choices=("mse", "cosine"))
    parser.add_argument(
        "--teacher-run", type=Path, default=None, help="reuse a stage-1 run dir (skip stage 1)"
    )
    parser.add_argument(
        "--clouds",
        type=float,
        default=0.5,
        help="share of clouded drone frames in the synthetic set (0 = clear)",
    )
    parser.add_argument("--teacher-embed-dim", type=int, default=128)
    parser.add_argument(
        "--teacher-views",
        type=int,
        default=None,
        help="frames the teacher sees per video (default: the student's 2)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    out = args.out or Path(tempfile.mkdtemp(prefix="distill-evidence-"))
    root = generate_univ(out / "univ", buildings=args.buildings, seed=7, img_size=64, clouds=args.clouds)
    data = {"root": str(root), "img_size": args.img_size, "batch_size": 8, "views": 2}

    t0 = time.perf_counter()
    if args.teacher_run is not None:  # reuse: its metrics are in its last checkpoint's meta.json
        from geodistill.train.checkpoint import load_checkpoint

        _, meta = load_checkpoint(args.teacher_run)
        teacher, ckpt = meta["metrics"], str(args.teacher_run)
        args.teacher_epochs = int(meta["epoch"])
        args.teacher = meta["config"]["model"]["backbone"]
    else:
        teacher = run(out, "teacher", {
            "stage": "teacher", "data": data,
            "model": {"backbone": args.teacher, "embed_dim": args.teacher_embed_dim},
            "train": {"epochs": args.teacher_epochs, "lr": args.lr, "warmup_steps": 3, "eval_every": args.teacher_epochs,
                      "backbone_lr_mult": args.backbone_lr_mult},
        })  # fmt: skip
        ckpt = str(out / "teacher")
    t_teacher = time.perf_counter() - t0
    print(f"teacher {args.teacher}: d2s R@1 {teacher['d2s_recall1']:.1f}  s2d R@1 {teacher['s2d_recall1']:.1f} "
          f"({t_teacher:.0f}s)", file=sys.stderr)  # fmt: skip

    rows = []
    for seed in args.seeds:
        common = {
            "stage": "student", "data": data,
            "model": {"backbone": args.student, "embed_dim": 64},
            "train": {"epochs": args.student_epochs, "lr": args.lr, "warmup_steps": 3, "seed": seed,
                      "eval_every": args.student_epochs,
                      "backbone_lr_mult": args.backbone_lr_mult},
        }  # fmt: skip
        kd = {
            "teacher_checkpoint": ckpt, "temperature": args.temperature,
            "w_logit": args.w_logit, "w_feature": args.w_feature, "w_relation": args.w_relation,
            "relation_tau": args.relation_tau, "feature_loss": args.feature_loss,
            "teacher_views": args.teacher_views,
        }  # fmt: skip
        off = {**kd, "w_logit": 0.0, "w_feature": 0.0, "w_relation": 0.0, "cache_teacher": False}
        distilled = run(out, f"distilled_{seed}", {**common, "distill": kd})
        baseline = run(out, f"baseline_{seed}", {**common, "distill": off})
        rows.append((seed, distilled, baseline))

    keys = ("d2s_recall1", "d2s_ap", "s2d_recall1", "s2d_ap")
    print(f"\nsynthetic UniV, {args.buildings} places ({args.buildings // 2} train), {args.img_size} px, "
          f"clouds {args.clouds}, views 2 (teacher {args.teacher_views or 2}); teacher {args.teacher} ({args.teacher_epochs} epochs): d2s R@1 "
          f"{teacher['d2s_recall1']:.1f}, s2d R@1 {teacher['s2d_recall1']:.1f}")  # fmt: skip
    print(f"student {args.student}, {args.student_epochs} epochs each, equal steps, same init per seed\n")
    print(f"{'seed':>4}  {'metric':<12} {'distilled':>9} {'baseline':>9} {'delta':>7}")
    for seed, dist_m, base_m in rows:
        for k in keys:
            print(f"{seed:>4}  {k:<12} {dist_m[k]:9.2f} {base_m[k]:9.2f} {dist_m[k] - base_m[k]:+7.2f}")
    print()
    for k in keys:
        deltas = [r[1][k] - r[2][k] for r in rows]
        dm = statistics.mean(r[1][k] for r in rows)
        bm = statistics.mean(r[2][k] for r in rows)
        spread = f" ± {statistics.stdev(deltas):.2f} (sd)" if len(deltas) > 1 else ""
        wins = sum(d > 0 for d in deltas)
        print(
            f"mean  {k:<12} {dm:9.2f} {bm:9.2f} {dm - bm:+7.2f}{spread}, distilled ahead on {wins}/{len(deltas)} seeds"
        )
    print(f"\nartefacts under {out}")


if __name__ == "__main__":
    main()

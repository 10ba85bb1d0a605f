"""What freezing all but the last N blocks of the DINOv2 teacher saves in one training step.

Side A: ``model.trainable_blocks=2`` (the PFED teacher); side B: every block trainable. Both
are the ``dinov2_small`` GeoModel (vit_small_patch14_dinov2, GeM, random init: the weights do
not change memory) on a batch of 4 drone frames + 4 satellite tiles at 224 px, one AdamW step.
Each side runs in a fresh process and reports
- parameters by state (trainable / frozen) and the optimizer's tensors (exact bytes);
- gradient bytes after backward (exact: the ``.grad`` tensors that exist);
- activation bytes autograd saved for backward (exact: ``saved_tensors_hooks``);
- the process's peak RSS growth over the step (``ru_maxrss``; the allocator's own view).

    python benchmarks/bench_frozen_teacher.py [--img-size 224] [--batch 4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

from _figures import figure  # benchmarks/ is on sys.path when a script here runs


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def one_side(trainable_blocks: int | None, img_size: int, batch: int) -> dict:
    import torch

    from geodistill.models import GeoModel, ModelConfig
    from geodistill.train.config import RunConfig
    from geodistill.train.steps import TrainModule, param_groups

    torch.manual_seed(0)
    cfg = ModelConfig(
        backbone="vit_small_patch14_dinov2.lvd142m",
        img_size=img_size,
        pooling="gem",
        trainable_blocks=trainable_blocks,
    )
    model = GeoModel(cfg, num_classes=701)
    run = RunConfig.from_dict({"model": {"backbone": cfg.backbone, "img_size": img_size}})
    module = TrainModule(model, run, None)
    opt = torch.optim.AdamW(param_groups(module, run))
    drone = torch.randn(batch, 1, 3, img_size, img_size)
    sat = torch.randn(batch, 3, img_size, img_size)
    labels = torch.arange(batch)
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(drone, sat)
        loss = sum(
            torch.nn.functional.cross_entropy(lg, labels) for lg in out.drone_logits + out.satellite_logits
        )
        loss = loss + out.drone_embedding.sum() * out.logit_scale
    loss.backward()
    opt.step()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    params = list(module.parameters())
    return {
        "trainable_blocks": trainable_blocks,
        "trainable_params": sum(p.numel() for p in params if p.requires_grad),
        "frozen_params": sum(p.numel() for p in params if not p.requires_grad),
        "grad_bytes": sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None),
        "optimizer_state_bytes": sum(
            v.numel() * v.element_size() for s in opt.state.values() for v in s.values() if torch.is_tensor(v)
        ),
        "saved_activation_bytes": saved[0],
        "peak_rss_growth_bytes": after - before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--side", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side is not None:
        n = None if args.side == "all" else int(args.side)
        print(json.dumps(one_side(n, args.img_size, args.batch)))
        return
    rows = []
    for side in ("2", "all"):
        cmd = [
            sys.executable,
            __file__,
            "--side",
            side,
            "--img-size",
            str(args.img_size),
            "--batch",
            str(args.batch),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    a, b = rows
    print(
        f"dinov2_small GeoModel, {args.batch}+{args.batch} images at {args.img_size} px, one AdamW step (CPU)"
    )
    print("| what | last 2 blocks trainable | all trainable | ratio |")
    print("|---|---|---|---|")
    print(
        f"| trainable / frozen parameters | {a['trainable_params']:,} / {a['frozen_params']:,} "
        f"| {b['trainable_params']:,} / {b['frozen_params']:,} | |"
    )
    for key, label in (
        ("grad_bytes", "gradients"),
        ("optimizer_state_bytes", "AdamW state"),
        ("saved_activation_bytes", "activations saved for backward"),
        ("peak_rss_growth_bytes", "peak RSS growth over the step"),
    ):
        ratio = b[key] / a[key] if a[key] else float("inf")
        print(f"| {label} | {_mib(a[key])} | {_mib(b[key])} | {ratio:.1f}x |")
        figure(
            f"{key}.all_over_last2",
            ratio,
            "x",
            label=f"{label}: all trainable {_mib(b[key])} / last 2 blocks trainable {_mib(a[key])}",
            anchor="the same model with every block trainable",
        )


if __name__ == "__main__":
    main()

"""Inference benchmark of the models layer; prints both timings and their ratio side by side.

1. encode_video with V frames as ONE [B*V,3,H,W] backbone batch vs a Python loop over frames.
2. GeoModel.encode vs timm's plain forward of the same backbone module (overhead, target <= 1.05).
   Retrieval runs the backbone's own ``forward_features`` (no intermediate taps), so the only
   work the anchor lacks is the descriptor head: pooling, the Linear+BN projection to
   ``embed_dim`` and the L2 normalisation. Its share is recorded as counted FLOPs (encode /
   timm forward, on a meta-device twin), so the timing ratio is read against real extra work.

Run: python -m benchmarks.bench_inference  (or python benchmarks/bench_inference.py) [--device cuda]
Timings are medians over interleaved repeats after warm-up, under torch.inference_mode().
``BENCH_INFERENCE_THREADS=1`` runs on one torch thread: on an oversubscribed machine a 2-thread
forward waits for its second thread at every op, and the ratio measures the load, not the code.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from _figures import figure  # benchmarks/ is on sys.path when a script here runs
from geodistill.models import GeoModel, ModelConfig
from geodistill.models.cost import count_flops

THREADS_ENV = "BENCH_INFERENCE_THREADS"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(
    fns: dict, *, device: torch.device, repeats: int, warmup: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall and process-CPU seconds per call of each fn, alternating them so load drifts
    hit all equally (on one CPU thread, CPU time leaves out the time other jobs hold the core)."""
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    with torch.inference_mode():
        for i in range(warmup + repeats):
            for name, fn in fns.items():
                _sync(device)
                start, start_cpu = time.perf_counter(), time.process_time()
                fn()
                _sync(device)
                if i >= warmup:
                    wall[name].append(time.perf_counter() - start)
                    cpu[name].append(time.process_time() - start_cpu)
    median = statistics.median
    return {n: median(t) for n, t in wall.items()}, {n: median(t) for n, t in cpu.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="vit_small")
    parser.add_argument("--img-size", type=int, default=128)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4, help="queries per batch")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if os.environ.get(THREADS_ENV):  # e.g. 1 on a shared, oversubscribed machine
        torch.set_num_threads(int(os.environ[THREADS_ENV]))

    torch.manual_seed(0)
    device = torch.device(args.device)
    cfg = ModelConfig(backbone=args.backbone, img_size=args.img_size, refiner="mean")
    model = GeoModel(cfg, num_classes=10).to(device).eval()
    b, v, s = args.batch, args.views, args.img_size
    frames = torch.randn(b, v, 3, s, s, device=device)
    print(
        f"bench_inference: backbone {args.backbone}, {s}px, batch {b} queries x {v} views, device {device}, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, median of {args.repeats}"
    )

    # 1. Batched frames vs a loop over frames (same result: checked, not just timed).
    def batched():
        return model.encode_video(frames)

    def looped():
        per_frame = [model.encode(frames[:, i], view="drone") for i in range(v)]  # V calls of [B,...]
        return model.refine(torch.stack(per_frame, dim=1))

    with torch.inference_mode():
        torch.testing.assert_close(batched(), looped(), atol=1e-4, rtol=1e-4)
    t, _ = interleaved_medians(
        {"batched": batched, "loop": looped}, device=device, repeats=args.repeats, warmup=args.warmup
    )
    qps_b, qps_l = b / t["batched"], b / t["loop"]
    print(
        f"encode_video  batched [B*V] : {1000 * t['batched']:8.2f} ms/batch  {qps_b:8.2f} queries/s\n"
        f"encode_video  loop over V   : {1000 * t['loop']:8.2f} ms/batch  {qps_l:8.2f} queries/s\n"
        f"  speed-up batched / loop   : {qps_b / qps_l:8.3f}x"
    )
    loop = "a loop over views (one encode per frame)"
    figure(
        "encode_video.batched_ms", 1000 * t["batched"], "ms/batch", label="encode_video batched", anchor=loop
    )
    figure(
        "encode_video.loop_ms",
        1000 * t["loop"],
        "ms/batch",
        label="encode_video loop over views",
        anchor=loop,
    )
    figure("encode_video.speedup", qps_b / qps_l, "x", label="batched / loop", anchor=loop)

    # 2. GeoModel.encode vs timm's plain forward of the same backbone module.
    images = frames[:, 0].contiguous()  # [B,3,H,W]
    timm_model = model.drone_encoder.model

    def geo():
        return model.encode(images, view="drone")

    def plain():
        return timm_model(images)

    t, t_cpu = interleaved_medians(
        {"geo": geo, "timm": plain}, device=device, repeats=args.repeats * 3, warmup=args.warmup
    )
    # The real work the anchor lacks (descriptor head), counted on a meta-device twin.
    with torch.device("meta"):
        twin = GeoModel(cfg, num_classes=10).eval()
    meta_images = torch.zeros(images.shape, device="meta")
    flops_geo = count_flops(lambda x: twin.encode(x, view="drone"), meta_images)
    flops_timm = count_flops(twin.drone_encoder.model, meta_images)
    print(
        f"GeoModel.encode             : {1000 * t['geo']:8.2f} ms/batch\n"
        f"timm forward (same module)  : {1000 * t['timm']:8.2f} ms/batch\n"
        f"  overhead ratio geo / timm : {t['geo'] / t['timm']:8.3f}  (target <= 1.05)\n"
        f"  extra work (counted FLOPs): {100 * (flops_geo / flops_timm - 1):8.4f} %  (descriptor head)"
    )
    timm_fwd = "timm forward of the same module (forward_features + its token/avg pool, no head)"
    figure("encode.geo_ms", 1000 * t["geo"], "ms/batch", label="GeoModel.encode", limit=timm_fwd)
    figure("encode.timm_ms", 1000 * t["timm"], "ms/batch", label="timm forward", limit=timm_fwd)
    figure(
        "encode.overhead",
        t["geo"] / t["timm"],
        "x",
        label="GeoModel.encode / timm (target <= 1.05)",
        limit=timm_fwd,
    )
    figure(
        "encode.overhead_cpu",
        t_cpu["geo"] / t_cpu["timm"],
        "x",
        label="GeoModel.encode / timm, process CPU time",
        limit=timm_fwd,
    )
    figure(
        "encode.extra_flops_pct",
        100 * (flops_geo / flops_timm - 1),
        "%",
        label="extra work of encode over timm forward, counted FLOPs (descriptor head: pool, Linear+BN, L2)",
        limit=timm_fwd,
    )
    figure("threads", torch.get_num_threads(), label="torch threads")


if __name__ == "__main__":
    main()

"""Evidence for the PFED / MobileGeo self-supervision terms and the MI view-selection refiner.

Run: nice -n 10 python benchmarks/pfed_evidence.py [--seeds 0 1 2] [--out DIR]

One student (convnext_atto, 64-d embedding, stage heads on every variant so the initialisation
is the same) trains on a small synthetic UniV set (clouds over half the drone frames) for the same
number of steps, per seed, once per variant:
  base      instance loss + InfoNCE (the project's task loss)
  +stage    + cross-entropy on every auxiliary stage head
  +fisd     + stage CE + FISD, inverse (shallow stages teach the deepest, the paper's direction)
  +fisd_fwd + stage CE + FISD, forward (the deepest teaches the shallow stages)
  +triplet  + cross-domain batch-hard triplet loss
  +uapa     + uncertainty-aware prediction alignment
  all       + stage CE + FISD (inverse) + triplet + UAPA
This is the paper's step 1 (student self-distillation, no teacher): every term here needs none.
Each variant's drone->satellite / satellite->drone Recall@1 and AP are compared with base's of the
same seed (paired delta, mean ± sd over seeds, and on how many seeds it is ahead).
The refiners are compared on the base models: each drone query's --eval-views frames fused by the
mean (all frames), by `select` and by `mi` keeping --keep of them.
Not a test: read the means and the spread, not one seed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from _figures import figure  # benchmarks/ is on sys.path when a script here runs
from geodistill.data import generate_univ
from geodistill.eval import epoch_evaluator, evaluate, flatten_metrics
from geodistill.models.refiners import MeanRefiner, MIRefiner, SelectRefiner
from geodistill.train import InProcessContext, RunConfig, fit
from geodistill.train.batches import open_dataset

KEYS = ("d2s_recall1", "d2s_ap", "s2d_recall1", "s2d_ap")
LABELS = {"d2s_recall1": "d2s R@1", "d2s_ap": "d2s AP", "s2d_recall1": "s2d R@1", "s2d_ap": "s2d AP"}
ANCHOR = "base: the same student, seed and steps with the task loss only (instance + InfoNCE)"
REFINER_ANCHOR = "the mean of all the query's frames (the published protocol), on the base models"
CONTRASTS = (("+fisd", "+stage", "FISD alone"), ("+fisd_fwd", "+fisd", "FISD forward vs inverse"))
VARIANTS: dict[str, dict] = {
    "base": {},
    "+stage": {"stage_ce_weight": 1.0},
    "+fisd": {"stage_ce_weight": 1.0, "fisd_weight": 1.0},
    "+fisd_fwd": {"stage_ce_weight": 1.0, "fisd_weight": 1.0, "fisd_direction": "forward"},
    "+triplet": {"triplet_weight": 1.0},
    "+uapa": {"uapa_weight": 1.0},
    "all": {"stage_ce_weight": 1.0, "fisd_weight": 1.0, "triplet_weight": 1.0, "uapa_weight": 1.0},
}


def refiner_evaluate_fn(cfg: RunConfig, views: int, keep: int):
    """The standard evaluation plus d2s/s2d metrics under each refiner at ``views`` frames."""
    index = open_dataset(cfg)
    standard = epoch_evaluator(cfg)

    def evaluate_fn(model, epoch: int) -> dict[str, float]:
        metrics = standard(model, epoch)
        original = model.refiner
        try:
            for name, refiner in (
                ("mean", MeanRefiner()),
                ("select", SelectRefiner(keep)),
                ("mi", MIRefiner(keep)),
            ):
                model.refiner = refiner
                result = flatten_metrics(evaluate(model, index, views=views, img_size=cfg.data.img_size))
                metrics.update({f"{name}_{k}": result[k] for k in KEYS})
        finally:
            model.refiner = original
        return metrics

    return evaluate_fn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buildings", type=int, default=160)
    parser.add_argument("--img-size", type=int, default=40)
    parser.add_argument("--student", default="convnext_atto")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--eval-views", type=int, default=8, help="frames per drone query for the refiners")
    parser.add_argument("--keep", type=int, default=2, help="frames the select / mi refiners keep")
    parser.add_argument("--clouds", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--from-runs", action="store_true", help="only print the table of the finished runs under --out"
    )
    parser.add_argument(
        "--resume", action="store_true", help="keep the finished runs under --out and train only the others"
    )
    args = parser.parse_args()
    if args.from_runs:
        if args.out is None:
            parser.error("--from-runs needs --out DIR")
        results, args.seeds = load_runs(args.out, args.variants, args.seeds)
        if not args.seeds:
            parser.error(f"no finished run under {args.out}")
        summarise(results, args)
        return
    # One thread: on a loaded 2-core machine OpenMP spinning made a step 10x slower with two.
    torch.set_num_threads(1)
    out = args.out or Path(tempfile.mkdtemp(prefix="pfed-evidence-"))
    root = generate_univ(out / "univ", buildings=args.buildings, seed=7, img_size=64, clouds=args.clouds)
    data = {"root": str(root), "img_size": args.img_size, "batch_size": 8, "views": 2}

    results: dict[str, dict[int, dict[str, float]]] = {v: {} for v in args.variants}
    if args.resume and args.out is not None:
        results, _ = load_runs(out, args.variants, args.seeds)
    t0 = time.perf_counter()
    trained: list[float] = []  # wall seconds of each run trained here (not the resumed ones)
    for seed in args.seeds:
        for variant in args.variants:
            if seed in results[variant]:
                print(f"seed {seed} {variant:<9} finished earlier, kept", file=sys.stderr)
                continue
            t_run = time.perf_counter()
            cfg = RunConfig.from_dict({
                "output_dir": str(out), "run_name": f"{variant}_{seed}", "stage": "teacher", "data": data,
                "model": {"backbone": args.student, "embed_dim": 64, "stage_heads": True},
                "train": {"epochs": args.epochs, "lr": args.lr, "warmup_steps": 3, "seed": seed,
                          "eval_every": args.epochs, "backbone_lr_mult": 1.0, **VARIANTS[variant]},
            })  # fmt: skip
            eval_fn = (
                refiner_evaluate_fn(cfg, args.eval_views, args.keep)
                if variant == "base"
                else epoch_evaluator(cfg)
            )
            m = fit(cfg, context=InProcessContext(out / cfg.run_name), evaluate_fn=eval_fn).metrics
            results[variant][seed] = m
            trained.append(time.perf_counter() - t_run)
            print(
                f"seed {seed} {variant:<9} d2s R@1 {m['d2s_recall1']:5.1f} s2d R@1 {m['s2d_recall1']:5.1f} "
                f"({time.perf_counter() - t0:.0f}s)",
                file=sys.stderr,
            )

    summarise(results, args)
    if trained:
        figure("runs.trained", len(trained), "runs", label="runs trained in this invocation")
        figure("runs.median_s", statistics.median(trained), "s", label="median wall seconds per run")
    print(f"\n{time.perf_counter() - t0:.0f}s; artefacts under {out}")


def load_runs(out: Path, variants: list[str], seeds: list[int]) -> tuple[dict, list[int]]:
    """Final metrics of finished runs under ``out`` (each run dir's last metrics.jsonl row), and the
    seeds with at least one finished run (a re-summary, or the table of an interrupted run)."""
    import json

    results: dict[str, dict[int, dict[str, float]]] = {v: {} for v in variants}
    for variant in variants:
        for seed in seeds:
            path = out / f"{variant}_{seed}" / "metrics.jsonl"
            rows = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
            if rows and "d2s_recall1" in rows[-1]:
                results[variant][seed] = rows[-1]
    done = [s for s in seeds if any(s in results[v] for v in variants)]
    return results, done


def _r(x: float) -> float | None:
    """Rounded for results.json; NaN (one seed: no spread) as null, which JSON can hold."""
    return None if x != x else round(x, 3)


def summarise(results: dict, args: argparse.Namespace) -> None:
    print(f"\nsynthetic UniV, {args.buildings} places ({args.buildings // 2} train), {args.img_size} px, "
          f"clouds {args.clouds}, views 2; {args.student} with stage heads, {args.epochs} epochs, "
          f"equal steps, seeds {args.seeds}\n")  # fmt: skip
    print(f"{'variant':<10} {'metric':<12} {'mean':>7} {'delta vs base':>14} {'sd':>6} {'ahead':>6}")
    records: list[tuple[str, float, str, dict]] = []  # (key, value, label, extra) for results.json
    base = results.get("base", {})
    for variant in args.variants:
        # Seeds this variant finished (paired with base's when it is compared with it).
        seeds = [s for s in args.seeds if s in results[variant] and (variant == "base" or s in base)]
        if not seeds:
            continue
        for k in KEYS:
            vals = [results[variant][s][k] for s in seeds]
            line = f"{variant:<10} {k:<12} {statistics.mean(vals):7.2f}"
            if variant != "base" and base:
                deltas = [results[variant][s][k] - base[s][k] for s in seeds]
                sd = statistics.stdev(deltas) if len(deltas) > 1 else float("nan")
                ahead = sum(d > 0 for d in deltas)
                behind = sum(d < 0 for d in deltas)
                line += f" {statistics.mean(deltas):+14.2f} {sd:6.2f} {ahead:>3}/{len(deltas)}"
                records.append((f"{variant}.{k}.delta", statistics.mean(deltas), f"{variant} {LABELS[k]} − base (paired)",
                                {"sd": _r(sd), "ahead": ahead, "behind": behind, "seeds": len(deltas),
                                 "mean": _r(statistics.mean(vals))}))  # fmt: skip
            else:
                sd = statistics.stdev(vals) if len(vals) > 1 else float("nan")
                line += f" {'':>14} {sd:6.2f}"
                records.append((f"{variant}.{k}", statistics.mean(vals), f"{variant} {LABELS[k]}",
                                {"sd": _r(sd), "seeds": len(vals)}))  # fmt: skip
            print(line + f"  seeds {seeds}")
    # Contrasts that isolate one term: +fisd also has the stage CE, so FISD alone is +fisd - +stage;
    # the direction is +fisd_fwd - +fisd (forward minus inverse).
    for a, b, what in CONTRASTS:
        if a not in results or b not in results:
            continue
        seeds = [s for s in args.seeds if s in results[a] and s in results[b]]
        if not seeds:
            continue
        print(f"\n{what} ({a} - {b}, paired):")
        for k in KEYS:
            deltas = [results[a][s][k] - results[b][s][k] for s in seeds]
            sd = statistics.stdev(deltas) if len(deltas) > 1 else float("nan")
            ahead, behind = sum(d > 0 for d in deltas), sum(d < 0 for d in deltas)
            print(
                f"{'':<10} {k:<12} {statistics.mean(deltas):+7.2f} sd {sd:5.2f} ahead {ahead}/{len(deltas)}"
            )
            records.append((f"{a}-vs-{b}.{k}.delta", statistics.mean(deltas), f"{what}: {a} − {b} {LABELS[k]} (paired)",
                            {"sd": _r(sd), "ahead": ahead, "behind": behind, "seeds": len(deltas),
                             "anchor": f"{b}: the same seed and steps without the term"}))  # fmt: skip
    if base:
        print(
            f"\nrefiners on the base models, {args.eval_views} frames per drone query, select/mi keep {args.keep}:"
        )
        print(f"{'refiner':<8} {'metric':<12} {'mean':>7} {'delta vs mean':>14} {'sd':>6}")
        for name in ("mean", "select", "mi"):
            for k in KEYS:
                vals = [base[s][f"{name}_{k}"] for s in base]
                deltas = [v - base[s][f"mean_{k}"] for v, s in zip(vals, base)]
                sd = statistics.stdev(deltas) if len(deltas) > 1 else float("nan")
                print(
                    f"{name:<8} {k:<12} {statistics.mean(vals):7.2f} {statistics.mean(deltas):+14.2f} {sd:6.2f}"
                )
                if name != "mean":
                    records.append((f"refiner.{name}.{k}.delta", statistics.mean(deltas),
                                    f"refiner {name} keep {args.keep} {LABELS[k]} − mean of all {args.eval_views} (paired)",
                                    {"sd": _r(sd), "ahead": sum(d > 0 for d in deltas),
                                     "behind": sum(d < 0 for d in deltas), "seeds": len(deltas),
                                     "mean": _r(statistics.mean(vals)), "anchor": REFINER_ANCHOR}))  # fmt: skip
                else:
                    records.append((f"refiner.mean.{k}", statistics.mean(vals),
                                    f"refiner mean of all {args.eval_views} {LABELS[k]}",
                                    {"sd": _r(statistics.stdev(vals) if len(vals) > 1 else float("nan")),
                                     "seeds": len(vals), "anchor": REFINER_ANCHOR}))  # fmt: skip
    # Recorded after the printed tables so results.json holds every number the tables show.
    print()
    figure("seeds", len(args.seeds), label=f"seeds {args.seeds}; {args.epochs} epochs per run, equal steps")
    for key, value, label, extra in records:
        anchor = extra.pop("anchor", ANCHOR)
        figure(key, round(value, 3), "pts", label=label, anchor=anchor, **extra)


if __name__ == "__main__":
    main()

"""The main job end to end, on a laptop: what ``geodistill demo`` (and ``make demo``) runs.

``run_demo`` reads top to bottom as its five steps, each printed as it starts and timed:
synthesise a UniV-layout dataset and check it; train a stage-1 teacher in this process; search
students by hierarchical distillation from it on local Ray (Tune + Optuna, precision up, GFLOPs
down, early stopping), every trial a leaderboard row; re-evaluate the teacher at several view
counts (the report's reference curve); write the Pareto report and print what was found and
what it means (the best student against the teacher, which knobs mattered).
``--smoke-test`` runs the same path with everything shrunk (CI runs it).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXPERIMENT = "demo"
SEARCH_SPACE = "demo"


@dataclass(frozen=True)
class DemoPlan:
    """How big each step is. ``FULL`` is the default; ``SMOKE`` is the one-minute CI version."""

    buildings: int  # synthetic places: half train, half test, plus a quarter as gallery distractors
    img_size: int  # model input px (satellite tiles and drone frames are resized to it)
    teacher_backbone: str
    teacher_epochs: int
    teacher_views: int
    student_epochs: int
    num_samples: int  # search trials
    max_concurrent: int
    batch_size: int
    max_steps_per_epoch: int | None
    embed_dim: int
    time_budget_s: float | None  # the search stops starting trials after this
    clouds: float = 0.5  # share of drone frames with a cloud: single frames mislead, several see the place
    sweep_views: tuple[int, ...] = (1, 2, 4, 8)  # the teacher re-evaluated at each view count


FULL = DemoPlan(
    buildings=96,
    img_size=48,
    teacher_backbone="resnet18",
    teacher_epochs=12,
    teacher_views=1,
    student_epochs=6,
    num_samples=20,
    max_concurrent=2,
    batch_size=16,
    max_steps_per_epoch=None,
    embed_dim=128,
    time_budget_s=9 * 60,
)

SMOKE = DemoPlan(
    buildings=12,
    img_size=32,
    teacher_backbone="resnet18",
    teacher_epochs=1,
    teacher_views=1,
    student_epochs=2,
    num_samples=3,
    max_concurrent=2,
    batch_size=4,
    max_steps_per_epoch=2,
    embed_dim=64,
    time_budget_s=None,
    sweep_views=(1, 4),
)


@dataclass
class DemoSummary:
    out_dir: Path
    data_dir: Path
    teacher_checkpoint: Path
    teacher_metrics: dict[str, float]
    chance_recall1: float  # percent: one good tile among the gallery
    leaderboard_root: Path
    report: dict[str, Path]
    trials: int
    pareto_table: str
    gflops_range: float  # largest / smallest GFLOPs per query among finished trials
    front_gflops_range: float  # the same over the Pareto front
    recall_by_views: dict[int, float]  # mean d2s Recall@1 of finished trials, per view count
    view_sweep: list[dict[str, float]]  # the teacher at each view count: views, d2s/s2d Recall@1, GFLOPs
    seconds: float
    notes: list[str] = dataclasses.field(default_factory=list)
    distillation: dict | None = None  # the best student against the teacher (leaderboard.effects)
    knob_effects: str = ""  # which searched knobs moved Recall@1, against the trial-to-trial spread
    student: Path | None = None  # the best student's checkpoint, linked to <out>/student


class _Steps:
    """Numbered, timed progress lines: what a newcomer watches while the demo runs."""

    def __init__(self, total: int, echo: Callable[[str], None]) -> None:
        self.total, self.echo, self.n = total, echo, 0
        self.started = time.monotonic()

    def start(self, what: str) -> None:
        self.n += 1
        self.echo(f"\n[{self.n}/{self.total}] {what}  (t+{time.monotonic() - self.started:.0f}s)")

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def run_demo(
    out_dir: str | Path = "demo_out",
    *,
    plan: DemoPlan = FULL,
    seed: int = 0,
    address: str | None = None,
    echo: Callable[[str], None] | None = None,
) -> DemoSummary:
    """Run the five steps into ``out_dir`` (reused: an existing dataset and teacher are kept)."""
    from geodistill.leaderboard import Leaderboard
    from geodistill.leaderboard.report import write_report
    from geodistill.train.checkpoint import copy_checkpoint

    echo = echo or _print_now
    out = _output_dir(out_dir)
    data_dir, runs_dir = out / "data", out / "runs"
    lb_root, search_dir, report_dir = out / "leaderboard", out / "search", out / "report"
    Leaderboard(lb_root).check_writable(EXPERIMENT)  # one line now rather than after the search
    steps = _Steps(5, echo)

    steps.start(f"synthetic UniV: {plan.buildings} places, seed {seed} -> {data_dir}")
    chance = _synthesise(data_dir, plan, seed, echo)

    steps.start(
        f"stage 1: teacher {plan.teacher_backbone} for {plan.teacher_epochs} epochs (in this process)"
    )
    teacher_cfg, teacher_ckpt, teacher_metrics = _train_teacher(data_dir, runs_dir, lb_root, plan, seed, echo)
    echo(
        f"  teacher Recall@1 drone->satellite {teacher_metrics.get('d2s_recall1', float('nan')):.1f}%, "
        f"satellite->drone {teacher_metrics.get('s2d_recall1', float('nan')):.1f}% (chance {chance:.1f}%)"
    )

    steps.start(
        f"stage 2: distillation search, {plan.num_samples} trials on local Ray "
        f"(Optuna multi-objective + ASHA early stopping, {plan.max_concurrent} at a time)"
    )
    searched = _search_students(data_dir, search_dir, lb_root, teacher_ckpt, plan, seed, address)

    steps.start(
        f"the teacher re-evaluated at {', '.join(map(str, plan.sweep_views))} views (multi-view refinement)"
    )
    sweep = view_sweep(teacher_ckpt, teacher_cfg, data_dir, plan.sweep_views, lb_root=lb_root)

    steps.start(f"Pareto report -> {report_dir}")
    paths = write_report(Leaderboard(lb_root), report_dir, experiment=EXPERIMENT)
    summary = DemoSummary(
        out_dir=out,
        data_dir=data_dir,
        teacher_checkpoint=teacher_ckpt,
        teacher_metrics=teacher_metrics,
        chance_recall1=chance,
        leaderboard_root=lb_root,
        report=paths,
        **_findings(searched, teacher_metrics, sweep, teacher_cfg.data.views),
        view_sweep=sweep,
        seconds=steps.elapsed(),
    )
    best = Path(str((summary.distillation or {}).get("checkpoint_uri") or ""))
    if (best / "meta.json").is_file():  # at a fixed path: `regress --baseline example_student` gates on it
        # Hard links: the best trial's weights are on disk once, and either folder can go.
        summary.student = copy_checkpoint(best, out / "student", with_state=False, link=True)
    echo(format_summary(summary))
    return summary


def _output_dir(out_dir: str | Path) -> Path:
    from geodistill.errors import UserError

    out = Path(out_dir).expanduser().absolute()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the output directory {out}: {err.strerror}") from None
    return out


def _synthesise(data_dir: Path, plan: DemoPlan, seed: int, echo: Callable[[str], None]) -> float:
    """Step 1: the synthetic dataset (kept when present), checked; returns chance Recall@1 (%)."""
    from geodistill.data import check_dataset, generate_univ, open_index

    if not (data_dir / "dataset_split.json").is_file():
        generate_univ(
            data_dir, buildings=plan.buildings, seed=seed, img_size=max(64, plan.img_size), clouds=plan.clouds
        )
    report = check_dataset(data_dir)
    gallery = len(open_index(data_dir, elevation=45, fps=2).select(subset="gallery_satellite"))
    chance = 100.0 / gallery
    echo(
        f"  {report.kind}, {report.files_checked} files decoded; gallery of {gallery} tiles "
        f"(chance Recall@1 {chance:.1f}%)"
    )
    return chance


def _train_teacher(
    data_dir: Path, runs_dir: Path, lb_root: Path, plan: DemoPlan, seed: int, echo: Callable[[str], None]
) -> tuple[Any, Path, dict[str, float]]:
    """Step 2: the stage-1 teacher in this process (reused when trained) and its leaderboard row."""
    from geodistill.leaderboard.rows import write_run_row
    from geodistill.platform.compose import apply_overrides
    from geodistill.platform.runtime.train_driver import run_training
    from geodistill.train import RunConfig
    from geodistill.train.context import latest_checkpoint_in

    common = {
        "experiment": EXPERIMENT,
        "output_dir": str(runs_dir),
        "data": {"root": str(data_dir), "img_size": plan.img_size, "batch_size": plan.batch_size},
        "model": {"embed_dim": plan.embed_dim},
        "train": {"max_steps_per_epoch": plan.max_steps_per_epoch, "seed": seed},
    }
    teacher_cfg = RunConfig.from_dict(
        apply_overrides(
            common,
            {
                "stage": "teacher",
                "run_name": "teacher",
                "data.views": plan.teacher_views,
                "model.backbone": plan.teacher_backbone,
                "train.epochs": plan.teacher_epochs,
                "train.eval_every": 2,
                "train.lr": 3e-3,
                "train.backbone_lr_mult": 1.0,
                "train.warmup_steps": 5,
            },
        )
    )
    teacher_dir = runs_dir / "teacher"
    teacher_ckpt = latest_checkpoint_in(teacher_dir / "checkpoints")
    if teacher_ckpt is not None and _epoch_of(teacher_ckpt) >= plan.teacher_epochs:
        echo(f"  reusing {teacher_ckpt}")
        teacher_metrics = _metrics_of(teacher_ckpt)
    else:
        result = run_training(teacher_cfg)
        teacher_ckpt = latest_checkpoint_in(teacher_dir / "checkpoints")
        teacher_metrics = dict(result.metrics)
    if teacher_ckpt is None:
        raise RuntimeError(f"the teacher wrote no checkpoint under {teacher_dir}")
    write_run_row(teacher_cfg, teacher_metrics, checkpoint=str(teacher_ckpt), root=lb_root)
    return teacher_cfg, teacher_ckpt, teacher_metrics


def _search_students(
    data_dir: Path,
    search_dir: Path,
    lb_root: Path,
    teacher_ckpt: Path,
    plan: DemoPlan,
    seed: int,
    address: str | None,
) -> Any:
    """Step 3: the distillation search on local Ray (resumed when a previous demo left one)."""
    from geodistill.platform.compose import compose_run_config
    from geodistill.platform.search import SearchOptions, run_search

    # Trials checkpoint every epoch; Tune's warning about frequent experiment snapshots is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    overrides = [
        f"data.root={data_dir}",
        f"data.img_size={plan.img_size}",
        f"data.batch_size={plan.batch_size}",
        f"model.embed_dim={plan.embed_dim}",
        f"train.epochs={plan.student_epochs}",
        f"train.seed={seed}",
        *([f"train.max_steps_per_epoch={plan.max_steps_per_epoch}"] if plan.max_steps_per_epoch else []),
    ]
    options = SearchOptions(
        experiment=EXPERIMENT,
        num_samples=plan.num_samples,
        max_concurrent=plan.max_concurrent,
        time_budget_s=plan.time_budget_s,
        storage=str(search_dir),
        leaderboard=str(lb_root),
        address=address,
        teacher=str(teacher_ckpt),
        resume=(search_dir / EXPERIMENT).exists(),
        seed=seed,
        keep_checkpoints="front",  # demo_out stays small: dominated students drop their weights
        verbose=1,  # the live trial table; each trial's output stays in its folder
    )
    return run_search(SEARCH_SPACE, compose_run_config(overrides), options)


def _findings(
    searched: Any, teacher_metrics: dict[str, float], sweep: list[dict[str, float]], teacher_views: int
) -> dict[str, Any]:
    """Step 5: what the search found: trials, GFLOPs spans, Recall@1 by views, the Pareto table,
    the best student against the teacher and the knobs that moved Recall@1."""
    import polars as pl

    from geodistill.leaderboard.effects import format_effects, knob_effects
    from geodistill.platform.search import format_pareto

    students = searched.rows.filter(searched.rows["stage"] == "student")
    finished = students.filter(
        students["status"].is_in(["ok", "stopped"]) & students["d2s_recall1"].is_not_null()
    )
    gflops = [g for g in finished["gflops"].to_list() if g]
    front = [g for g in searched.pareto["gflops"].to_list() if g] if searched.pareto.height else []
    failed = students.filter(students["status"] == "failed")
    notes = []
    if failed.height:
        notes.append(f"{failed.height} trial(s) failed; see `geodistill leaderboard show --experiment demo`")
    return {
        "trials": students.height,
        "pareto_table": format_pareto(searched.pareto, metric="d2s_recall1"),
        "gflops_range": max(gflops) / min(gflops) if gflops else 0.0,
        "front_gflops_range": max(front) / min(front) if front else 0.0,
        "recall_by_views": {
            int(v): float(r)
            for v, r in finished.group_by("views").agg(pl.col("d2s_recall1").mean()).sort("views").iter_rows()
        },
        "notes": notes,
        "distillation": _against_teacher(finished, teacher_metrics, sweep, teacher_views),
        "knob_effects": format_effects(knob_effects(finished)),
    }


def _against_teacher(
    finished: Any, teacher_metrics: dict[str, float], sweep: list[dict[str, float]], teacher_views: int
) -> dict | None:
    """The best student against the teacher at the student's own view count (the sweep), else at
    the teacher's training views: like for like, so the share is the backbone's, not the frames'."""
    from geodistill.leaderboard.effects import student_share

    best = student_share(finished, 1.0, 1.0)
    at = {int(r["views"]): r for r in sweep}
    ref = at.get(int(best["views"])) if best and best["views"] is not None else None
    ref = ref or at.get(teacher_views) or {"views": teacher_views, "gflops": 0.0}
    metric = ref.get("d2s_recall1", teacher_metrics.get("d2s_recall1", 0.0))
    share = student_share(finished, metric, ref["gflops"])
    return share and {**share, "teacher_views": int(ref["views"])}


def format_summary(s: DemoSummary) -> str:
    """The closing block: where everything is and the evidence that the run learned something."""
    from geodistill.leaderboard.effects import format_share

    views = ", ".join(f"{v} view{'s' if v > 1 else ''}: {r:.1f}%" for v, r in s.recall_by_views.items())
    teacher_r1 = s.teacher_metrics.get("d2s_recall1", float("nan"))
    sweep = "\n".join(
        f"  {int(r['views']):>2} view{'s' if r['views'] > 1 else ' '}  Recall@1 d2s {r['d2s_recall1']:5.1f}%  "
        f"s2d {r['s2d_recall1']:5.1f}%  {r['gflops']:.3f} GFLOPs per query"
        for r in s.view_sweep
    )
    lines = [
        "Pareto front (Recall@1 drone->satellite up, GFLOPs per query down):",
        s.pareto_table,
        "",
        f"teacher Recall@1       {teacher_r1:.1f}%  vs chance {s.chance_recall1:.1f}% "
        f"({teacher_r1 / s.chance_recall1:.0f}x)",
        f"trials                 {s.trials} on the leaderboard",
        f"GFLOPs range searched  {s.gflops_range:.1f}x (largest / smallest per query); "
        f"the front spans {s.front_gflops_range:.1f}x",
        f"Recall@1 by views      {views or 'n/a'} (mean over trials, each trained at its own view count)",
        f"distillation           {format_share(s.distillation)}",
        f"knobs that mattered    {s.knob_effects or 'n/a'}",
        "                       (spread of mean Recall@1 over each knob's values, early-stopped trials included)",
        "more views, same teacher (multi-view refinement: the mean of the frames' descriptors):",
        sweep,
        "",
        f"report     {s.report.get('html')}",
        f"markdown   {s.report.get('md')}",
        f"leaderboard {s.leaderboard_root}  (geodistill leaderboard show --leaderboard {s.leaderboard_root} "
        f"--experiment {EXPERIMENT})",
        f"teacher    {s.teacher_checkpoint}",
        f"student    {s.student or 'none finished'}  (the best; `regress --baseline example_student` gates on it)",
        f"done in {s.seconds / 60:.1f} min",
        *s.notes,
    ]
    return "\n".join(lines)


def view_sweep(
    checkpoint: Path, cfg: Any, data_dir: Path, views: tuple[int, ...], *, lb_root: Path | None = None
) -> list[dict[str, float]]:
    """Evaluate one trained model at several view counts: what each extra frame buys, and costs.

    With ``lb_root``, each view count other than the one the model was trained at becomes a
    leaderboard row of its own (run ``<run_name>_<v>views``), so the report draws the
    teacher's views-versus-GFLOPs curve next to the students it taught.
    """
    from geodistill.data import open_index
    from geodistill.eval import evaluate
    from geodistill.eval.names import flatten_metrics
    from geodistill.leaderboard.rows import write_run_row
    from geodistill.models.cost import config_cost
    from geodistill.train.checkpoint import load_checkpoint

    model, _ = load_checkpoint(checkpoint)
    model.eval()
    index = open_index(data_dir, elevation=cfg.data.elevation, fps=cfg.data.fps)
    rows = []
    for v in views:
        result = evaluate(model, index, views=v, img_size=cfg.data.img_size)
        at_v = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, views=v))
        if lb_root is not None and v != cfg.data.views:
            at_v = dataclasses.replace(at_v, run_name=f"{cfg.run_name}_{v}views")
            write_run_row(at_v, flatten_metrics(result), checkpoint=str(checkpoint), root=lb_root)
        rows.append(
            {
                "views": v,
                "d2s_recall1": result["drone->satellite"]["recall@1"],
                "s2d_recall1": result["satellite->drone"]["recall@1"],
                "gflops": config_cost(at_v.model, v)["gflops"],
            }
        )
    return rows


def _print_now(line: str) -> None:
    print(line, flush=True)  # progress must show even when stdout is a file or a pipe


def _epoch_of(checkpoint: Path) -> int:
    from geodistill.train.checkpoint import read_meta

    return int(read_meta(checkpoint).get("epoch", 0))


def _metrics_of(checkpoint: Path) -> dict[str, float]:
    from geodistill.train.checkpoint import read_meta

    return dict(read_meta(checkpoint).get("metrics") or {})

"""The leaderboard row of one run: a search trial's, or a plain training run's (the same shape).

``trial_row`` turns a run's ``RunConfig`` and its last result (metrics, cost, epochs) into the
``make_row`` fields; ``write_run_row`` writes the row of a run outside a search (``geodistill
train``, the demo's teacher) with its cost counted (``models.config_cost``). The search's Tune
callback (``platform/search/callback.py``) writes trials' rows through ``trial_row``. Imports no
Ray and no torch at import time, so ``geodistill train`` never imports Ray Tune.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import polars as pl

    from geodistill.train.config import RunConfig

_Units = TypeVar("_Units", float, "pl.Expr")


def trial_row(
    *,
    experiment: str,
    trial_id: str,
    cfg: RunConfig,
    result: Mapping[str, Any],
    status: str,
    error: str | None = None,
    checkpoint: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """The leaderboard row of one trial (``leaderboard.make_row`` fields)."""
    from geodistill.eval.names import METRIC_KEYS
    from geodistill.leaderboard.columns import make_row

    over_budget = bool(result.get("over_budget"))
    metrics = {} if over_budget else {k: result[k] for k in METRIC_KEYS if result.get(k) is not None}
    epochs = result.get("epoch")
    device = None
    if cfg.scaling.in_process:
        from geodistill.train.context import default_device

        device = str(default_device())
    return make_row(
        row_key=f"{experiment}/{trial_id}/{cfg.stage}",
        run_id=run_id,
        trial_id=trial_id,
        experiment=experiment,
        stage=cfg.stage,
        status=status,
        error=error,
        dataset_name="synthetic" if cfg.data.root is None else Path(cfg.data.root).name,
        dataset_elevation=cfg.data.elevation,
        dataset_fps=cfg.data.fps,
        teacher=cfg.distill.teacher_checkpoint if cfg.stage == "student" else None,
        backbone=cfg.model.backbone,
        img_size=cfg.data.img_size,
        views=cfg.data.views,
        refiner=cfg.model.refiner,
        temperature=cfg.distill.temperature,
        w_task=cfg.distill.w_task,
        w_logit=cfg.distill.w_logit,
        w_feature=cfg.distill.w_feature,
        w_relation=cfg.distill.w_relation,
        lr=cfg.train.lr,
        epochs=None if epochs is None else int(epochs),
        **metrics,
        params_m=result.get("params_m"),
        gflops=result.get("gflops"),
        gmacs=result.get("gmacs"),
        flop_counter=result.get("flop_counter"),
        device=device,
        checkpoint_uri=checkpoint or result.get("checkpoint_uri"),
        config_json=cfg.to_dict(),
        node_id=result.get("node_id"),
        compute=result.get("compute"),
        train_gflops=train_gflops(result),
        wall_seconds=result.get("wall_seconds"),
        history=result.get("history"),
    )


def compute_units(epochs: _Units, gflops: _Units) -> _Units:
    """The search's compute (``columns.COMPUTE_RULE``, the ``compute`` column): epochs trained x
    GFLOPs per drone query. The one place it is counted: a trial's reports, and over a frame's
    columns (``compute_expr``) for rows that lack it."""
    return epochs * gflops


def compute_expr(epochs: str = "epochs", gflops: str = "gflops") -> pl.Expr:
    """``compute_units`` of every row of a polars frame, from its ``epochs`` and ``gflops`` columns."""
    import polars as pl

    return compute_units(pl.col(epochs).cast(pl.Float64), pl.col(gflops).cast(pl.Float64))


def train_gflops(result: Mapping[str, Any]) -> float | None:
    """Training GFLOPs a run spent (``columns.TRAIN_GFLOPS_RULE``): epochs trained x samples per
    epoch x GFLOPs per sample, as the training loop reports them; None when a result lacks them."""
    parts = [result.get(k) for k in ("epoch", "train_samples", "train_sample_gflops")]
    if any(p is None for p in parts):
        return None
    epochs, samples, per_sample = (float(p) for p in parts)
    return epochs * samples * per_sample


def row_status(result: Mapping[str, Any], cfg: RunConfig) -> tuple[str, str | None]:
    """(status, error) of a trial that ended without failing: ``ok``, or ``stopped`` and why."""
    if result.get("over_budget"):
        return "stopped", f"over the flops budget ({result.get('gflops', float('nan')):.3f} GFLOPs)"
    epoch = result.get("epoch")
    if result.get("stopped_early") or epoch is None or int(epoch) < cfg.train.epochs:
        return "stopped", None
    return "ok", None


def write_run_row(
    cfg: RunConfig,
    metrics: Mapping[str, Any],
    *,
    checkpoint: str | None,
    root: str | Path | None = None,
    stopped: bool = False,
) -> str:
    """Write the leaderboard row of one training run outside a search (trial id = run name).

    ``geodistill train`` and the demo's teacher use it, so their rows have a trial's shape and
    cost. Returns the row key.
    """
    from geodistill.leaderboard.store import Leaderboard, default_root
    from geodistill.models.cost import config_cost

    row = trial_row(
        experiment=cfg.experiment,
        trial_id=cfg.run_name,
        cfg=cfg,
        result={**metrics, **config_cost(cfg.model, cfg.data.views)},
        status="stopped" if stopped else "ok",
        checkpoint=checkpoint,
    )
    Leaderboard(root or default_root()).write([row])
    return row["row_key"]

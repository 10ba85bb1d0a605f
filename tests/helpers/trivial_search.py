"""Trivial searches the search tests share: a one-parameter space, an objective whose precision is
known in advance, and the local folders a test search writes to; ``equal_recalls_fit``, a run
whose best epoch ties (the checkpoint tests).

The objective runs in Ray workers, which cannot import a module that lives in tests/; this module is
registered with Ray's cloudpickle so what it defines travels by value, as a function defined inside
a test does.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ray import cloudpickle

from geodistill.platform.search.space import SearchSpace, parse_space

cloudpickle.register_pickle_by_value(sys.modules[__name__])

LR = {"type": "uniform", "low": 0.001, "high": 0.01}


def trivial_space(
    epochs: int, *, name: str = "trivial", params: dict | None = None, **fixed: Any
) -> SearchSpace:
    """A stage-1 space over ``train.lr`` (and ``params``), ``epochs`` epochs, ``fixed`` dotted keys set."""
    return parse_space(
        {
            "fixed": {"stage": "teacher", "train.epochs": epochs, **fixed},
            "params": {"train.lr": LR, **(params or {})},
        },
        name=name,
    )


def lr_ramp(cfg, *, context) -> None:
    """Precision grows with lr and epoch (lr * 1000 * epoch): ASHA's rung comparisons are known in advance."""
    for epoch in range(1, cfg.train.epochs + 1):
        context.report({"epoch": epoch, "d2s_recall1": cfg.train.lr * 1000 * epoch})
        if context.should_stop(epoch, {}):
            break


def slow_checkpointing(cfg, *, context) -> None:
    """``train.epochs`` epochs of 0.2 s, each with a checkpoint holding weights and a training state."""
    import tempfile
    import time

    for epoch in range(1, cfg.train.epochs + 1):
        time.sleep(0.2)
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "model.safetensors").write_bytes(b"w" * 1000)
            (Path(folder) / "train_state.pt").write_bytes(b"s" * 2000)
            (Path(folder) / "meta.json").write_text("{}")
            metrics = {"epoch": epoch, "d2s_recall1": cfg.train.lr * 1000 * epoch, "gflops": 1.0}
            context.report(metrics, checkpoint_dir=Path(folder))


def equal_recalls_fit(cfg, *, context):
    """Three epochs of tiny checkpoints (weights, training state, meta with the metrics), d2s
    recall 5, 5, 3: epochs 1 and 2 tie for the best."""
    import hashlib
    import json
    import tempfile

    from geodistill.train.loop import TrainResult

    metrics: dict = {}
    sha = hashlib.sha256(b"w" * 1000).hexdigest()  # as save_checkpoint keys the weights (fetch checks it)
    for epoch, recall in ((1, 5.0), (2, 5.0), (3, 3.0)):
        metrics = {"epoch": epoch, "d2s_recall1": recall}
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "model.safetensors").write_bytes(b"w" * 1000)
            (Path(folder) / "train_state.pt").write_bytes(b"s" * 2000)
            meta = {"epoch": epoch, "metrics": metrics, "model_sha256": sha}
            (Path(folder) / "meta.json").write_text(json.dumps(meta))
            context.report(metrics, checkpoint_dir=Path(folder))
    return TrainResult(epochs_done=3, metrics=metrics, checkpoint=None, stopped_early=False, skipped_media=0)


def search_dirs(tmp_path: Path) -> dict[str, Any]:
    """``SearchOptions`` fields: Tune results and the leaderboard under ``tmp_path``, no live table."""
    return {"storage": str(tmp_path / "tune"), "leaderboard": str(tmp_path / "lb"), "verbose": 0}


def search(space: Any, *, overrides: tuple[str, ...] | list[str] = (), **options: Any) -> Any:
    """``run_search(space, base, SearchOptions(**options))``, the base composed from ``overrides``."""
    from geodistill.platform.compose import compose_run_config
    from geodistill.platform.search import SearchOptions, run_search

    return run_search(space, compose_run_config(list(overrides)), SearchOptions(**options))


def two_cost_checkpointing(cfg, *, context) -> None:
    """Two epochs, each with a checkpoint; precision grows with lr, GFLOPs 1 below lr 0.0055 and 2
    above (so the front holds the best trial of each cost, and the others are dominated)."""
    import tempfile

    for epoch in (1, 2):
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "model.safetensors").write_bytes(b"w" * 1000)
            metrics = {
                "epoch": epoch,
                "d2s_recall1": cfg.train.lr * 1000 * epoch,
                "gflops": 1.0 if cfg.train.lr < 0.0055 else 2.0,
            }
            context.report(metrics, checkpoint_dir=Path(folder))

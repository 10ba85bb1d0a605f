"""Evaluation on a dataset's test split: descriptors through the model, both retrieval directions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from geodistill.data import IMAGENET, DatasetIndex, ViewDataset, ViewItem
from geodistill.errors import DataError
from geodistill.eval.metrics import retrieval_metrics
from geodistill.eval.names import DIRECTIONS, METRIC_LABELS, METRIC_SUFFIXES
from geodistill.models import extract_descriptors

# (header, evaluate's metric name) of the recall columns of format_table (AP comes last)
TABLE_COLUMNS = tuple(
    (METRIC_LABELS[suffix], name) for name, suffix in METRIC_SUFFIXES.items() if suffix != "ap"
)


def _items(index: DatasetIndex, subset: str, fps: int | None) -> list[ViewItem]:
    items = index.select(subset=subset, split="test")
    if fps is not None and subset.endswith("drone"):
        items = [it for it in items if it.fps in (None, fps)]
    if not items:
        where = f" at {fps} fps" if fps is not None and subset.endswith("drone") else ""
        raise DataError(f"{getattr(index, 'root', None) or 'dataset'}: no test/{subset} items{where}")
    return items


def descriptors(
    model: Any,
    items: list[ViewItem],
    *,
    views: int,
    img_size: int,
    batch_size: int = 32,
    num_workers: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[torch.Tensor, np.ndarray]:
    """Flip-TTA descriptors [N,D] (float32, CPU) and int(building) labels [N] of ``items``.

    Drone videos: V deterministic frames per video, each frame normalise(f(x) + f(hflip x)),
    fused by the model's refiner; other views: one image each.
    """
    image = getattr(model, "image_config", IMAGENET)  # the backbone's normalisation and interpolation
    dataset = ViewDataset(items, views=views, img_size=img_size, image=image)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    view = items[0].view
    feats, labels = [], []
    with torch.inference_mode():
        for batch, label in loader:  # batch [B,V,3,H,W] (drone) or [B,3,H,W]
            desc = extract_descriptors(
                model, batch.to(device), flip=True, view=view, batch_size=batch_size * views
            )
            feats.append(desc.float().cpu())  # [B,D]
            labels.append(label)
            if progress is not None:
                progress(sum(len(f) for f in feats), len(items), items[0].subset)
    return torch.cat(feats), torch.cat(labels).numpy()


def evaluate(
    model: Any,
    index: DatasetIndex,
    *,
    views: int,
    img_size: int,
    batch_size: int = 32,
    fps: int | None = None,
    num_workers: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Both directions on the test split: {"drone->satellite": metrics, "satellite->drone": metrics}.

    ``fps`` keeps only drone videos sampled at that rate (an index may mix rates).
    ``progress(done, total, subset)`` is called after each batch (the CLI draws bars with it).
    """
    cache: dict[str, tuple[torch.Tensor, np.ndarray]] = {}

    def subset_descriptors(subset: str) -> tuple[torch.Tensor, np.ndarray]:
        if subset not in cache:
            cache[subset] = descriptors(
                model,
                _items(index, subset, fps),
                views=views,
                img_size=img_size,
                batch_size=batch_size,
                num_workers=num_workers,
                progress=progress,
            )
        return cache[subset]

    result = {}
    for direction, (query, gallery) in DIRECTIONS.items():
        qf, ql = subset_descriptors(query)
        gf, gl = subset_descriptors(gallery)
        result[direction] = retrieval_metrics(qf, ql, gf, gl)
    return result


def format_table(result: dict[str, dict[str, float]]) -> str:
    """Both directions as the published tables print them: R@1, R@5, R@10, R@top1%, AP (percent)."""
    headers = ["direction"] + [h for h, _ in TABLE_COLUMNS] + ["AP"]
    keys = [k for _, k in TABLE_COLUMNS] + ["ap"]
    rows = [[direction] + [f"{metrics[k]:.2f}" for k in keys] for direction, metrics in result.items()]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [headers, *rows]
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- judging training


def epoch_evaluator(cfg: Any) -> Callable[[Any, int], dict[str, float]]:
    """``evaluate`` on ``cfg``'s test split at its views / fps / img_size, as flat metric keys.

    What ``train.loop.fit`` calls after an epoch (``evaluate_fn``). Training sits below
    evaluation in the layer order, so the evaluator is handed to ``fit`` from here, never imported
    by it. The dataset index is opened on the first call, after ``fit`` has synthesised the data.
    """
    from geodistill.eval.names import flatten_metrics
    from geodistill.train.batches import open_dataset

    index: DatasetIndex | None = None

    def evaluate_fn(model: Any, epoch: int) -> dict[str, float]:
        nonlocal index
        if index is None:
            index = open_dataset(cfg)
        result = evaluate(model, index, views=cfg.data.views, img_size=cfg.data.img_size, fps=cfg.data.fps)
        return flatten_metrics(result)

    return evaluate_fn


def fit_evaluated(cfg: Any, *, context: Any) -> Any:
    """``train.loop.fit`` judged after every evaluated epoch by ``epoch_evaluator`` (the default objective)."""
    from geodistill.train.loop import fit

    return fit(cfg, context=context, evaluate_fn=epoch_evaluator(cfg))

"""geodistill.eval: the retrieval protocol (Recall@K, AP), evaluation on a test split, metric names.

Names load lazily: ``geodistill.eval.names`` (metric names, no torch) can be read by the
leaderboard without importing torch.
"""

from __future__ import annotations

from geodistill.lazy import lazy_exports

_HOME = {
    "DIRECTIONS": "names",
    "METRIC_KEYS": "names",
    "OBJECTIVE_METRICS": "names",
    "flatten_metrics": "names",
    "nested_metrics": "names",
    "descriptors": "evaluation",
    "epoch_evaluator": "evaluation",
    "evaluate": "evaluation",
    "fit_evaluated": "evaluation",
    "format_table": "evaluation",
    "metrics_from_ranks": "metrics",
    "retrieval_metrics": "metrics",
    "top1_index": "metrics",
    "video_descriptors": "metrics",
}

__all__ = sorted(_HOME)
__getattr__, __dir__ = lazy_exports(__name__, _HOME)

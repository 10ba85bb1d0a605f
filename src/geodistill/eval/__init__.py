"""geodistill.eval: the retrieval protocol (Recall@K, AP) and evaluation on a test split."""

from geodistill.eval.evaluate import DIRECTIONS, descriptors, evaluate, format_table
from geodistill.eval.flatten import FLAT_METRIC_KEYS, flatten_metrics
from geodistill.eval.metrics import metrics_from_ranks, retrieval_metrics, top1_index, video_descriptors

__all__ = [
    "DIRECTIONS",
    "FLAT_METRIC_KEYS",
    "descriptors",
    "evaluate",
    "flatten_metrics",
    "format_table",
    "metrics_from_ranks",
    "retrieval_metrics",
    "top1_index",
    "video_descriptors",
]

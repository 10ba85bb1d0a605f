"""geodistill.eval: the retrieval protocol (Recall@K, AP) and descriptor extraction for evaluation."""

from geodistill.eval.metrics import metrics_from_ranks, retrieval_metrics, top1_index, video_descriptors

__all__ = ["metrics_from_ranks", "retrieval_metrics", "top1_index", "video_descriptors"]

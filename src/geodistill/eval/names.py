"""Metric names, one home: retrieval directions, nested metric names and their flat keys.

``evaluate`` returns ``{"drone->satellite": {"recall@1": ..}, ..}``; training reports, the
leaderboard's columns, search objectives and reports all use the flat keys
(``d2s_recall1``, ``s2d_ap``, ...). Every module that names a metric imports it from here.
This module imports nothing heavy (no torch), so the leaderboard can read it.
"""

from __future__ import annotations

from collections.abc import Mapping

DIRECTIONS = {  # direction -> (query subset, gallery subset) of a test split
    "drone->satellite": ("query_drone", "gallery_satellite"),
    "satellite->drone": ("query_satellite", "gallery_drone"),
}
DIRECTION_PREFIXES = {"drone->satellite": "d2s", "satellite->drone": "s2d"}
METRIC_SUFFIXES = {  # evaluate's metric name -> the suffix of its flat key
    "recall@1": "recall1",
    "recall@5": "recall5",
    "recall@10": "recall10",
    "recall@top1": "recall_top1",
    "ap": "ap",
}
# Every flat key, direction-major: d2s_recall1 .. d2s_ap, s2d_recall1 .. s2d_ap (the
# leaderboard's metric columns, in this order).
METRIC_KEYS = tuple(
    f"{prefix}_{suffix}" for prefix in DIRECTION_PREFIXES.values() for suffix in METRIC_SUFFIXES.values()
)
# The keys a search may optimise (higher is better): Recall@1 and AP in both directions.
OBJECTIVE_METRICS = ("d2s_recall1", "d2s_ap", "s2d_recall1", "s2d_ap")
# Display labels of the metrics, for tables and plots.
METRIC_LABELS = {"recall1": "R@1", "recall5": "R@5", "recall10": "R@10", "recall_top1": "R@top1%", "ap": "AP"}
DIRECTION_LABELS = {"d2s": "drone→satellite", "s2d": "satellite→drone"}


def flatten_metrics(result: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``evaluate``'s {"drone->satellite": {"recall@1": ..}, ..} -> {"d2s_recall1": .., "s2d_ap": ..}.

    A direction missing from ``result`` is left out; an unknown direction or metric name is
    an error (a silently dropped column would be worse).
    """
    flat: dict[str, float] = {}
    for direction, metrics in result.items():
        if direction not in DIRECTION_PREFIXES:
            raise KeyError(f"unknown retrieval direction {direction!r}")
        prefix = DIRECTION_PREFIXES[direction]
        for name, value in metrics.items():
            if name not in METRIC_SUFFIXES:
                raise KeyError(f"unknown retrieval metric {name!r}")
            flat[f"{prefix}_{METRIC_SUFFIXES[name]}"] = float(value)
    return flat


def nested_metrics(flat: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """Flat keys back to ``evaluate``'s nested form; a direction missing any metric is left out."""
    nested = {}
    for direction, prefix in DIRECTION_PREFIXES.items():
        values = {
            name: flat[f"{prefix}_{suffix}"]
            for name, suffix in METRIC_SUFFIXES.items()
            if f"{prefix}_{suffix}" in flat
        }
        if len(values) == len(METRIC_SUFFIXES):
            nested[direction] = values
    return nested


def metric_label(key: str) -> str:
    """``d2s_recall1`` -> ``R@1 (%, drone→satellite)`` (for plot axes)."""
    direction, _, name = key.partition("_")
    return f"{METRIC_LABELS.get(name, name)} (%, {DIRECTION_LABELS.get(direction, direction)})"

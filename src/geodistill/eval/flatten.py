"""Flat metric names: the keys training reports and the leaderboard stores as columns."""

from __future__ import annotations

from collections.abc import Mapping

DIRECTION_PREFIXES = {"drone->satellite": "d2s", "satellite->drone": "s2d"}
METRIC_SUFFIXES = {
    "recall@1": "recall1",
    "recall@5": "recall5",
    "recall@10": "recall10",
    "recall@top1": "recall_top1",
    "ap": "ap",
}
FLAT_METRIC_KEYS = tuple(
    f"{prefix}_{suffix}" for prefix in DIRECTION_PREFIXES.values() for suffix in METRIC_SUFFIXES.values()
)


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

"""Metric names have one home: eval.names. The store's columns and the search's objectives use it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from geodistill.eval.names import (
    METRIC_KEYS,
    OBJECTIVE_METRICS,
    flatten_metrics,
    metric_label,
    nested_metrics,
)
from geodistill.leaderboard import SCHEMA

NESTED = {
    "drone->satellite": {"recall@1": 50.0, "recall@5": 60, "recall@10": 70, "recall@top1": 80, "ap": 55},
    "satellite->drone": {"recall@1": 40.0, "recall@5": 41, "recall@10": 42, "recall@top1": 43, "ap": 44},
}


def test_flat_keys_are_the_leaderboard_metric_columns_in_order():
    assert METRIC_KEYS == (
        "d2s_recall1", "d2s_recall5", "d2s_recall10", "d2s_recall_top1", "d2s_ap",
        "s2d_recall1", "s2d_recall5", "s2d_recall10", "s2d_recall_top1", "s2d_ap",
    )  # fmt: skip
    float_columns = [f.name for f in SCHEMA if f.name.startswith(("d2s_", "s2d_"))]
    assert tuple(float_columns) == METRIC_KEYS
    assert set(OBJECTIVE_METRICS) <= set(METRIC_KEYS)


def test_flatten_and_nest_are_inverse():
    flat = flatten_metrics(NESTED)
    assert flat["d2s_recall1"] == 50.0 and flat["s2d_ap"] == 44.0 and len(flat) == 10
    assert nested_metrics(flat) == {d: {k: float(v) for k, v in m.items()} for d, m in NESTED.items()}
    del flat["s2d_ap"]  # an incomplete direction is left out
    assert list(nested_metrics(flat)) == ["drone->satellite"]
    with pytest.raises(KeyError, match="unknown retrieval metric"):
        flatten_metrics({"drone->satellite": {"recall@2": 1.0}})


def test_labels():
    assert metric_label("d2s_recall1") == "R@1 (%, drone→satellite)"
    assert metric_label("s2d_ap") == "AP (%, satellite→drone)"


def test_the_leaderboard_reads_metric_names_without_importing_torch():
    code = "import sys, geodistill.leaderboard, geodistill.eval.names; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_lazy_names_resolve_to_the_functions_in_any_order():
    code = (
        "from geodistill.eval import format_table\n"
        "from geodistill.eval import evaluate, descriptors\n"
        "assert callable(evaluate) and callable(descriptors) and callable(format_table)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

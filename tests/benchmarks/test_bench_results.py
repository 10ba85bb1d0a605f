"""RESULTS.md's generated tables are exactly what benchmarks/results.json (one `make bench` run) holds."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _render_module(name: str = "render_results"):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_md_matches_results_json():
    render = _render_module()
    results = json.loads((BENCH / "results.json").read_text())
    block = render.generated_block((BENCH / "RESULTS.md").read_text())
    assert block is not None, "RESULTS.md has no generated block; run benchmarks/render_results.py"
    assert block == render.render(results), "RESULTS.md is stale: run benchmarks/render_results.py"


def test_results_json_records_the_run():
    results = json.loads((BENCH / "results.json").read_text())
    assert results["date"] and results["machine"]["cores"] and len(results["load_before"]) == 3
    for name, bench in results["benchmarks"].items():
        assert (BENCH / f"{name}.py").is_file(), name
        keys = [f["key"] for f in bench["figures"]]
        assert len(keys) == len(set(keys)), f"{name}: duplicate figure keys"


def test_render_shows_every_figure_and_its_anchor():
    render = _render_module()
    results = {
        "date": "2026-01-01T00:00:00Z",
        "commit": "abc",
        "dirty": False,
        "machine": {"cpu": "cpu", "cores": 2, "memory_gib": 24},
        "load_before": [1.0, 1.0, 1.0],
        "load_after": [2.0, 2.0, 2.0],
        "benchmarks": {
            "bench_x": {
                "script": "benchmarks/bench_x.py",
                "exit_code": 0,
                "seconds": 1.0,
                "load_before": [1.0, 1.0, 1.0],
                "load_after": [1.5, 1.0, 1.0],
                "figures": [
                    {
                        "key": "a",
                        "value": 1.234,
                        "unit": "x",
                        "label": "ours / limit",
                        "anchor": None,
                        "limit": "matmul",
                    },
                    {
                        "key": "b",
                        "value": True,
                        "unit": "",
                        "label": "identical",
                        "anchor": "loop",
                        "limit": None,
                    },
                ],
            }
        },
    }
    text = render.render(results)
    assert "| ours / limit | 1.23 x |" in text and "| identical | True |" in text
    assert "- anchor: loop" in text and "- limit: matmul" in text
    assert render.generated_block(f"x\n{render.BEGIN}\n{text}{render.END}\ny") == text


@pytest.mark.parametrize("missing", ["begin", "end"])
def test_generated_block_needs_both_markers(missing):
    render = _render_module()
    text = f"{render.BEGIN}\nx\n" if missing == "end" else f"x\n{render.END}\n"
    assert render.generated_block(text) is None


def test_render_shows_spread_seeds_ahead_and_a_merged_run():
    render = _render_module()
    bench = {
        "script": "benchmarks/pfed_evidence.py",
        "args": ["--out", "DIR", "--from-runs"],
        "date": "2025-12-31T00:00:00Z",  # kept from an earlier run by run_all.py --merge
        "commit": "0123456789abcdef",
        "exit_code": 0,
        "seconds": 3.0,
        "load_before": [1.0, 1.0, 1.0],
        "load_after": [1.0, 1.0, 1.0],
        "figures": [
            {"key": "d", "value": -1.25, "unit": "pts", "label": "+x − base", "anchor": None, "limit": None,
             "sd": 2.5, "ahead": 1, "behind": 2, "seeds": 3},
        ],
    }  # fmt: skip
    results = {
        "date": "2026-01-01T00:00:00Z",
        "commit": "abc",
        "machine": {"cpu": "cpu", "cores": 2, "memory_gib": 24},
        "load_before": [1.0, 1.0, 1.0],
        "load_after": [2.0, 2.0, 2.0],
        "benchmarks": {"pfed_evidence": bench},
    }
    text = render.render(results)
    assert "| +x − base | -1.25 pts (sd 2.5; ahead on 1/3 seeds, behind on 2) |" in text
    assert (
        "### benchmarks/pfed_evidence.py `--out DIR --from-runs` — ok, run 2025-12-31T00:00:00Z at `0123456789ab`,"
        in text
    )


def test_a_merged_rerun_keeps_the_earlier_order_and_dates_what_it_kept():
    merged = _render_module("run_all").merged
    earlier = {
        "date": "2026-01-01T00:00:00Z",
        "commit": "abc",
        "benchmarks": {"bench_a": {"seconds": 1}, "bench_b": {"seconds": 2}, "bench_c": {"seconds": 3}},
    }
    out = merged(earlier, {"bench_new": {"seconds": 9}, "bench_b": {"seconds": 5}})
    assert list(out) == ["bench_a", "bench_b", "bench_c", "bench_new"]
    assert out["bench_b"] == {"seconds": 5}  # re-run: its own entry, no earlier date
    assert out["bench_a"] == {"date": "2026-01-01T00:00:00Z", "commit": "abc", "seconds": 1}

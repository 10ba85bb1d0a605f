"""Every benchmark runs at its smoke size, so a benchmark that crashes fails CI (second tier).

`make bench` runs them at full size (minutes each) and is not part of CI; issue 29 found
bench_search.py crashing on a fresh clone while `.ci/run` passed. ``run_all.py --smoke`` runs
each ``bench_*.py`` with its entry of ``SMOKE`` (toy sizes, same code paths).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[2] / "benchmarks"


def test_every_benchmark_has_a_smoke_size():
    sys.path.insert(0, str(HERE))
    try:
        from run_all import SMOKE
    finally:
        sys.path.remove(str(HERE))
    assert sorted(SMOKE) == sorted(p.stem for p in HERE.glob("bench_*.py"))


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_every_benchmark_runs_at_its_smoke_size(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(HERE / "run_all.py"), "--smoke", "--out", str(out), "--timeout", "900"],
        capture_output=True, text=True, timeout=3500,
    )  # fmt: skip
    results = json.loads(out.read_text())["benchmarks"]
    assert sorted(results) == sorted(p.stem for p in HERE.glob("bench_*.py"))
    failed = {name: b["output"][-1500:] for name, b in results.items() if b["exit_code"]}
    assert failed == {}, proc.stderr[-4000:]

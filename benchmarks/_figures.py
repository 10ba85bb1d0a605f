"""Figures a benchmark prints, recorded for ``benchmarks/results.json`` (see ``run_all.py``).

Every benchmark reports through ``figure(...)``: it prints the line a reader sees and keeps
the value, its unit, and what it is measured against — the *anchor* (the established way of
doing the same job, e.g. the published evaluation loop) and, where one exists, the *limit*
(what no method can beat, e.g. the bare score matmul). ``run_all.py`` runs each benchmark in
its own process with ``GEODISTILL_FIGURES`` set to a file, and this module appends the
figures there as JSON lines; run by hand, a benchmark just prints.
"""

from __future__ import annotations

import json
import os
from typing import Any

FIGURES_ENV = "GEODISTILL_FIGURES"


def figure(
    key: str,
    value: float | int | str | bool,
    unit: str = "",
    *,
    label: str = "",
    anchor: str | None = None,
    limit: str | None = None,
    **extra: Any,
) -> None:
    """Print ``label: value unit`` and record it under ``key`` (unique within the benchmark)."""
    shown = f"{value:.4g}" if isinstance(value, float) else str(value)
    print(f"  {label or key}: {shown} {unit}".rstrip(), flush=True)
    path = os.environ.get(FIGURES_ENV)
    if not path:
        return
    row = {"key": key, "value": value, "unit": unit, "label": label or key, "anchor": anchor, "limit": limit}
    with open(path, "a") as f:
        f.write(json.dumps({**row, **extra}) + "\n")

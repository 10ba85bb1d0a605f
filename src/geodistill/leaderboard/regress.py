"""Regression gates: a checkpoint against its baseline file, or an experiment's front against another's.

A baseline YAML pins what a released or accepted checkpoint must still do::

    name: video2bev-univ45            # experiment name of the rows written (stage "baseline")
    dataset: {name: UniV, root: data/UniV, elevation: 45, fps: 2, views: 1, img_size: 256}
    golden_input: {seed: 0, batch: 2} # the fixed input of the golden descriptors
    checkpoints:
      - name: net_059
        kind: video2bev               # video2bev (a released .pth) | geodistill (a checkpoint dir/file)
        path: net_059.pth             # relative paths are relative to the YAML
        sha256: 9f2c...               # null: not pinned yet
        golden: net_059.golden.npy    # descriptors of the golden input (rtol 1e-3, atol 1e-4)
        expected:
          metrics: {d2s_recall1: {value: 57.3, tol: 0.3}}     # absolute points; value null: to confirm
          cost: {params_m: {value: 57.1}, gflops: {value: 33.2, rel_tol: 1.0e-6}}  # exact unless rel_tol

This module is the comparison and the gate: it parses baselines, compares measured values with
expected ones (``tol_check``) and fronts with fronts (``compare_fronts``), and fails a gate.
Measuring a checkpoint (loading it, evaluating it on data) needs the lower layers and lives in
``geodistill.platform.baseline`` (``run_baseline``); this module imports eval names only.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from geodistill.errors import ConfigError, RegressionFailure, one_line
from geodistill.eval.names import METRIC_KEYS
from geodistill.leaderboard.pareto import hypervolume, pareto_rows
from geodistill.schema import SEED_MAX, check_fields, declared_keys, setting

KINDS = ("video2bev", "geodistill")
COST_KEYS = ("params_m", "gflops", "gmacs")
DEFAULT_METRIC_TOL = 0.3  # points
EXACT_REL_TOL = 1e-9  # "exact" for floats that went through YAML
GOLDEN_RTOL, GOLDEN_ATOL = 1e-3, 1e-4
TO_CONFIRM = "to be confirmed"


@dataclass
class Check:
    """One line of the expected-vs-measured table. ``ok`` None: measured only, not gating."""

    subject: str  # checkpoint name (or experiment point)
    what: str  # metric / cost / golden / front
    expected: str
    measured: str
    tolerance: str
    ok: bool | None

    @property
    def verdict(self) -> str:
        return {True: "ok", False: "REGRESSED", None: "info"}[self.ok]


@dataclass
class GateResult:
    checks: list[Check] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.ok is False]


def format_checks(checks: list[Check]) -> str:
    """The expected-vs-measured table as aligned text."""
    header = ("subject", "check", "expected", "measured", "tolerance", "result")
    rows = [header] + [(c.subject, c.what, c.expected, c.measured, c.tolerance, c.verdict) for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---- the baseline file ----------------------------------------------------------------------
def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where} must be a number or null, got {value!r}")
    return float(value)


def _tolerances(section: Any, keys: tuple[str, ...], where: str) -> dict[str, dict[str, float | None]]:
    """{"key": {"value": .., "tol"/"rel_tol": ..}} (a bare number means {"value": number})."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ConfigError(f"{where} must be a mapping")
    out = {}
    for key, spec in section.items():
        if key not in keys:
            raise ConfigError(f"{where}: unknown key {key!r} (expected one of {', '.join(keys)})")
        spec = spec if isinstance(spec, dict) else {"value": spec}
        unknown = set(spec) - {"value", "tol", "rel_tol"}
        if unknown:
            raise ConfigError(f"{where}.{key}: unknown field(s) {', '.join(sorted(unknown))}")
        out[key] = {
            name: _number(spec.get(name), f"{where}.{key}.{name}") for name in ("value", "tol", "rel_tol")
        }
    return out


@dataclass
class BaselineDataset:
    """The ``dataset:`` block of a baseline file; each field declares what it accepts (geodistill.schema)."""

    name: str | None = setting(None, kind="text")
    root: str | None = setting(None, kind="text")  # relative to the baseline file; checked when used
    elevation: int = setting(45, choices=(30, 45))
    fps: int = setting(2, choices=(2, 5, 10))
    views: int = setting(1, ge=1, le=1024)
    img_size: int = setting(256, ge=8, le=4096)
    batch_size: int = setting(16, ge=1, le=65536)


@dataclass
class GoldenInput:
    """The ``golden_input:`` block: the seeded batch whose descriptors are pinned."""

    seed: int = setting(0, ge=0, le=SEED_MAX)
    batch: int = setting(2, ge=1, le=1024)


def _declared(cls: type, data: dict[str, Any], where: str) -> Any:
    """``cls(**data)`` with each value type-checked and checked against its declared rule."""
    values = {}
    for name, (hint, _rule) in declared_keys(cls).items():
        if name not in data or data[name] is None:
            continue
        value = data[name]
        want = int if hint in (int, int | None) else str
        if isinstance(value, bool) or not isinstance(value, want):
            raise ConfigError(f"{where}.{name} must be {want.__name__}, got {value!r}")
        values[name] = value
    obj = cls(**values)
    check_fields(obj, f"{where}.")
    return obj


def load_baseline(path: str | Path) -> dict[str, Any]:
    """Parse and validate a baseline YAML (one-line ConfigError naming the bad key)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"baseline file not found: {path}") from None
    except OSError as err:
        raise ConfigError(f"cannot read baseline {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot parse baseline {path}: {one_line(err)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"baseline {path} is not a mapping")
    unknown = set(data) - {"name", "description", "status", "dataset", "golden_input", "checkpoints"}
    if unknown:
        raise ConfigError(f"baseline {path}: unknown key(s) {', '.join(sorted(unknown))}")
    dataset = data.get("dataset") or {}
    if not isinstance(dataset, dict):
        raise ConfigError(f"baseline {path}: 'dataset' must be a mapping")
    extra = set(dataset) - {"name", "root", "elevation", "fps", "views", "img_size", "batch_size"}
    if extra:
        raise ConfigError(f"baseline {path}: unknown dataset key(s) {', '.join(sorted(extra))}")
    checkpoints = data.get("checkpoints")
    if not isinstance(checkpoints, list) or not checkpoints:
        raise ConfigError(f"baseline {path}: 'checkpoints' must be a non-empty list")
    parsed = []
    for i, ck in enumerate(checkpoints):
        where = f"checkpoints[{i}]"
        if not isinstance(ck, dict) or not ck.get("path"):
            raise ConfigError(f"baseline {path}: {where} needs a 'path'")
        bad = set(ck) - {"name", "kind", "path", "sha256", "golden", "expected", "note"}
        if bad:
            raise ConfigError(f"baseline {path}: {where}: unknown key(s) {', '.join(sorted(bad))}")
        kind = ck.get("kind", "geodistill")
        if kind not in KINDS:
            raise ConfigError(
                f"baseline {path}: {where}.kind must be one of {', '.join(KINDS)}, got {kind!r}"
            )
        expected = ck.get("expected") or {}
        if not isinstance(expected, dict) or set(expected) - {"metrics", "cost"}:
            raise ConfigError(f"baseline {path}: {where}.expected takes 'metrics' and 'cost'")
        parsed.append(
            {
                "name": str(ck.get("name") or Path(str(ck["path"])).stem),
                "kind": kind,
                "path": str(ck["path"]),
                "sha256": (str(ck["sha256"]).lower() if ck.get("sha256") else None),
                "golden": ck.get("golden"),
                "metrics": _tolerances(expected.get("metrics"), METRIC_KEYS, f"{where}.expected.metrics"),
                "cost": _tolerances(expected.get("cost"), COST_KEYS, f"{where}.expected.cost"),
            }
        )
    golden_input = data.get("golden_input") or {}
    if not isinstance(golden_input, dict) or set(golden_input) - {"seed", "batch"}:
        raise ConfigError(f"baseline {path}: golden_input takes 'seed' and 'batch'")
    return {
        "name": str(data.get("name") or path.stem),
        "dir": path.resolve().parent,
        "dataset": asdict(_declared(BaselineDataset, dataset, f"baseline {path}: dataset")),
        "golden_input": asdict(_declared(GoldenInput, golden_input, f"baseline {path}: golden_input")),
        "checkpoints": parsed,
    }


def tol_check(subject: str, what: str, exp: dict, measured: float | None, *, absolute: bool) -> Check:
    """One expected-vs-measured line: metrics regress only downwards, cost must match both ways."""
    value = exp["value"]
    if absolute:
        tol = exp["tol"] if exp["tol"] is not None else DEFAULT_METRIC_TOL
        tol_text = f"±{tol:g}"
    else:
        rel = exp["rel_tol"] if exp["rel_tol"] is not None else EXACT_REL_TOL
        tol = rel * abs(value) if value is not None else 0.0
        tol_text = "exact" if exp["rel_tol"] is None else f"rel {rel:g}"
    shown = "–" if measured is None else exact(measured)
    if value is None:
        return Check(subject, what, TO_CONFIRM, shown, tol_text, None)
    if measured is None or not math.isfinite(measured):
        return Check(subject, what, exact(value), shown, tol_text, False)
    # Metrics regress only downwards (better is fine); cost must match both ways.
    ok = measured >= value - tol if absolute else abs(measured - value) <= tol
    return Check(subject, what, exact(value), shown, tol_text, bool(ok))


def exact(value: float) -> str:
    """A number as Python's shortest round-trip text: pasted into a baseline YAML it reads back
    as the same float, so a value pinned from the table passes the exact cost check."""
    return repr(float(value))


# ---- experiment against experiment -----------------------------------------------------------
def compare_fronts(
    frame: pl.DataFrame,
    experiment: str,
    against: str,
    *,
    metric: str = "d2s_recall1",
    tol: float = DEFAULT_METRIC_TOL,
    cost_slack: float = 1e-6,
) -> list[Check]:
    """Does ``experiment``'s (metric up, GFLOPs down) front fall below ``against``'s anywhere?

    Point by point: every reference front point needs a new point at most its cost (times
    1 + ``cost_slack``) and at least its metric minus ``tol``. Overall: the new hypervolume must
    not be smaller than the reference's minus ``tol`` x the cost range (reference point:
    metric 0, 2 x the largest cost of either front).
    """
    if metric not in METRIC_KEYS:
        raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(METRIC_KEYS)}")

    def front(name: str) -> np.ndarray:
        rows = pareto_rows(frame.filter(pl.col("experiment") == name), metric)
        if rows.is_empty():
            raise ConfigError(f"experiment {name!r} has no finished rows with {metric} and gflops")
        return rows.select(metric, "gflops").to_numpy().astype(np.float64)  # [N,2], cheapest first

    new, ref = front(experiment), front(against)
    checks = []
    for r_metric, r_cost in ref:
        affordable = new[new[:, 1] <= r_cost * (1 + cost_slack)]
        best = float(affordable[:, 0].max()) if len(affordable) else None
        ok = best is not None and best >= r_metric - tol
        checks.append(
            Check(
                f"@{r_cost:.4g} GFLOPs",
                f"best {metric}",
                f"{r_metric:.4f}",
                "none this cheap" if best is None else f"{best:.4f}",
                f"±{tol:g}",
                bool(ok),
            )
        )
    reference = [0.0, 2.0 * float(max(new[:, 1].max(), ref[:, 1].max()))]
    hv_new = hypervolume(new, reference, [True, False])
    hv_ref = hypervolume(ref, reference, [True, False])
    slack = tol * reference[1]
    checks.append(
        Check(
            "front",
            "hypervolume",
            f"{hv_ref:.4g}",
            f"{hv_new:.4g}",
            f"-{slack:g}",
            bool(hv_new >= hv_ref - slack),
        )
    )
    return checks


def gate(checks: list[Check]) -> None:
    """Raise RegressionFailure (exit 1) naming what regressed, if anything did."""
    failed = [c for c in checks if c.ok is False]
    if failed:
        names = ", ".join(f"{c.subject} {c.what}" for c in failed[:5]) + (" …" if len(failed) > 5 else "")
        raise RegressionFailure(f"{len(failed)} of {len(checks)} checks regressed: {names}")


def checks_json(checks: list[Check]) -> str:
    return json.dumps([c.__dict__ | {"result": c.verdict} for c in checks], indent=2)

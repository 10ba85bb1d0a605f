"""Baseline files and the runner behind ``geodistill regress --baseline``.

A baseline (``conf/baseline/<name>.yaml``, ``DIR/baseline/`` with ``--config-dir DIR``, or a
path) pins what a released or accepted checkpoint must still do: its sha256, the descriptors
of a seeded golden input, its cost and its retrieval metrics on a dataset. ``load_baseline``
reads it through the one config loader into ``Baseline``; relative paths in it are relative
to the YAML file, or to the working directory for a packaged baseline (nothing the user owns
lives inside the installed package). ``run_baseline`` checks every checkpoint's sha256 before
the slow part, then per checkpoint ``_measure``: golden, cost and metric checks
(``leaderboard.regress.tol_check``) and its leaderboard row. Torch is imported when a gate runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from geodistill import config_files
from geodistill.data.index import ELEVATIONS, FPS_CHOICES
from geodistill.errors import CheckpointError, ConfigError
from geodistill.eval.names import METRIC_KEYS
from geodistill.leaderboard.columns import make_row, metrics_to_columns
from geodistill.leaderboard.regress import (
    DEFAULT_METRIC_TOL,
    GOLDEN_ATOL,
    GOLDEN_RTOL,
    Check,
    GateResult,
    Tolerance,
    tol_check,
)
from geodistill.leaderboard.store import Leaderboard
from geodistill.schema import SEED_MAX, setting

KINDS = ("video2bev", "geodistill")  # a released Video2BEV .pth | a geodistill checkpoint dir/file
COST_KEYS = ("params_m", "gflops", "gmacs")
GROUP = "baseline"


@dataclass
class BaselineDataset:
    """The ``dataset:`` block: where and how the checkpoints are evaluated."""

    name: str | None = setting(None, kind="text")
    root: str | None = setting(None, kind="text")  # relative to the baseline; checked when used
    elevation: int = setting(45, choices=ELEVATIONS)
    fps: int = setting(2, choices=FPS_CHOICES)
    views: int = setting(1, ge=1, le=1024)
    img_size: int = setting(256, ge=8, le=4096)
    batch_size: int = setting(16, ge=1, le=65536)


@dataclass
class GoldenInput:
    """The ``golden_input:`` block: the seeded batch whose descriptors are pinned."""

    seed: int = setting(0, ge=0, le=SEED_MAX)
    batch: int = setting(2, ge=1, le=1024)


@dataclass
class Expected:
    """A checkpoint's expected metrics (points) and cost; a bare number means ``{value: N}``."""

    metrics: dict[str, Tolerance] = setting(default_factory=dict, choices=METRIC_KEYS)
    cost: dict[str, Tolerance] = setting(default_factory=dict, choices=COST_KEYS)


@dataclass
class BaselineCheckpoint:
    """One pinned checkpoint (``checkpoints[i]``)."""

    path: str = setting(kind="text")  # relative paths: see the module docstring
    name: str | None = setting(None, kind="name")  # default: the file's stem
    kind: str = setting("geodistill", choices=KINDS)
    sha256: str | None = setting(None, kind="text")  # null: not pinned yet
    golden: str | None = setting(None, kind="text")  # .npy of the golden input's descriptors
    note: str | None = setting(None, kind="text")
    expected: Expected = field(default_factory=Expected)


@dataclass
class Baseline:
    """A baseline file, typed; ``dir`` (not in the file) is what relative paths are relative to."""

    checkpoints: list[BaselineCheckpoint] = setting(default_factory=list)
    name: str | None = setting(None, kind="name")  # experiment of the rows written; default: the file's stem
    description: str | None = setting(None, kind="text")
    status: str | None = setting(None, kind="text")
    dataset: BaselineDataset = field(default_factory=BaselineDataset)
    golden_input: GoldenInput = field(default_factory=GoldenInput)
    dir: Path = field(default=Path("."), metadata={"internal": True})


def load_baseline(name_or_path: str | Path, *, config_dir: str | Path | None = None) -> Baseline:
    """Read a baseline by name or path (one-line ConfigError naming the file and the bad key)."""
    path = config_files.resolve(GROUP, name_or_path, config_dir=config_dir)
    data = config_files.compose_file(GROUP, path)
    if "dir" in data:
        raise ConfigError(f"baseline {path.stem}: unknown config key dir")
    for ck in data.get("checkpoints") or []:
        expected = ck.get("expected") if isinstance(ck, dict) else None
        for section in (expected or {}).values() if isinstance(expected, dict) else ():
            for key, spec in (section or {}).items() if isinstance(section, dict) else ():
                if not isinstance(spec, dict):  # the short form: a bare expected value
                    section[key] = {"value": spec}
    baseline = config_files.typed(Baseline, data, f"baseline {path.stem}")
    if not baseline.checkpoints:
        raise ConfigError(f"baseline {path.stem}: checkpoints must be a non-empty list")
    packaged = path.is_relative_to(config_files.CONF_DIR)
    baseline.dir = Path.cwd() if packaged else path.parent
    baseline.name = baseline.name or path.stem
    for ck in baseline.checkpoints:
        ck.name = ck.name or Path(ck.path).stem
        ck.sha256 = ck.sha256.lower() if ck.sha256 else None
    return baseline


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _weights_file(kind: str, path: Path) -> Path:
    """The file whose sha256 the baseline pins: the .pth, or a checkpoint dir's model.safetensors."""
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_file():
        return path
    if kind == "video2bev":
        raise CheckpointError(f"{path}: a video2bev checkpoint is a file (net_EEE.pth), not a directory")
    from geodistill.train.checkpoint import MODEL_FILE, resolve_checkpoint

    target = resolve_checkpoint(path)
    return target / MODEL_FILE if target.is_dir() else target


def load_model(kind: str, path: Path):
    """(GeoModel in eval mode, meta dict) for a baseline entry."""
    if kind == "video2bev":
        from geodistill.models import load_video2bev

        return load_video2bev(path).eval(), {"format": "video2bev"}
    from geodistill.train.checkpoint import load_checkpoint

    model, meta = load_checkpoint(path)
    return model.eval(), meta


def golden_input(seed: int, batch: int, img_size: int):
    """The fixed input [batch,3,H,W] (standard normal, CPU generator ``seed``)."""
    import torch

    return torch.randn(batch, 3, img_size, img_size, generator=torch.Generator().manual_seed(seed))


def golden_descriptors(model, seed: int, batch: int, img_size: int) -> np.ndarray:
    """[2,batch,D] float32: the satellite and the drone encoders on the golden input (no flip)."""
    import torch

    x = golden_input(seed, batch, img_size)
    with torch.inference_mode():
        return np.stack([model.encode(x, view=v).float().numpy() for v in ("satellite", "drone")])


@dataclass
class _Entry:
    """One baseline checkpoint, checked and located."""

    spec: BaselineCheckpoint
    path: Path
    digest: str  # sha256 of its weights file
    golden: Path | None


def run_baseline(
    path: str | Path,
    *,
    data: str | Path | None = None,
    leaderboard: Leaderboard | None = None,
    write_golden: bool = False,
    experiment: str | None = None,
    config_dir: str | Path | None = None,
) -> GateResult:
    """Evaluate every checkpoint of a baseline (a name or a path); return the checks and the rows (written if asked).

    User errors (missing checkpoint, sha256 mismatch, pickled code, missing data or golden file)
    raise one-line UserErrors before anything is written. ``write_golden`` (re)creates the golden
    files and checks sha256 and cost only (no evaluation, no rows).
    """
    from geodistill.data import open_index

    baseline = load_baseline(path, config_dir=config_dir)
    ds = baseline.dataset
    entries = _checked_entries(baseline, write_golden=write_golden)
    root = _dataset_root(baseline, data, path)
    index = open_index(root, elevation=ds.elevation, fps=ds.fps)
    result = GateResult()
    for entry in entries:
        checks, row = _measure(
            entry,
            index,
            baseline,
            write_golden=write_golden,
            path=path,
            experiment=experiment or baseline.name,
        )
        result.checks += checks
        if row is not None:
            result.rows.append(row)
    if leaderboard is not None and result.rows:
        leaderboard.write(result.rows)
    return result


def _measure(
    entry: _Entry,
    index: Any,
    baseline: Baseline,
    *,
    write_golden: bool,
    path: str | Path,
    experiment: str,
) -> tuple[list[Check], dict[str, Any] | None]:
    """One checkpoint: its sha256, golden, cost and metric checks, and its row (None with ``write_golden``)."""
    from geodistill.models import profile

    ds, gi = baseline.dataset, baseline.golden_input
    name = entry.spec.name
    model, _meta = load_model(entry.spec.kind, entry.path)
    pinned = entry.spec.sha256
    # the full digest, so it can be pasted into the baseline's sha256 as printed
    checks = [Check(name, "sha256", pinned or "unpinned", entry.digest, "exact", True if pinned else None)]
    if entry.golden is not None:
        checks.append(_golden_check(name, model, entry.golden, gi, ds.img_size, write=write_golden))
    cost = profile(model, img_size=ds.img_size, views=ds.views, measure_latency=False)
    measured_cost = {"params_m": cost.params_m, "gflops": cost.gflops, "gmacs": cost.gmacs}
    checks += [
        tol_check(name, k, exp, measured_cost[k], absolute=False)
        for k, exp in entry.spec.expected.cost.items()
    ]
    if write_golden:  # only (re)creating golden files: no evaluation, no row
        return checks, None
    metrics = _evaluate(model, index, ds)
    checks += [
        tol_check(name, k, exp, metrics.get(k), absolute=True)
        for k, exp in entry.spec.expected.metrics.items()
    ]
    return checks, _baseline_row(entry, model, metrics, cost, checks, ds, path=path, experiment=experiment)


def _checked_entries(baseline: Baseline, *, write_golden: bool) -> list[_Entry]:
    """Every checkpoint exists and matches its pinned sha256 (and has its golden file), or a UserError."""
    from geodistill.models.weights_io import file_sha256

    entries = []
    for ck in baseline.checkpoints:
        ck_path = _resolve(baseline.dir, ck.path)
        weights = _weights_file(ck.kind, ck_path)
        digest = file_sha256(weights)
        if ck.sha256 is not None and digest != ck.sha256:
            raise CheckpointError(
                f"sha256 mismatch for {ck.name} ({weights}): baseline pins {ck.sha256}, file has {digest}"
            )
        golden = _resolve(baseline.dir, ck.golden) if ck.golden else None
        if golden is not None and not write_golden and not golden.is_file():
            raise ConfigError(f"golden descriptors not found: {golden} (create them with --write-golden)")
        entries.append(_Entry(ck, ck_path, digest, golden))
    return entries


def _dataset_root(baseline: Baseline, data: str | Path | None, path: str | Path) -> str | Path:
    """``--data``, else the baseline's dataset.root (relative to ``baseline.dir``)."""
    if data is not None:
        return data
    if baseline.dataset.root:
        return _resolve(baseline.dir, baseline.dataset.root)
    raise ConfigError(f"baseline {path}: no dataset root (set dataset.root or pass --data)")


def _golden_check(name: str, model, golden: Path, gi: GoldenInput, img_size: int, *, write: bool) -> Check:
    """Write the golden descriptors (``write``) or compare them with the stored ones."""
    got = golden_descriptors(model, gi.seed, gi.batch, img_size)
    if write:
        golden.parent.mkdir(parents=True, exist_ok=True)
        np.save(golden, got)
        return Check(name, "golden descriptors", "written", str(got.shape), "", None)
    want = np.load(golden)
    if want.shape != got.shape:
        return Check(name, "golden descriptors", str(want.shape), str(got.shape), "shape", False)
    diff = float(np.max(np.abs(got - want)))
    ok = bool(np.allclose(got, want, rtol=GOLDEN_RTOL, atol=GOLDEN_ATOL))
    tol = f"rtol {GOLDEN_RTOL:g} atol {GOLDEN_ATOL:g}"
    return Check(name, "golden descriptors", "stored", f"max |Δ| {diff:.2e}", tol, ok)


def _evaluate(model, index, ds: BaselineDataset) -> dict[str, float]:
    """The leaderboard's metric columns of ``model`` on the baseline's test split."""
    from geodistill.eval import evaluate

    result = evaluate(
        model, index, views=ds.views, img_size=ds.img_size, batch_size=ds.batch_size, fps=ds.fps
    )
    return metrics_to_columns(result)


def _baseline_row(
    entry: _Entry,
    model,
    metrics: dict[str, float],
    cost,
    checks: list[Check],
    ds: BaselineDataset,
    *,
    path: str | Path,
    experiment: str,
) -> dict[str, Any]:
    """The leaderboard row of one measured checkpoint (stage "baseline"; error names what regressed)."""
    regressed = [c.what for c in checks if c.ok is False]
    return make_row(
        experiment=experiment,
        trial_id=entry.spec.name,
        run_id=entry.digest[:16],
        stage="baseline",
        status="ok",
        error=("regressed: " + ", ".join(regressed)) if regressed else None,
        dataset_name=ds.name,
        dataset_elevation=ds.elevation,
        dataset_fps=ds.fps,
        backbone=model.cfg.backbone,
        img_size=ds.img_size,
        views=ds.views,
        refiner=model.cfg.refiner,
        **metrics,
        params_m=cost.params_m,
        gflops=cost.gflops,
        gmacs=cost.gmacs,
        flop_counter=cost.counter,
        device=cost.device,
        checkpoint_uri=str(entry.path.resolve()),
        config_json={
            "baseline": str(Path(path).name),
            "kind": entry.spec.kind,
            "dataset": dataclasses.asdict(ds),
        },
    )


def smoke_baseline(folder: str | Path) -> Path:
    """A complete tiny baseline for ``regress --smoke-test``: synthetic data, a random resnet18
    checkpoint at 32 px, its golden descriptors and expectations pinned from one measurement."""
    import torch

    from geodistill.data.synth import generate_univ
    from geodistill.models import GeoModel, ModelConfig, save_model
    from geodistill.models.weights_io import file_sha256

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = generate_univ(folder / "data", buildings=8, seed=0, img_size=32)
    torch.manual_seed(0)
    model = GeoModel(
        ModelConfig(backbone="resnet18", img_size=32, embed_dim=64, pooling="avg"), num_classes=4
    )
    weights = save_model(model.eval(), folder / "smoke.safetensors")
    spec = {
        "name": "regress-smoke",
        "dataset": {"name": "synthetic-univ", "root": str(data), "views": 2, "img_size": 32},
        "checkpoints": [
            {"name": "smoke", "kind": "geodistill", "path": weights.name, "sha256": file_sha256(weights)}
            | {"golden": "smoke.golden.npy"}
        ],
    }
    path = folder / "baseline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    run_baseline(path, write_golden=True)
    row = run_baseline(path).rows[0]
    spec["checkpoints"][0]["expected"] = {
        "metrics": {k: {"value": row[k], "tol": DEFAULT_METRIC_TOL} for k in ("d2s_recall1", "s2d_recall1")},
        "cost": {"params_m": row["params_m"], "gflops": {"value": row["gflops"], "rel_tol": 1e-6}},
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path

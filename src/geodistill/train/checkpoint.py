"""Training checkpoints: one directory per epoch, safe to load from anywhere.

Layout of a checkpoint directory (names in ``train.layout``; see docs/INTERFACES.md)::

    model.safetensors   the GeoModel's state_dict (what we publish)
    train_state.pt      optimizer / scheduler / adapters / RNG state for resuming
                        (tensors and plain containers only, read with weights_only=True)
    meta.json           written LAST, so its presence marks a complete checkpoint:
                        {"format", "epoch", "config" (RunConfig.to_dict()), "metrics",
                         "num_classes", "model_sha256"}

``load_checkpoint`` never executes pickled code: safetensors, or ``torch.load(weights_only=True)``
(a file that needs code to rebuild is refused with a one-line ``CheckpointError``).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from geodistill.errors import CheckpointError, ConfigError
from geodistill.models import GeoModel, ModelConfig, load_state_dict, model_from_config
from geodistill.models.weights_io import file_sha256, match_state_dict
from geodistill.train.config import RunConfig
from geodistill.train.context import latest_checkpoint_in
from geodistill.train.layout import FORMAT, META_FILE, MODEL_FILE, STATE_FILE


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_checkpoint(
    dir: str | Path,  # noqa: A002 - the contract's name
    model: GeoModel,
    *,
    config: RunConfig,
    metrics: dict[str, float],
    epoch: int,
    optimizer_state: dict | None = None,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``dir``/model.safetensors (+ train_state.pt) and then meta.json; return ``dir``.

    ``state_dict`` overrides ``model.state_dict()`` (a strategy that shards parameters gathers
    them first); ``optimizer_state`` is any weights-only-loadable dict (optimizer, scheduler,
    adapters, RNG) that resuming needs.
    """
    from safetensors.torch import save_file

    out = Path(dir)
    out.mkdir(parents=True, exist_ok=True)
    state = state_dict if state_dict is not None else model.state_dict()
    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    model_path = out / MODEL_FILE
    tmp = out / f".{MODEL_FILE}.tmp{os.getpid()}"
    save_file(state, str(tmp), metadata={"format": FORMAT})
    os.replace(tmp, model_path)
    if optimizer_state is not None:
        tmp_state = out / f".{STATE_FILE}.tmp{os.getpid()}"
        torch.save(optimizer_state, tmp_state)
        os.replace(tmp_state, out / STATE_FILE)
    meta = {
        "format": FORMAT,
        "epoch": int(epoch),
        "config": config.to_dict(),
        "metrics": {k: float(v) for k, v in metrics.items()},
        "num_classes": int(model.num_classes),
        "model_sha256": file_sha256(model_path),
    }
    _atomic_write_bytes(out / META_FILE, json.dumps(meta, indent=2, sort_keys=True).encode())
    return out


def copy_checkpoint(
    source: str | Path, dest: str | Path, *, with_state: bool = True, link: bool = False
) -> Path:
    """Copy a checkpoint directory to ``dest`` (replaced atomically); ``with_state=False`` leaves
    out train_state.pt (nothing resumes from a copy that is only evaluated or exported).

    ``link=True`` hard-links each file where the file system allows (a copy otherwise): the two
    folders share the bytes on disk, yet deleting either leaves the other whole. Safe because a
    checkpoint's files are never rewritten in place (``save_checkpoint`` replaces them).
    """
    source, dest = Path(source), Path(dest)
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names = (MODEL_FILE, STATE_FILE, META_FILE) if with_state else (MODEL_FILE, META_FILE)
    for name in names:
        if (source / name).is_file():
            (_link_or_copy if link else shutil.copy2)(source / name, tmp / name)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def _link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(source, dest)


SCRATCH_PREFIX = "geodistill-ckpt-"


def scratch_checkpoint_dir() -> Path:
    """A fresh scratch directory for one epoch's checkpoint, named after this process
    (``geodistill-ckpt-<pid>-*`` in the temp directory) so a later run can tell a killed run's
    leftovers from a live run's; ``remove_stale_scratch`` removes the former."""
    remove_stale_scratch()
    return Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))


def remove_stale_scratch(tmp: str | Path | None = None) -> list[Path]:
    """Remove scratch checkpoints whose process is gone (a run killed between writing one and
    handing it over leaves it behind: 130 MB each for a ResNet-18). Returns what was removed."""
    removed = []
    for path in Path(tmp or tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*-*"):
        pid = path.name.removeprefix(SCRATCH_PREFIX).split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint dir, a run dir (-> its latest epoch_NNNN), a search trial's folder (-> its
    latest checkpoint_NNNNNN) or a weight file -> the thing to load."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.is_dir():
        raise CheckpointError(f"checkpoint not found: {p}")
    if (p / META_FILE).is_file():
        return p
    for folder in (p / "checkpoints", p):
        latest = latest_checkpoint_in(folder)
        if latest is not None:
            return latest
    # a search trial's folder: Ray Tune names its checkpoints checkpoint_NNNNNN
    tune = sorted(c for c in p.glob("checkpoint_[0-9]*") if (c / META_FILE).is_file())
    if tune:
        return tune[-1]
    if (p / MODEL_FILE).is_file():
        raise CheckpointError(f"{p}: incomplete checkpoint (no {META_FILE}; it is written last)")
    raise CheckpointError(
        f"{p}: no checkpoint here (expected {META_FILE}, checkpoints/epoch_NNNN/ or a trial's checkpoint_NNNNNN/)"
    )


def read_meta(checkpoint_dir: str | Path) -> dict[str, Any]:
    """The parsed meta.json of a checkpoint directory (one-line CheckpointError when unusable)."""
    path = Path(checkpoint_dir) / META_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path.parent}: no {META_FILE}") from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} checkpoint")
    return meta


def load_checkpoint(path: str | Path, *, verify: bool = True) -> tuple[GeoModel, dict[str, Any]]:
    """Rebuild the GeoModel of a checkpoint and its meta dict (``meta["config"]`` is a plain dict).

    ``path``: a checkpoint directory; a run directory (its latest complete epoch); or a bare
    ``.safetensors`` / ``.pth`` file (config from a sibling meta.json, a Video2BEV release, or the
    ``model_config`` metadata that ``models.save_model`` writes). With ``verify`` the weights'
    sha256 must equal meta's ``model_sha256``.
    """
    target = resolve_checkpoint(path)
    if target.is_dir():
        meta = read_meta(target)
        weights = target / MODEL_FILE
        if verify and file_sha256(weights) != meta.get("model_sha256"):
            raise CheckpointError(f"{weights}: sha256 does not match meta.json (corrupt or replaced)")
        model_cfg = _model_config(meta["config"].get("model", {}), where=str(target))
        return _build(weights, model_cfg, int(meta["num_classes"])), meta
    return _load_bare_file(target)


def _model_config(d: dict, *, where: str) -> ModelConfig:
    """ModelConfig from a stored dict; backbone init weights are NOT reloaded (the checkpoint has them)."""
    try:
        cfg = RunConfig.from_dict({"model": dict(d)}).model
    except ConfigError as err:
        raise CheckpointError(f"{where}: bad model config in checkpoint: {err}") from None
    cfg.weights = None
    cfg.pretrained = False  # nor downloaded: the checkpoint's own weights replace them
    return cfg


def _build(weights: Path, model_cfg: ModelConfig, num_classes: int) -> GeoModel:
    state = load_state_dict(weights)
    model = model_from_config(model_cfg, num_classes)
    match_state_dict(model.state_dict(), state, what=str(weights))
    model.load_state_dict(state, strict=True)
    return model


def _load_bare_file(path: Path) -> tuple[GeoModel, dict[str, Any]]:
    sibling = path.parent / META_FILE
    if path.name == MODEL_FILE and sibling.is_file():
        return load_checkpoint(path.parent)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                raw = (fh.metadata() or {}).get("model_config")
        except Exception as err:  # noqa: BLE001 - any header problem is the user's file
            raise CheckpointError(f"cannot read safetensors file {path}: {err}") from None
        if raw is None:
            raise CheckpointError(f"{path}: no model config (no meta.json beside it, no metadata)")
        try:
            model_dict = ast.literal_eval(raw)  # save_model writes repr(asdict(cfg)): literals only
        except (ValueError, SyntaxError):
            raise CheckpointError(f"{path}: unreadable model_config metadata") from None
        state = load_state_dict(path)
        num_classes = _num_classes(state, path)
        model_cfg = _model_config(model_dict, where=str(path))
        model = _build(path, model_cfg, num_classes)
        return model, {
            "format": "bare-safetensors",
            "config": {"model": model_dict},
            "num_classes": num_classes,
        }
    state = load_state_dict(path)  # weights-only; refuses pickled code
    if any(k.startswith("model_1.") for k in state):
        from geodistill.models import load_video2bev

        model = load_video2bev(path)
        return model, {
            "format": "video2bev",
            "config": {"model": _asdict(model.cfg)},
            "num_classes": model.num_classes,
        }
    raise CheckpointError(f"{path}: unknown weight layout (no meta.json beside it, not a Video2BEV release)")


def _asdict(cfg: ModelConfig) -> dict:
    from dataclasses import asdict

    return asdict(cfg)


def _num_classes(state: dict[str, torch.Tensor], path: Path) -> int:
    key = "heads.0.classifier.0.weight"
    if key not in state:
        raise CheckpointError(f"{path}: missing key {key!r}")
    return int(state[key].shape[0])


def load_train_state(checkpoint_dir: str | Path) -> dict[str, Any] | None:
    """train_state.pt of a checkpoint (weights_only=True), or None when it has none."""
    path = Path(checkpoint_dir) / STATE_FILE
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - unpickling errors come in many types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"refusing to load {path}: {first}") from None

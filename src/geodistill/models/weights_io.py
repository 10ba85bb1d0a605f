"""Safe reading of weight files: safetensors, or ``torch.load(weights_only=True)``.

A file whose pickle needs code to rebuild is refused with one line and never executed; there
is no unsafe fallback.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch

from geodistill.errors import CheckpointError, one_line


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks): what checkpoints and baselines pin."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a flat ``name -> tensor`` mapping from ``path`` without running pickled code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"cannot read safetensors file {path}: {err}") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {path}: it needs pickled code to rebuild, which is never executed "
            f"(weights_only load failed: {one_line(err)})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {one_line(err)}") from None
    # Accept the common wrappers {"state_dict": ...} / {"model": ...}.
    if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} does not hold a state_dict (found {type(obj).__name__})")
    bad = next((k for k, v in obj.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise CheckpointError(f"{path}: entry {bad!r} is not a tensor")
    return dict(obj)


def match_state_dict(
    expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], *, what: str
) -> None:
    """Raise one CheckpointError line naming the first missing, unexpected or mis-shaped key."""
    for key, ref in expected.items():
        if key not in found:
            raise CheckpointError(f"{what}: missing key {key!r}")
        if tuple(found[key].shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{what}: shape mismatch for {key!r}: "
                f"checkpoint {tuple(found[key].shape)}, model {tuple(ref.shape)}"
            )
    extra = next((k for k in found if k not in expected), None)
    if extra is not None:
        raise CheckpointError(f"{what}: unexpected key {extra!r}")

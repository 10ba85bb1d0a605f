"""Safe reading of weight files: safetensors, or ``torch.load(weights_only=True)``.

A file whose pickle needs code to rebuild is refused with one line and never executed; there
is no unsafe fallback. ``model.weights`` files come from a path, ``file://``, ``hf-hub:`` or any
pyarrow.fs URI (``resolve_weights``) and load into a backbone through timm's own checkpoint
filter (``load_backbone_weights``).
"""

from __future__ import annotations

import hashlib
import pickle
import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from geodistill.errors import CheckpointError, WeightsUnavailableError, one_line


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


# ---------------------------------------------------------------------------- model.weights files

_HEAD_PREFIXES = ("head.", "fc.", "classifier.", "conv_head.", "head_drop")


def resolve_weights(uri: str) -> Path:
    """A local path for ``uri``: a path, ``file://``, ``hf-hub:ORG/NAME`` or any pyarrow.fs URI
    (``s3://``, ``gs://`` ...; copied once into ``~/.cache/geodistill/weights``)."""
    from urllib.parse import unquote, urlparse

    if uri.startswith("hf-hub:"):
        return _hub_file(uri.removeprefix("hf-hub:"))
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file") or len(parsed.scheme) == 1:  # a path (or a Windows drive)
        return Path(unquote(parsed.path) if parsed.scheme == "file" else uri).expanduser()
    import pyarrow.fs as pafs

    cache = Path("~/.cache/geodistill/weights").expanduser() / hashlib.sha256(uri.encode()).hexdigest()[:16]
    local = cache / Path(parsed.path).name
    if local.is_file():
        return local
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.tmp")
        with fs.open_input_stream(path) as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 22):
                dst.write(chunk)
        tmp.replace(local)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read weights {uri}: {str(err).splitlines()[0]}") from None
    return local


def _hub_file(repo: str) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, "model.safetensors"))
    except OSError as err:
        raise WeightsUnavailableError(
            f"weights hf-hub:{repo} are not available here ({type(err).__name__}); fetch them with "
            f"`hf download {repo}` where there is network, then set HF_HUB_OFFLINE=1"
        ) from None


def _timm_filter(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The family's timm ``checkpoint_filter_fn`` (what create_model(pretrained=True) applies):
    resamples position embeddings to the model's grid and maps original layouts to timm's."""
    fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if fn is None:
        return state
    try:
        return dict(fn(state, model))
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError):
        return state  # a layout the filter does not expect: the strict match below names the problem


def load_backbone_weights(backbone: nn.Module, path: str) -> None:
    """Load a timm-layout (or original, where timm's filter maps it) state_dict into the backbone.

    Read without running pickled code; classifier-head keys are ignored; then a strict match.
    """
    state = load_state_dict(resolve_weights(str(path)))
    own = backbone.model.state_dict()
    state = _timm_filter(backbone.model, state)
    state = {k: v for k, v in state.items() if k in own or not k.startswith(_HEAD_PREFIXES)}
    match_state_dict(own, state, what=f"backbone weights {path}")
    backbone.model.load_state_dict(state, strict=True)

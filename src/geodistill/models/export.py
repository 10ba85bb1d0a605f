"""A trained GeoModel's encoder(s) in timm's own layout, loadable without geodistill.

Each encoder is written with timm's ``save_for_hf`` (``model.safetensors`` and a
``config.json`` with the architecture, its constructor arguments and the pretrained config it
was trained with), so ``timm.create_model("local-dir:DIR", pretrained=True)`` loads it. Where
timm's own head pools the way the GeoModel does, the folded bottleneck becomes timm's
classifier and ``F.normalize(model(x))`` is the one-pass descriptor; otherwise (ConvNeXt's head
norms after pooling; GeM, LPN) the timm encoder goes out headless. Beside it, for every
backbone, ``DESCRIPTOR_FILE`` is the evaluated descriptor (flip TTA included) as one
``torch.export`` program that needs neither geodistill nor timm to load. Both are checked
against the GeoModel on a batch. Loading recipes: docs/design.md, "Exported encoders".
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from geodistill.models.geomodel import GeoModel

DESCRIPTOR_FILE = "descriptor.pt2"
META_FILE = "geodistill.json"  # inside DESCRIPTOR_FILE: torch.export.load(path, extra_files={META_FILE: ""})


@dataclass
class ExportedEncoder:
    view: str  # "shared" | "drone" | "satellite"
    path: Path  # the folder holding model.safetensors + config.json
    architecture: str
    descriptor_head: bool  # timm's classifier is the descriptor bottleneck (model(x) = descriptor)
    max_abs_diff: float  # |normalize(timm model(x)) - GeoModel descriptor|, or of pooled features
    program: Path  # DESCRIPTOR_FILE: images [B,3,S,S] -> the evaluated descriptors [B,D]
    program_max_abs_diff: float  # |loaded program(x) - extract_descriptors(GeoModel, x)|


def fold_bottleneck(add_block: nn.Sequential) -> nn.Linear:
    """Linear(C,E) -> BatchNorm1d(E) in eval mode as one Linear: W' = s W, b' = s (b - mu) + beta."""
    linear, bn = add_block[0], add_block[1]
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # [E]
    folded = nn.Linear(linear.in_features, linear.out_features)
    with torch.no_grad():
        folded.weight.copy_(linear.weight * scale[:, None])
        folded.bias.copy_((linear.bias - bn.running_mean) * scale + bn.bias)
    return folded


def _with_head(model: GeoModel, view: str, x: torch.Tensor) -> tuple[nn.Module, bool, float]:
    """The encoder's timm model, with the descriptor as its classifier when that reproduces it."""
    encoder = model.encoder(view)
    timm_model = copy.deepcopy(encoder.model).eval()
    folded = fold_bottleneck(model.heads[0].add_block)
    if model.cfg.pooling in ("token", "avg") and model.pool.num_parts == 1:
        timm_model.reset_classifier(folded.out_features)
        classifier = timm_model.get_classifier()
        if isinstance(classifier, nn.Linear) and classifier.weight.shape == folded.weight.shape:
            with torch.no_grad():
                classifier.weight.copy_(folded.weight)
                classifier.bias.copy_(folded.bias)
                got = F.normalize(timm_model(x), dim=-1)
                want = model.encode(x, view=view)
            diff = float((got - want).abs().max())
            if diff < 1e-4:
                return timm_model, True, diff
    timm_model.reset_classifier(0)
    diff = float("nan")
    if model.cfg.pooling == "avg" and not encoder.has_token:
        with torch.no_grad():  # headless contract: the mean of forward_features' map feeds the head
            fmap = timm_model.forward_features(x)
            if fmap.dim() == 4 and fmap.shape[1] == encoder.num_features:
                diff = float((fmap.mean(dim=(2, 3)) - encoder(x)[0]).abs().max())
    return timm_model, False, diff


def export_encoders(
    model: GeoModel, out_dir: str | Path, *, hub_repo: str | None = None
) -> list[ExportedEncoder]:
    """Write the encoder(s) of ``model`` under ``out_dir`` (one folder when shared, else
    ``drone/`` and ``satellite/``); optionally push each with timm's ``push_to_hf_hub``.

    Written into a hidden sibling folder first and moved into place when complete, so a process
    killed mid-export (or a full disk) never leaves a truncated ``model.safetensors`` behind.
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.tmp-*"):  # an export killed mid-write left it
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        exported = _write_encoders(model, staging, hub_repo=hub_repo)
        _publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [
        dataclasses.replace(
            e, path=out / e.path.relative_to(staging), program=out / e.program.relative_to(staging)
        )
        for e in exported
    ]


def _publish(staging: Path, out: Path) -> None:
    """Move what ``staging`` holds to ``out``: one rename if ``out`` is new (or empty), else file by
    file, each an atomic rename; a process killed at any point leaves no half-written file there."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.replace(staging, out)
        return
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        target = out / path.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)


def _write_encoders(model: GeoModel, out: Path, *, hub_repo: str | None) -> list[ExportedEncoder]:
    from timm.models import push_to_hf_hub, save_for_hf

    model = model.eval()
    size = model.cfg.img_size
    image = model.image_config
    data_config = {
        "input_size": (3, size, size),
        "mean": image.mean,
        "std": image.std,
        "interpolation": image.interpolation,
        "crop_pct": 1.0,
    }
    views = ["shared"] if model.satellite_encoder is None else ["drone", "satellite"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, size, size, generator=gen)
    exported = []
    for view in views:
        folder = out if view == "shared" else out / view
        timm_model, has_head, diff = _with_head(model, "drone" if view == "shared" else view, x)
        extra = {
            "geodistill": {
                "view": view,
                "pooling": model.cfg.pooling,
                "descriptor": "normalize(model(x))" if has_head else f"headless: see {DESCRIPTOR_FILE}",
                "evaluated_descriptor": f"{DESCRIPTOR_FILE}: normalize(d(x) + d(hflip x))",
                "refiner": model.cfg.refiner,  # fuses a drone video's frame descriptors
                "backbone": model.cfg.backbone,
                # what training started from: timm's pretrained tag, a weights file, or random init
                "initialised_from": model.cfg.weights
                or (model.cfg.backbone if model.cfg.pretrained else "random"),
            }
        }
        save_for_hf(
            timm_model, str(folder), model_config=extra, safe_serialization=True, data_config=data_config
        )
        enc_view = "drone" if view == "shared" else view
        program_diff = _write_program(model, enc_view, folder / DESCRIPTOR_FILE, x, {**extra, **data_config})
        config = json.loads((folder / "config.json").read_text())
        if not model.cfg.pretrained:  # timm's default tag names weights these never started from
            config.get("pretrained_cfg", {}).pop("tag", None)
            (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        arch = config["architecture"]
        exported.append(
            ExportedEncoder(view, folder, arch, has_head, diff, folder / DESCRIPTOR_FILE, program_diff)
        )
        if hub_repo:
            from huggingface_hub import upload_file

            repo = hub_repo if view == "shared" else f"{hub_repo}-{view}"
            push_to_hf_hub(
                timm_model, repo, model_config=extra, data_config=data_config, safe_serialization=True
            )
            upload_file(
                path_or_fileobj=str(folder / DESCRIPTOR_FILE), path_in_repo=DESCRIPTOR_FILE, repo_id=repo
            )
    return exported


def _write_program(model: GeoModel, view: str, path: Path, x: torch.Tensor, meta: dict) -> float:
    """``ViewDescriptor`` as a ``torch.export`` program with a dynamic batch, saved to ``path`` with
    ``meta`` inside; loaded back and checked against ``extract_descriptors`` on another batch size."""
    from geodistill.models.geomodel import ViewDescriptor, extract_descriptors

    net = ViewDescriptor(model, view).eval()
    program = torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    # Serialised in memory, written with plain file I/O: torch's archive writer reports a full disk
    # as a RuntimeError and then aborts the process from its destructor; write_bytes raises OSError.
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={META_FILE: json.dumps(meta)})
    path.write_bytes(buffer.getvalue())
    check = torch.cat([x, x.flip(0)[:1]])  # a batch size it was not traced with
    with torch.no_grad():
        got = torch.export.load(str(path)).module()(check)
    diff = float((got - extract_descriptors(model, check, view=view)).abs().max())
    if not diff < 1e-4:  # a tracing bug, not a user's mistake: never ship a program that disagrees
        raise RuntimeError(f"{path.name} differs from the model by {diff:.2e} on the check batch")
    return diff

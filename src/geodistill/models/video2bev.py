"""Import a released Video2BEV stage-1 checkpoint (``net_EEE.pth``) as a GeoModel.

The release is a plain state_dict (layout in docs/design.md): a legacy ViT (768 wide, depth 8,
8 heads, MLP 2304, no qkv bias, attention scale 768^-0.5) under ``model_1.*`` and again
under ``model_3.*``, five LPN part heads ``classifier{0..4}`` and a temperature
``logit_scale`` by which logits are divided.

We run it on timm's VisionTransformer. timm scales attention by head_dim^-0.5 = 96^-0.5;
the legacy model used 768^-0.5, so the query rows of every qkv weight are multiplied by
sqrt(96 / 768) (q k^T scales linearly with q, and there is no qkv bias to scale).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import yaml

from geodistill.errors import CheckpointError, one_line
from geodistill.models.geomodel import GeoModel, ModelConfig
from geodistill.models.weights_io import load_state_dict, match_state_dict

LEGACY_WIDTH = 768  # the legacy attention scale is LEGACY_WIDTH ** -0.5
RELEASED_IMG_SIZE = 256


def read_opts(path: str | Path) -> dict:
    """``opts.yaml`` written beside a release (h, w, droprate, share, lpn, nclasses); {} if absent."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        opts = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise CheckpointError(f"cannot parse {path}: {one_line(err)}") from None
    if not isinstance(opts, dict):
        raise CheckpointError(f"{path} is not a mapping of options")
    return opts


def _released_layout(model: GeoModel) -> dict[str, torch.Tensor]:
    """The state_dict ``model`` expects, renamed to the released key layout (for matching)."""
    out: dict[str, torch.Tensor] = {"logit_scale": model.logit_scale}
    for key, t in model.drone_encoder.model.state_dict().items():
        out[f"model_1.{key}"] = t
        out[f"model_3.{key}"] = t
    for i, head in enumerate(model.heads):
        for key, t in head.state_dict().items():
            out[f"classifier{i}.{key}"] = t
    return out


def video2bev_from_state_dict(state: dict[str, torch.Tensor], opts: dict | None = None) -> GeoModel:
    """Build the GeoModel of a released state_dict; ``opts`` as read from opts.yaml."""
    opts = opts or {}
    if "classifier0.classifier.0.weight" not in state:
        raise CheckpointError(
            "not a Video2BEV stage-1 state_dict: missing key 'classifier0.classifier.0.weight'"
        )
    num_classes = int(opts.get("nclasses", state["classifier0.classifier.0.weight"].shape[0]))
    img_size = int(opts.get("h", RELEASED_IMG_SIZE))
    if int(opts.get("w", img_size)) != img_size:
        raise CheckpointError(f"non-square input h={img_size} w={opts['w']} is not supported")
    if opts.get("lpn") is False:
        raise CheckpointError("opts.yaml says lpn: false; only the LPN (5-part) release is supported")
    same = all(
        torch.equal(v, state.get("model_3." + k[8:], v)) for k, v in state.items() if k.startswith("model_1.")
    )
    share = bool(opts.get("share", same))
    cfg = ModelConfig(
        backbone="vit_video2bev",
        img_size=img_size,
        embed_dim=int(state["classifier0.add_block.0.weight"].shape[0]),
        pooling="lpn",
        share=share,
        refiner="mean",
        droprate=float(opts.get("droprate", 0.5)),
    )
    with torch.device("meta"):  # shapes only; every tensor then comes from the checkpoint
        model = GeoModel(cfg, num_classes)
    match_state_dict(_released_layout(model), state, what="Video2BEV checkpoint")
    scale = state["logit_scale"].float().reshape(())
    if not scale > 0:
        raise CheckpointError(f"Video2BEV checkpoint: logit_scale must be > 0, got {scale.item()}")

    head_dim = LEGACY_WIDTH // model.drone_encoder.model.blocks[0].attn.num_heads
    q_factor = math.sqrt(head_dim / LEGACY_WIDTH)  # (768^-0.5) / (head_dim^-0.5)

    def encoder_state(prefix: str) -> dict[str, torch.Tensor]:
        enc = {k[len(prefix) :]: v.clone() for k, v in state.items() if k.startswith(prefix)}
        for k, v in enc.items():
            if k.endswith("attn.qkv.weight"):
                width = v.shape[1]
                v[:width] *= q_factor  # query rows
        return enc

    mapped: dict[str, torch.Tensor] = {"logit_scale": (1.0 / scale).log()}  # ours multiplies by exp()
    # model_1 serves the satellite (and, shared, the drone) view; model_3 is the drone branch.
    if share:
        mapped.update({f"drone_encoder.model.{k}": v for k, v in encoder_state("model_1.").items()})
    else:
        mapped.update({f"satellite_encoder.model.{k}": v for k, v in encoder_state("model_1.").items()})
        mapped.update({f"drone_encoder.model.{k}": v for k, v in encoder_state("model_3.").items()})
    for i in range(len(model.heads)):
        prefix = f"classifier{i}."
        mapped.update({f"heads.{i}.{k[len(prefix) :]}": v for k, v in state.items() if k.startswith(prefix)})
    model.load_state_dict(mapped, strict=True, assign=True)
    return model.eval()


def load_video2bev(path: str | Path) -> GeoModel:
    """Load ``net_EEE.pth`` (weights-only; pickled code is refused) and ``opts.yaml`` beside it."""
    path = Path(path)
    state = load_state_dict(path)
    return video2bev_from_state_dict(state, read_opts(path.parent / "opts.yaml"))

"""GeoModel: drone and satellite views embedded into one space for retrieval.

image [B,3,H,W] -> backbone -> final map (+ class token) -> pooling parts [B,P,C]
  -> ClassBlock per part: bottleneck (the embedding) and logits over building ids.
With ``stage_heads`` every intermediate stage but the deepest also gets a ClassBlock (training
only: per-stage logits for deep supervision and fine-grained inverse self-distillation).
The descriptor is the L2-normalised bottleneck, or for LPN pooling the concatenation of the
normalised parts (each divided by sqrt(P)), as the Video2BEV/LPN models do.
A drone video [B,V,3,H,W] goes through the backbone ONCE as a [B*V,3,H,W] batch; the refiner
fuses the V frame descriptors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from geodistill.data.transforms import ImageConfig
from geodistill.errors import ConfigError
from geodistill.models.backbones import Backbone, create_backbone
from geodistill.models.config import ModelConfig
from geodistill.models.heads import ClassBlock, PartPool, StageHeads, lpn_descriptor
from geodistill.models.refiners import build_refiner

VIEWS = ("drone", "satellite")


@dataclass
class GeoOutput:
    """One training forward over a batch of (drone video, satellite tile) pairs."""

    drone_embedding: torch.Tensor  # [B,D] unit-norm
    satellite_embedding: torch.Tensor  # [B,D] unit-norm
    drone_logits: list[torch.Tensor]  # one [B,K] per classifier head
    satellite_logits: list[torch.Tensor]
    drone_features: list[torch.Tensor]  # [B,C_i] shallow -> deep
    satellite_features: list[torch.Tensor]
    logit_scale: torch.Tensor  # [] ; exp(logit_scale) multiplies cosine similarities
    drone_frame_embeddings: torch.Tensor | None = field(default=None)  # [B,V,D] before the refiner
    # Auxiliary stage heads (empty without ``stage_heads``): one [B,K] per stage, shallow -> deep,
    # the deepest stage's logits being drone_logits / satellite_logits above.
    drone_stage_logits: list[torch.Tensor] = field(default_factory=list)
    satellite_stage_logits: list[torch.Tensor] = field(default_factory=list)


class GeoModel(nn.Module):
    """Two views (shared or separate encoders), pooling head, ClassBlocks, refiner, temperature."""

    def __init__(self, cfg: ModelConfig, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        cfg.validate()  # a ModelConfig built in code gets the same checks as a composed one
        self.cfg = cfg
        self.num_classes = num_classes
        self.drone_encoder: Backbone = self._encoder()
        self.satellite_encoder: Backbone | None = None if cfg.share else self._encoder()
        width = self.drone_encoder.num_features
        self.pool = PartPool(cfg.pooling, has_token=self.drone_encoder.has_token)
        self.heads = nn.ModuleList(
            ClassBlock(width, cfg.embed_dim, num_classes, cfg.droprate) for _ in range(self.pool.num_parts)
        )
        self.stage_heads: StageHeads | None = None
        if cfg.stage_heads:
            dims = self.drone_encoder.feature_dims
            self.stage_heads = StageHeads(dims, cfg.embed_dim, num_classes, cfg.droprate)
        self.descriptor_dim = width * self.pool.num_parts if cfg.pooling == "lpn" else cfg.embed_dim
        self.refiner = build_refiner(cfg.refiner, dim=self.descriptor_dim, k=cfg.refiner_k)
        # CLIP-style: logits = exp(logit_scale) * cos; init temperature 0.07.
        self.logit_scale = nn.Parameter(torch.tensor(1.0 / 0.07).log())

    def _encoder(self) -> Backbone:
        c = self.cfg
        return create_backbone(
            c.backbone,
            img_size=c.img_size,
            weights=c.weights,
            pretrained=c.pretrained,
            trainable_blocks=c.trainable_blocks,
        )

    @property
    def image_config(self) -> ImageConfig:
        """Normalisation and interpolation the inputs need (the backbone's pretrained config)."""
        return self.drone_encoder.image_config

    @property
    def feature_dims(self) -> list[int]:
        """Widths of the intermediate features, shallow -> deep."""
        return self.drone_encoder.feature_dims

    def encoder(self, view: str) -> Backbone:
        if view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
        if view == "satellite" and self.satellite_encoder is not None:
            return self.satellite_encoder
        return self.drone_encoder

    def _forward_images(
        self, images: torch.Tensor, view: str
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """images [N,3,H,W] -> (descriptor [N,D] unit-norm, logits per head [N,K], features [N,C_i],
        stage logits [N,K] per auxiliary stage head, empty without stage heads)."""
        grid, cls, feats = self.encoder(view).forward_maps(images, intermediates=True)
        parts = self.pool(grid, cls)  # [N,P,C]
        outs = [head(parts[:, i]) for i, head in enumerate(self.heads)]  # (bottleneck, logits)
        bottleneck, logits = outs[0][0], [lg for _, lg in outs]
        stage_logits = self.stage_heads(feats) if self.stage_heads is not None else []
        desc = lpn_descriptor(parts) if self.cfg.pooling == "lpn" else F.normalize(bottleneck, dim=-1)
        return desc, logits, feats, stage_logits

    def encode(self, images: torch.Tensor, view: str = "satellite") -> torch.Tensor:
        """images [B,3,H,W] -> unit-norm descriptors [B,D] of one view (retrieval: no classifier
        runs, nor intermediate features; see ``ViewDescriptor``)."""
        return ViewDescriptor(self, view).encode(images)

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [B,V,3,H,W] -> per-frame unit-norm descriptors [B,V,D]; one backbone call."""
        b, v = frames.shape[:2]
        return self.encode(frames.flatten(0, 1), view="drone").unflatten(0, (b, v))

    def refine(self, frame_descriptors: torch.Tensor) -> torch.Tensor:
        """[B,V,D] -> [B,D] with the configured refiner (not re-normalised)."""
        return self.refiner(frame_descriptors)

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [B,V,3,H,W] -> video descriptors [B,D] (V frames fused by the refiner)."""
        return self.refine(self.encode_frames(frames))

    def forward(self, drone: torch.Tensor, satellite: torch.Tensor) -> GeoOutput:
        """drone [B,V,3,H,W] (or [B,3,H,W] = one view), satellite [B,3,H,W] -> GeoOutput."""
        if drone.dim() == 4:
            drone = drone[:, None]
        b, v = drone.shape[:2]
        d_desc, d_logits, d_feats, d_stage = self._forward_images(drone.flatten(0, 1), "drone")
        d_desc = d_desc.unflatten(0, (b, v))  # [B,V,D]
        s_desc, s_logits, s_feats, s_stage = self._forward_images(satellite, "satellite")
        return GeoOutput(
            drone_embedding=F.normalize(self.refine(d_desc), dim=-1),
            satellite_embedding=s_desc,
            drone_logits=[lg.unflatten(0, (b, v)).mean(dim=1) for lg in d_logits],
            satellite_logits=s_logits,
            drone_features=[f.unflatten(0, (b, v)).mean(dim=1) for f in d_feats],
            satellite_features=s_feats,
            logit_scale=self.logit_scale,
            drone_frame_embeddings=d_desc,
            drone_stage_logits=[lg.unflatten(0, (b, v)).mean(dim=1) for lg in d_stage],
            satellite_stage_logits=s_stage,
        )


def flip_tta(encode: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """The evaluation descriptor: normalise(f(x) + f(hflip x)) of unit-norm descriptors f."""
    return F.normalize(encode(images) + encode(images.flip(-1)), dim=-1)


class ViewDescriptor(nn.Module):
    """One view's retrieval descriptor, holding only the modules it needs (no classifiers, no
    other view's encoder): ``encode`` is one pass (``GeoModel.encode``), ``forward`` the
    evaluation's flip TTA. ``models/export.py`` writes it out with ``torch.export``."""

    def __init__(self, model: GeoModel, view: str) -> None:
        super().__init__()
        self.backbone = model.encoder(view)
        self.pool = model.pool
        # LPN's descriptor is its parts themselves; every other pooling's is the bottleneck.
        self.bottleneck = None if model.cfg.pooling == "lpn" else model.heads[0].add_block

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        grid, cls, _ = self.backbone.forward_maps(images, intermediates=False)
        parts = self.pool(grid, cls)  # [N,P,C]
        if self.bottleneck is None:
            return lpn_descriptor(parts)  # [N,P*C]
        return F.normalize(self.bottleneck(parts[:, 0]), dim=-1)  # [N,E]

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # [B,3,H,W] -> [B,D]
        return flip_tta(self.encode, images)


def model_from_config(cfg: ModelConfig | dict, num_classes: int) -> GeoModel:
    """Build a GeoModel from a ModelConfig (or a plain dict of its fields, e.g. from Hydra)."""
    if not isinstance(cfg, ModelConfig):
        known = set(ModelConfig.__dataclass_fields__)
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ConfigError(f"unknown model config field(s): {', '.join(unknown)}")
        cfg = ModelConfig(**dict(cfg))
    return GeoModel(cfg, num_classes)


@torch.inference_mode()
def extract_descriptors(
    model: GeoModel,
    images: torch.Tensor,
    flip: bool = True,
    *,
    view: str = "satellite",
    batch_size: int = 64,
) -> torch.Tensor:
    """Evaluation descriptors with flip TTA: normalise(f(x) + f(hflip x)), batched.

    images [B,3,H,W] -> [B,D]; a video batch [B,V,3,H,W] -> [B,D]: each frame gets the
    flip-TTA descriptor, then the refiner fuses them (mean = the published protocol).
    """
    was_training = model.training
    model.eval()
    try:
        video = images.dim() == 5
        flat = images.flatten(0, 1) if video else images
        enc_view = "drone" if video else view
        out = []
        for chunk in flat.split(batch_size):

            def encode(x: torch.Tensor) -> torch.Tensor:
                return model.encode(x, view=enc_view)

            d = flip_tta(encode, chunk) if flip else encode(chunk)
            out.append(d)
        desc = torch.cat(out)  # [N,D]
        if video:
            desc = model.refine(desc.unflatten(0, images.shape[:2]))
        return desc
    finally:
        model.train(was_training)


def save_model(model: GeoModel, path: str | Path) -> Path:
    """Write the model's weights as safetensors (a plain state_dict; no shared storage)."""
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"model_config": repr(asdict(model.cfg))})
    return path


def load_model(path: str | Path, cfg: ModelConfig, num_classes: int) -> GeoModel:
    """Rebuild a GeoModel from ``cfg`` and load weights written by ``save_model`` (or a .pth)."""
    from geodistill.models.weights_io import load_state_dict, match_state_dict

    model = GeoModel(cfg, num_classes)
    state = load_state_dict(path)
    match_state_dict(model.state_dict(), state, what=str(path))
    model.load_state_dict(state, strict=True)
    return model

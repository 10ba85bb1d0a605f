"""One training step of each stage, as an nn.Module whose forward returns the loss.

The loss is computed INSIDE ``TrainModule.forward`` so that every strategy sees one module
call per micro-batch: DDP's gradient hooks, Accelerate's autocast and DeepSpeed ZeRO-3's
parameter gathering all cover the model, the distillation adapters and the losses alike.

Stage 1 (teacher): instance loss of every ClassBlock head on both views + weighted symmetric
InfoNCE with the model's learnable logit scale.
Stage 2 (student): w_task * the same task loss + w_logit * logit KD (T, T^2) + w_feature *
(feature KD across depths through ``DistillAdapters`` + final-embedding match) + w_relation *
relation KD + w_self * self-distillation. The frozen teacher's outputs arrive as
``TeacherTargets`` (computed just before, or read from the teacher cache).
Both stages add the PFED self-supervision terms (``aux_losses``: stage-head cross-entropy, FISD,
cross-domain triplet, UAPA), each times its own ``train.*_weight`` and outside ``w_task``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from geodistill.models import GeoModel, GeoOutput
from geodistill.train.config import RunConfig
from geodistill.train.losses import (
    cross_domain_triplet_loss,
    depth_pairs,
    feature_kd_loss,
    fisd_loss,
    info_nce,
    instance_loss,
    kd_logit_heads,
    match_loss,
    relation_kd_loss,
    self_distill_loss,
    uapa_loss,
)

AUX_KEYS = ("loss_stage", "loss_fisd", "loss_triplet", "loss_uapa")
LOSS_KEYS = ("loss", "loss_task", "loss_logit", "loss_feature", "loss_relation", "loss_self", *AUX_KEYS)


@dataclass
class TeacherTargets:
    """What the student learns from, per sample of the batch (all detached, float32)."""

    drone_logits: list[torch.Tensor]  # [B,K] per teacher head
    satellite_logits: list[torch.Tensor]
    drone_features: list[torch.Tensor]  # [B,C_t_j] shallow -> deep
    satellite_features: list[torch.Tensor]
    drone_embedding: torch.Tensor  # [B,D_t] unit-norm
    satellite_embedding: torch.Tensor

    @classmethod
    def from_output(cls, out: GeoOutput) -> TeacherTargets:
        def det(xs):
            return [x.detach().float() for x in xs]

        return cls(
            drone_logits=det(out.drone_logits),
            satellite_logits=det(out.satellite_logits),
            drone_features=det(out.drone_features),
            satellite_features=det(out.satellite_features),
            drone_embedding=out.drone_embedding.detach().float(),
            satellite_embedding=out.satellite_embedding.detach().float(),
        )

    def to_flat(self) -> dict[str, torch.Tensor]:
        """{"drone_logits.0": [B,K], ..., "drone_embedding": [B,D]} (for the on-disk cache)."""
        flat: dict[str, torch.Tensor] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                flat.update({f"{f.name}.{i}": v for i, v in enumerate(value)})
            else:
                flat[f.name] = value
        return flat

    @classmethod
    def from_flat(cls, flat: dict[str, torch.Tensor]) -> TeacherTargets:
        kwargs = {}
        for f in fields(cls):
            if f.name in flat:
                kwargs[f.name] = flat[f.name]
            else:
                n = sum(1 for k in flat if k.startswith(f"{f.name}."))
                kwargs[f.name] = [flat[f"{f.name}.{i}"] for i in range(n)]
        return cls(**kwargs)

    def to(self, device: torch.device) -> TeacherTargets:
        return TeacherTargets.from_flat({k: v.to(device) for k, v in self.to_flat().items()})


class DistillAdapters(nn.Module):
    """Small Linear projections trained with the student (not part of the published model).

    - ``features[i]``: student depth i (C_s_i) -> its paired teacher depth (C_t_j), see depth_pairs;
    - ``embedding``: student descriptor (D_s) -> teacher descriptor (D_t);
    - ``self_features[i]``: student depth i -> the student's deepest width (self-distillation).
    Each group exists only when its loss weight is > 0 (no parameters without gradients).
    """

    def __init__(
        self,
        student_dims: list[int],
        teacher_dims: list[int],
        student_embed: int,
        teacher_embed: int,
        *,
        feature: bool,
        self_distill: bool,
    ) -> None:
        super().__init__()
        self.pairs = depth_pairs(len(student_dims), len(teacher_dims))
        self.features = (
            nn.ModuleList(nn.Linear(student_dims[i], teacher_dims[j]) for i, j in self.pairs)
            if feature
            else None
        )
        self.embedding = nn.Linear(student_embed, teacher_embed) if feature else None
        self.self_features = (
            nn.ModuleList(nn.Linear(d, student_dims[-1]) for d in student_dims[:-1]) if self_distill else None
        )


def task_loss(out: GeoOutput, labels: torch.Tensor, cfg: RunConfig) -> torch.Tensor:
    """instance_weight * instance loss (all heads, both views) + infonce_weight * InfoNCE."""
    loss = out.drone_embedding.new_zeros((), dtype=torch.float32)
    if cfg.train.instance_weight > 0:
        loss = loss + cfg.train.instance_weight * instance_loss(
            out.drone_logits, out.satellite_logits, labels
        )
    if cfg.train.infonce_weight > 0:
        loss = loss + cfg.train.infonce_weight * info_nce(
            out.drone_embedding, out.satellite_embedding, out.logit_scale
        )
    return loss


def aux_losses(out: GeoOutput, labels: torch.Tensor, cfg: RunConfig) -> dict[str, torch.Tensor]:
    """The PFED self-supervision terms, unweighted; a term whose weight is 0 is not computed (0).

    loss_stage: instance loss on the auxiliary stage heads; loss_fisd: FISD between the stage
    heads and the main head (mean of its heads' logits), both views averaged; loss_triplet:
    cross-domain batch-hard triplet on the embeddings; loss_uapa: UAPA on the main logits.
    """
    t = cfg.train
    zero = out.drone_embedding.new_zeros((), dtype=torch.float32)
    parts = dict.fromkeys(AUX_KEYS, zero)

    def main(logits: list[torch.Tensor]) -> torch.Tensor:  # [B,K]: the heads' mean (1 head: itself)
        return torch.stack(logits).mean(dim=0) if len(logits) > 1 else logits[0]

    if t.stage_ce_weight > 0 and out.drone_stage_logits:
        parts["loss_stage"] = instance_loss(out.drone_stage_logits, out.satellite_stage_logits, labels)
    if t.fisd_weight > 0:
        parts["loss_fisd"] = (
            fisd_loss(out.drone_stage_logits, main(out.drone_logits), t.fisd_temperature, t.fisd_direction)
            + fisd_loss(
                out.satellite_stage_logits, main(out.satellite_logits), t.fisd_temperature, t.fisd_direction
            )
        ) / 2
    if t.triplet_weight > 0:
        parts["loss_triplet"] = cross_domain_triplet_loss(
            out.drone_embedding, out.satellite_embedding, labels, t.triplet_margin
        )
    if t.uapa_weight > 0:
        parts["loss_uapa"] = uapa_loss(main(out.drone_logits), main(out.satellite_logits), t.uapa_temperature)
    return parts


def aux_total(parts: dict[str, torch.Tensor], cfg: RunConfig) -> torch.Tensor:
    """sum of weight x part over the PFED self-supervision terms."""
    t = cfg.train
    return (
        t.stage_ce_weight * parts["loss_stage"]
        + t.fisd_weight * parts["loss_fisd"]
        + t.triplet_weight * parts["loss_triplet"]
        + t.uapa_weight * parts["loss_uapa"]
    )


def distill_losses(
    out: GeoOutput, teacher: TeacherTargets, adapters: DistillAdapters | None, cfg: RunConfig
) -> dict[str, torch.Tensor]:
    """The three KD levels (+ self-distillation); a level whose weight is 0 is not computed (0)."""
    d = cfg.distill
    zero = out.drone_embedding.new_zeros((), dtype=torch.float32)
    parts = {"loss_logit": zero, "loss_feature": zero, "loss_relation": zero, "loss_self": zero}
    if d.w_logit > 0:
        parts["loss_logit"] = (
            kd_logit_heads(out.drone_logits, teacher.drone_logits, d.temperature)
            + kd_logit_heads(out.satellite_logits, teacher.satellite_logits, d.temperature)
        ) / 2
    if d.w_feature > 0:
        assert adapters is not None and adapters.features is not None
        pairs = adapters.pairs
        per_view = []
        for s_feats, t_feats, s_emb, t_emb in (
            (out.drone_features, teacher.drone_features, out.drone_embedding, teacher.drone_embedding),
            (
                out.satellite_features,
                teacher.satellite_features,
                out.satellite_embedding,
                teacher.satellite_embedding,
            ),
        ):
            depths = feature_kd_loss(
                [s_feats[i] for i, _ in pairs],
                [t_feats[j] for _, j in pairs],
                adapters.features,
                d.feature_loss,
            )
            final = match_loss(F.normalize(adapters.embedding(s_emb), dim=-1), t_emb, d.feature_loss)
            per_view.append(depths + final)
        parts["loss_feature"] = (per_view[0] + per_view[1]) / 2
    if d.w_relation > 0:
        parts["loss_relation"] = relation_kd_loss(
            out.drone_embedding,
            out.satellite_embedding,
            teacher.drone_embedding,
            teacher.satellite_embedding,
            d.relation_tau,
        )
    if d.w_self > 0:
        assert adapters is not None and adapters.self_features is not None
        parts["loss_self"] = (
            self_distill_loss(out.drone_features, adapters.self_features, d.feature_loss)
            + self_distill_loss(out.satellite_features, adapters.self_features, d.feature_loss)
        ) / 2
    return parts


class TrainModule(nn.Module):
    """The trainable unit a strategy wraps: the GeoModel (+ distillation adapters) and the loss.

    forward(drone [B,V,3,H,W], satellite [B,3,H,W], labels [B], teacher=None)
      -> (loss [] float32, parts {name: [] detached}) with every key of LOSS_KEYS.
    """

    def __init__(self, model: GeoModel, cfg: RunConfig, adapters: DistillAdapters | None = None) -> None:
        super().__init__()
        self.model = model
        self.adapters = adapters
        self.cfg = cfg

    def forward(
        self,
        drone: torch.Tensor,
        satellite: torch.Tensor,
        labels: torch.Tensor,
        teacher: TeacherTargets | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = self.model(drone, satellite)
        task = task_loss(out, labels, self.cfg)
        aux = aux_losses(out, labels, self.cfg)
        if self.cfg.stage == "teacher" or teacher is None:
            zero = task.new_zeros(())
            parts = {
                "loss_task": task,
                "loss_logit": zero,
                "loss_feature": zero,
                "loss_relation": zero,
                "loss_self": zero,
                **aux,
            }
            loss = task + aux_total(aux, self.cfg)
        else:
            d = self.cfg.distill
            parts = {"loss_task": task, **distill_losses(out, teacher, self.adapters, self.cfg), **aux}
            loss = (
                d.w_task * task
                + d.w_logit * parts["loss_logit"]
                + d.w_feature * parts["loss_feature"]
                + d.w_relation * parts["loss_relation"]
                + d.w_self * parts["loss_self"]
                + aux_total(aux, self.cfg)
            )
        parts = {k: v.detach().float() for k, v in parts.items()}
        parts["loss"] = loss.detach().float()
        return loss.float(), parts


def build_adapters(student: GeoModel, teacher: GeoModel | None, cfg: RunConfig) -> DistillAdapters | None:
    """The adapters the configured KD levels need (None for stage 1, or when no level needs any)."""
    if teacher is None or cfg.stage == "teacher":
        return None
    feature, self_distill = cfg.distill.w_feature > 0, cfg.distill.w_self > 0
    if not (feature or self_distill):
        return None
    return DistillAdapters(
        student.feature_dims,
        teacher.feature_dims,
        student.descriptor_dim,
        teacher.descriptor_dim,
        feature=feature,
        self_distill=self_distill,
    )


# ---------------------------------------------------------------------------- optimiser


def _is_backbone(name: str) -> bool:
    return name.startswith(("model.drone_encoder.", "model.satellite_encoder."))


def param_groups(module: TrainModule, cfg: RunConfig) -> list[dict]:
    """AdamW groups: backbone at lr * backbone_lr_mult, the rest (heads, refiner, adapters) at lr;
    no weight decay on biases, norms and the logit scale (1-d / 0-d tensors)."""
    t = cfg.train
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        key = (_is_backbone(name), p.ndim >= 2)
        groups.setdefault(key, []).append(p)
    out = []
    for (backbone, decay), params in sorted(groups.items()):
        out.append(
            {
                "params": params,
                "lr": t.lr * (t.backbone_lr_mult if backbone else 1.0),
                "weight_decay": t.weight_decay if decay else 0.0,
            }
        )
    return out


def build_optimizer(module: TrainModule, cfg: RunConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(param_groups(module, cfg), betas=(0.9, 0.999))


def lr_factor(step: int, *, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (0-based): linear warm-up over
    ``warmup`` steps, then cosine to 0 at ``total`` or a x0.1 step at 2/3 and again at 8/9."""
    if warmup > 0 and step < warmup:
        return (step + 1) / (warmup + 1)
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return 0.1 ** sum(progress >= m for m in (2 / 3, 8 / 9))


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: RunConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    t = cfg.train
    warmup = min(t.warmup_steps, max(0, total_steps - 1))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total=total_steps, warmup=warmup, schedule=t.schedule)
    )

"""Losses of both stages: the task (instance + InfoNCE) and hierarchical distillation.

Every function returns a scalar tensor and is written so a test can recompute it by hand.
Shapes: B = batch (distinct buildings), K = building classes, D = embedding width,
C_i = width of an intermediate feature. Stage 2 distils at three levels (logit, feature,
relation), each switched off by a weight of 0 in ``DistillConfig``; ``self_distill_loss`` lets
the student's deepest feature teach its shallower ones. The PFED / MobileGeo terms
(``fisd_loss``, ``cross_domain_triplet_loss``, ``uapa_loss``) need no teacher, so both stages
can use them. What each level matches: docs/design.md, "Losses"; the PFED terms: docs/pfed.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from geodistill.train.config import FISD_DIRECTIONS

MAX_LOGIT_SCALE = 100.0  # CLIP's clamp on exp(logit_scale)


def instance_loss(
    drone_logits: Sequence[torch.Tensor], satellite_logits: Sequence[torch.Tensor], labels: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy over building ids, averaged over the heads, summed over the two views.

    drone_logits / satellite_logits: one [B,K] per ClassBlock head; labels [B] int64.
    """
    drone = torch.stack([F.cross_entropy(lg.float(), labels) for lg in drone_logits]).mean()
    sat = torch.stack([F.cross_entropy(lg.float(), labels) for lg in satellite_logits]).mean()
    return drone + sat


def info_nce(drone: torch.Tensor, satellite: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE: row b of each view's batch is the positive of row b of the other.

    drone, satellite [B,D] unit-norm; logit_scale [] is the log of the scale (learnable,
    CLIP-style), so logits = min(exp(logit_scale), 100) * cos.
    """
    scale = logit_scale.float().exp().clamp(max=MAX_LOGIT_SCALE)
    logits = scale * drone.float() @ satellite.float().t()  # [B,B]
    target = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def kd_logit_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton: KL(softmax(t/T) || softmax(s/T)) * T^2, summed over classes, averaged over the batch.

    student, teacher [B,K]; the T^2 factor keeps gradient magnitudes comparable across T.
    """
    t = temperature
    log_p_t = F.log_softmax(teacher.float() / t, dim=-1)
    log_p_s = F.log_softmax(student.float() / t, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=-1).mean()
    return kl * t * t


def kd_logit_heads(
    student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], temperature: float
) -> torch.Tensor:
    """Logit KD over classifier heads: head i teaches head i when the counts match; otherwise
    every student head learns from the teacher's ensemble (mean of its heads' logits)."""
    if len(student) == len(teacher):
        pairs = list(zip(student, teacher))
    else:
        ensemble = torch.stack(list(teacher)).mean(dim=0)  # [B,K]
        pairs = [(s, ensemble) for s in student]
    return torch.stack([kd_logit_loss(s, t, temperature) for s, t in pairs]).mean()


def depth_pairs(n_student: int, n_teacher: int) -> list[tuple[int, int]]:
    """Map each student depth onto the teacher depth at the same relative position.

    Student depth i of n (shallow -> deep) sits at (i+1)/n of the network; it pairs with
    teacher depth round((i+1)/n * m) - 1, so the deepest always meet.
    e.g. n=2, m=4 -> [(0,1), (1,3)];  n=4, m=2 -> [(0,0), (1,0), (2,1), (3,1)] (round half to even).
    """
    return [(i, max(0, round((i + 1) / n_student * n_teacher) - 1)) for i in range(n_student)]


def match_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str) -> torch.Tensor:
    """[B,C] vs [B,C]: "mse" = mean squared error over all entries; "cosine" = mean of 1 - cos."""
    student, teacher = student.float(), teacher.float()
    if kind == "mse":
        return F.mse_loss(student, teacher)
    if kind == "cosine":
        return (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()
    raise ValueError(f"feature loss must be 'mse' or 'cosine', got {kind!r}")


def feature_kd_loss(
    student: Sequence[torch.Tensor],
    teacher: Sequence[torch.Tensor],
    adapters: Sequence[nn.Module] | None = None,
    kind: str = "mse",
) -> torch.Tensor:
    """Mean over pairs of match_loss(adapter_i(student_i), teacher_i).

    student [B,C_s_i] and teacher [B,C_t_i] come already paired (see ``depth_pairs``);
    adapter_i maps C_s_i -> C_t_i (None: identity, the widths must agree).
    """
    if len(student) != len(teacher):
        raise ValueError(f"{len(student)} student features vs {len(teacher)} teacher features")
    losses = []
    for i, (s, t) in enumerate(zip(student, teacher)):
        projected = adapters[i](s) if adapters is not None else s
        losses.append(match_loss(projected, t.detach(), kind))
    return torch.stack(losses).mean()


def relation_kd_loss(
    student_drone: torch.Tensor,
    student_satellite: torch.Tensor,
    teacher_drone: torch.Tensor,
    teacher_satellite: torch.Tensor,
    tau: float,
) -> torch.Tensor:
    """KL(P_t || P_s) between similarity distributions over the batch, both directions averaged.

    S = drone @ satellite^T / tau [B,B] (embeddings unit-norm); drone->satellite is a
    softmax over each row, satellite->drone over each column; KL summed over the
    distribution, averaged over its B queries.
    """
    s = student_drone.float() @ student_satellite.float().t() / tau  # [B,B]
    t = teacher_drone.float() @ teacher_satellite.float().t() / tau

    def kl(t_logits: torch.Tensor, s_logits: torch.Tensor) -> torch.Tensor:
        log_p_t = F.log_softmax(t_logits, dim=-1)
        return (log_p_t.exp() * (log_p_t - F.log_softmax(s_logits, dim=-1))).sum(dim=-1).mean()

    return (kl(t, s) + kl(t.t(), s.t())) / 2


def self_distill_loss(
    features: Sequence[torch.Tensor], adapters: Sequence[nn.Module], kind: str = "mse"
) -> torch.Tensor:
    """The deepest feature (detached) teaches each shallower one through its adapter.

    features [B,C_i] shallow -> deep; adapters[i] maps C_i -> C_last for i < last.
    """
    target = features[-1].detach()
    shallow = features[:-1]
    if not shallow:
        return features[-1].new_zeros((), dtype=torch.float32)
    return torch.stack([match_loss(a(f), target, kind) for a, f in zip(adapters, shallow)]).mean()


def fisd_loss(
    stage_logits: Sequence[torch.Tensor], deep_logits: torch.Tensor, temperature: float, direction: str
) -> torch.Tensor:
    """Fine-grained inverse self-distillation: Hinton KD (T, T^2) between the deepest stage and each
    shallower stage, averaged over the shallower stages.

    stage_logits: one [B,K] per auxiliary stage head (shallow -> deep, the deepest excluded);
    deep_logits [B,K] the main head's. ``direction``:
    - "inverse" (the paper): each shallow stage, detached, teaches the deepest one,
      KL(p_i^T || p_N^T), so fine spatial detail kept in shallow stages flows into the final head;
    - "forward" (the usual self-distillation): the deepest, detached, teaches each shallow stage.
    """
    if direction not in FISD_DIRECTIONS:
        raise ValueError(f"fisd direction must be one of {FISD_DIRECTIONS}, got {direction!r}")
    if not stage_logits:
        return deep_logits.new_zeros((), dtype=torch.float32)
    if direction == "inverse":
        terms = [kd_logit_loss(deep_logits, s.detach(), temperature) for s in stage_logits]
    else:
        terms = [kd_logit_loss(s, deep_logits.detach(), temperature) for s in stage_logits]
    return torch.stack(terms).mean()


def cross_domain_triplet_loss(
    drone: torch.Tensor, satellite: torch.Tensor, labels: torch.Tensor, margin: float
) -> torch.Tensor:
    """Batch-hard triplet loss across views, both directions averaged.

    drone, satellite [B,D] unit-norm; labels [B] (row b of both views shows building labels[b]).
    Distances are Euclidean between unit vectors, d = sqrt(2 - 2 cos). For a drone anchor the
    positive is the FARTHEST satellite of its building and the negative the CLOSEST satellite of
    another building (hard-negative mining in the batch); loss = max(0, margin + d_pos - d_neg),
    averaged over anchors that have both. Then the same with satellite anchors and drone candidates.
    """
    sim = drone.float() @ satellite.float().t()  # [B,B] drone x satellite
    dist = (2 - 2 * sim).clamp_min(1e-12).sqrt()
    same = labels[:, None] == labels[None, :]  # [B,B]

    def one_way(d: torch.Tensor, same: torch.Tensor) -> torch.Tensor:  # rows = anchors
        valid = same.any(dim=1) & (~same).any(dim=1)  # [B]
        if not bool(valid.any()):
            return d.new_zeros(())
        hardest_pos = d.masked_fill(~same, float("-inf")).amax(dim=1)  # [B]
        hardest_neg = d.masked_fill(same, float("inf")).amin(dim=1)  # [B]
        return F.relu(margin + hardest_pos - hardest_neg)[valid].mean()

    return (one_way(dist, same) + one_way(dist.t(), same.t())) / 2


def uapa_loss(drone_logits: torch.Tensor, satellite_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Uncertainty-aware prediction alignment between the two views of each building.

    drone_logits, satellite_logits [B,K] (row b: the same building). With p = softmax(z / T) and
    u = H(p) / ln K the normalised entropy (uncertainty, in [0,1], detached), per sample:
        w_s = u_s / (u_d + u_s),  w_d = u_d / (u_d + u_s)
        loss = T^2 * (w_s * KL(p_d || p_s) + w_d * KL(p_s || p_d))
    each KL's target side detached: the more uncertain view is pulled harder towards the more
    certain one (University-1652 has 54 drone images per satellite tile, so the satellite view is
    the under-trained, less certain one). Averaged over the batch. Why this reading: docs/pfed.md.
    """
    k = drone_logits.shape[-1]
    if k < 2:
        return drone_logits.new_zeros((), dtype=torch.float32)
    t = temperature
    log_p_d = F.log_softmax(drone_logits.float() / t, dim=-1)  # [B,K]
    log_p_s = F.log_softmax(satellite_logits.float() / t, dim=-1)
    with torch.no_grad():
        u_d = -(log_p_d.exp() * log_p_d).sum(dim=-1) / math.log(k)  # [B]
        u_s = -(log_p_s.exp() * log_p_s).sum(dim=-1) / math.log(k)
        total = (u_d + u_s).clamp_min(1e-12)
        w_d, w_s = u_d / total, u_s / total
    p_d, p_s = log_p_d.detach().exp(), log_p_s.detach().exp()
    kl_sat = (p_d * (log_p_d.detach() - log_p_s)).sum(dim=-1)  # [B] satellite pulled to drone
    kl_drone = (p_s * (log_p_s.detach() - log_p_d)).sum(dim=-1)  # [B] drone pulled to satellite
    return (w_s * kl_sat + w_d * kl_drone).mean() * t * t

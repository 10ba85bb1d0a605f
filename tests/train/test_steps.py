"""The step wiring: which losses each stage computes, how the KD weights switch levels on and off,
the adapters, the optimiser groups and the learning-rate schedule."""

from __future__ import annotations

import math

import pytest
import torch

from geodistill.errors import ConfigError
from geodistill.models import model_from_config
from geodistill.train.config import RunConfig
from geodistill.train.losses import (
    cross_domain_triplet_loss,
    depth_pairs,
    fisd_loss,
    info_nce,
    instance_loss,
    kd_logit_heads,
    relation_kd_loss,
    uapa_loss,
)
from geodistill.train.steps import (
    TeacherTargets,
    TrainModule,
    build_adapters,
    build_optimizer,
    lr_factor,
    param_groups,
)

torch.set_num_threads(1)  # 2 shared cores: keep each test to one

K = 6  # building classes


def cfg_with(stage="student", *, train=None, stage_heads=False, **distill) -> RunConfig:
    return RunConfig.from_dict(
        {
            "stage": stage,
            "data": {"img_size": 32},
            "model": {"backbone": "resnet18", "embed_dim": 24, "droprate": 0.0, "stage_heads": stage_heads},
            "train": {"lr": 1e-3, "backbone_lr_mult": 0.1, **(train or {})},
            "distill": distill,
        }
    )


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    drone = torch.randn(4, 3, 3, 32, 32, generator=g)  # B=4 buildings, V=3 frames each
    satellite = torch.randn(4, 3, 32, 32, generator=g)
    return drone, satellite, torch.tensor([0, 2, 3, 5])


@pytest.fixture(scope="module")
def teacher_targets(batch):
    torch.manual_seed(1)
    teacher = model_from_config(
        cfg_with().model.__class__(backbone="convnext_atto", img_size=32, embed_dim=40), K
    )
    teacher.eval()
    with torch.no_grad():
        return teacher, TeacherTargets.from_output(teacher(*batch[:2]))


def student_module(cfg, teacher):
    torch.manual_seed(2)
    model = model_from_config(cfg.model, K)
    return TrainModule(model, cfg, build_adapters(model, teacher, cfg)).eval()  # eval: deterministic


def test_teacher_step_is_instance_plus_weighted_infonce(batch):
    drone, sat, labels = batch
    cfg = cfg_with("teacher", train={"instance_weight": 1.0, "infonce_weight": 0.5})
    module = student_module(cfg, None)
    loss, parts = module(drone, sat, labels)
    out = module.model(drone, sat)
    expected = instance_loss(out.drone_logits, out.satellite_logits, labels) + 0.5 * info_nce(
        out.drone_embedding, out.satellite_embedding, out.logit_scale
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert parts["loss_task"].item() == pytest.approx(loss.item())
    assert all(parts[k] == 0 for k in ("loss_logit", "loss_feature", "loss_relation", "loss_self"))
    loss.backward()
    assert module.model.logit_scale.grad is not None and module.model.logit_scale.grad != 0
    # InfoNCE off: the learnable temperature gets no gradient
    module = student_module(cfg_with("teacher", train={"infonce_weight": 0.0}), None)
    module(drone, sat, labels)[0].backward()
    assert module.model.logit_scale.grad is None


AUX = {
    "stage_ce_weight": "loss_stage",
    "fisd_weight": "loss_fisd",
    "triplet_weight": "loss_triplet",
    "uapa_weight": "loss_uapa",
}


def test_pfed_terms_in_the_teacher_step_with_their_weights(batch):
    drone, sat, labels = batch
    weights = {"stage_ce_weight": 0.5, "fisd_weight": 2.0, "triplet_weight": 3.0, "uapa_weight": 0.25}
    train = {**weights, "fisd_temperature": 3.0, "triplet_margin": 0.4, "uapa_temperature": 2.0}
    cfg = cfg_with("teacher", train=train, stage_heads=True)
    module = student_module(cfg, None)
    loss, parts = module(drone, sat, labels)
    out = module.model(drone, sat)  # eval mode: the same outputs again
    assert len(out.drone_stage_logits) == 3  # resnet18: layers 1-3 get heads, layer 4 is the main head
    expected = {
        "loss_stage": instance_loss(out.drone_stage_logits, out.satellite_stage_logits, labels),
        "loss_fisd": (
            fisd_loss(out.drone_stage_logits, out.drone_logits[0], 3.0, "inverse")
            + fisd_loss(out.satellite_stage_logits, out.satellite_logits[0], 3.0, "inverse")
        )
        / 2,
        "loss_triplet": cross_domain_triplet_loss(out.drone_embedding, out.satellite_embedding, labels, 0.4),
        "loss_uapa": uapa_loss(out.drone_logits[0], out.satellite_logits[0], 2.0),
    }
    for key, value in expected.items():
        assert parts[key].item() == pytest.approx(value.item(), rel=1e-5), key
    total = parts["loss_task"] + sum(weights[w] * parts[k] for w, k in AUX.items())
    assert loss.item() == pytest.approx(total.item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in module.model.stage_heads.parameters())


@pytest.mark.parametrize("weight", sorted(AUX))
def test_each_pfed_term_alone_in_the_student_step(weight, batch, teacher_targets):
    teacher, targets = teacher_targets
    cfg = cfg_with(train={weight: 2.0}, stage_heads=True, **OFF)
    module = student_module(cfg, teacher)
    loss, parts = module(*batch, targets)
    on = AUX[weight]
    assert parts[on] > 0
    assert loss.item() == pytest.approx(2.0 * parts[on].item(), rel=1e-5)
    assert all(parts[k] == 0 for k in AUX.values() if k != on)


def test_pfed_config_is_validated():
    with pytest.raises(ConfigError, match="train.fisd_weight > 0 needs model.stage_heads=true"):
        cfg_with(train={"fisd_weight": 1.0})
    with pytest.raises(ConfigError, match="train.fisd_direction must be one of inverse, forward"):
        RunConfig.from_dict({"model": {"stage_heads": True}, "train": {"fisd_direction": "up"}})
    with pytest.raises(ConfigError, match="train.uapa_temperature must be > 0"):
        cfg_with(train={"uapa_temperature": 0.0})
    with pytest.raises(ConfigError, match="train.triplet_weight must be >= 0"):
        cfg_with(train={"triplet_weight": -1.0})


LEVELS = {
    "w_logit": "loss_logit",
    "w_feature": "loss_feature",
    "w_relation": "loss_relation",
    "w_self": "loss_self",
}
OFF = {"w_task": 0.0, "w_logit": 0.0, "w_feature": 0.0, "w_relation": 0.0, "w_self": 0.0}


@pytest.mark.parametrize("weight", sorted(LEVELS))
def test_each_kd_level_alone(weight, batch, teacher_targets):
    teacher, targets = teacher_targets
    cfg = cfg_with(**{**OFF, weight: 2.0})
    module = student_module(cfg, teacher)
    loss, parts = module(*batch, targets)
    on = LEVELS[weight]
    assert parts[on] > 0
    assert loss.item() == pytest.approx(2.0 * parts[on].item(), rel=1e-6)
    assert all(parts[k] == 0 for k in LEVELS.values() if k != on)
    loss.backward()
    # only the adapters this level needs exist, and every one of them learns
    adapters = module.adapters
    if weight in ("w_logit", "w_relation"):
        assert adapters is None
    else:
        assert (adapters.features is not None) == (weight == "w_feature")
        assert (adapters.self_features is not None) == (weight == "w_self")
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in adapters.parameters())


def test_all_levels_sum_with_their_weights_and_match_the_losses(batch, teacher_targets):
    teacher, targets = teacher_targets
    cfg = cfg_with(
        w_task=1.0,
        w_logit=0.5,
        w_feature=2.0,
        w_relation=3.0,
        w_self=0.25,
        temperature=3.0,
        relation_tau=0.25,
    )
    module = student_module(cfg, teacher)
    loss, parts = module(*batch, targets)
    d = cfg.distill
    total = sum(getattr(d, w) * parts[k].item() for w, k in LEVELS.items()) + parts["loss_task"].item()
    assert loss.item() == pytest.approx(total, rel=1e-5)
    out = module.model(*batch[:2])
    logit = (
        kd_logit_heads(out.drone_logits, targets.drone_logits, 3.0)
        + kd_logit_heads(out.satellite_logits, targets.satellite_logits, 3.0)
    ) / 2
    relation = relation_kd_loss(
        out.drone_embedding,
        out.satellite_embedding,
        targets.drone_embedding,
        targets.satellite_embedding,
        0.25,
    )
    assert parts["loss_logit"].item() == pytest.approx(logit.item(), rel=1e-5)
    assert parts["loss_relation"].item() == pytest.approx(relation.item(), rel=1e-5)
    # resnet18's 4 stages map onto convnext_atto's 4 stages one to one; widths differ -> adapters
    assert module.adapters.pairs == depth_pairs(4, 4) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert [a.in_features for a in module.adapters.features] == [64, 128, 256, 512]
    assert [a.out_features for a in module.adapters.features] == [40, 80, 160, 320]
    assert (module.adapters.embedding.in_features, module.adapters.embedding.out_features) == (24, 40)


def test_student_matching_its_teacher_has_zero_kd(batch):
    """A student that IS its teacher: logit and relation KD vanish (sanity of the direction of KL)."""
    cfg = cfg_with(**{**OFF, "w_logit": 1.0, "w_relation": 1.0})
    module = student_module(cfg, None)
    with torch.no_grad():
        targets = TeacherTargets.from_output(module.model(*batch[:2]))
    _, parts = module(*batch, targets)
    assert parts["loss_logit"].item() == pytest.approx(0.0, abs=1e-6)
    assert parts["loss_relation"].item() == pytest.approx(0.0, abs=1e-6)


def test_teacher_targets_flat_round_trip(teacher_targets):
    _, targets = teacher_targets
    back = TeacherTargets.from_flat(targets.to_flat())
    assert len(back.drone_logits) == len(targets.drone_logits) == 1
    assert len(back.drone_features) == 4
    for a, b in zip(targets.to_flat().values(), back.to_flat().values()):
        assert torch.equal(a, b)


def test_param_groups_backbone_lr_and_no_decay_for_vectors(teacher_targets):
    teacher, _ = teacher_targets
    cfg = cfg_with(w_feature=1.0, train={"lr": 1e-3, "backbone_lr_mult": 0.1, "weight_decay": 0.05})
    module = student_module(cfg, teacher)
    groups = param_groups(module, cfg)
    backbone_ids = {id(p) for p in module.model.drone_encoder.parameters()}
    for g in groups:
        is_backbone = {id(p) in backbone_ids for p in g["params"]}
        assert len(is_backbone) == 1
        assert g["lr"] == pytest.approx(1e-4 if is_backbone.pop() else 1e-3)
        assert g["weight_decay"] == (0.05 if all(p.ndim >= 2 for p in g["params"]) else 0.0)
    grouped = {id(p) for g in groups for p in g["params"]}
    assert grouped == {id(p) for p in module.parameters()}  # adapters and logit scale included
    assert id(module.model.logit_scale) in grouped
    assert isinstance(build_optimizer(module, cfg), torch.optim.AdamW)


def test_lr_schedule_warmup_cosine_and_step():
    # warm-up 4 steps: (s+1)/5; then cosine over the remaining 10 steps
    assert [lr_factor(s, total=14, warmup=4, schedule="cosine") for s in range(4)] == [0.2, 0.4, 0.6, 0.8]
    assert lr_factor(4, total=14, warmup=4, schedule="cosine") == pytest.approx(1.0)
    assert lr_factor(9, total=14, warmup=4, schedule="cosine") == pytest.approx(0.5)
    assert lr_factor(14, total=14, warmup=4, schedule="cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(6, total=9, warmup=0, schedule="step") == pytest.approx(0.1)  # 2/3 of the way
    assert lr_factor(5, total=9, warmup=0, schedule="step") == pytest.approx(1.0)
    assert lr_factor(8, total=9, warmup=0, schedule="step") == pytest.approx(0.01)
    assert math.isclose(lr_factor(0, total=10, warmup=0, schedule="cosine"), 1.0)

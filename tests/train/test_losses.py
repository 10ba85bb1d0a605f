"""Each loss against a value worked out by hand on 2x2-sized tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from geodistill.train.losses import (
    cross_domain_triplet_loss,
    depth_pairs,
    feature_kd_loss,
    fisd_loss,
    info_nce,
    instance_loss,
    kd_logit_heads,
    kd_logit_loss,
    match_loss,
    relation_kd_loss,
    self_distill_loss,
    uapa_loss,
)

E = math.e
LN3 = math.log(3)


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_instance_loss_averages_heads_and_sums_views():
    # drone head 1: logits [0, ln3] -> softmax [1/4, 3/4]; label 1 -> CE = ln(4/3)
    # drone head 2: logits [0, 0]  -> CE = ln 2;  mean over heads = ln(8/3) / 2
    # satellite head: [ln3, 0] -> softmax [3/4, 1/4]; label 1 -> CE = ln 4
    labels = torch.tensor([1])
    loss = instance_loss([t([[0, LN3]]), t([[0, 0]])], [t([[LN3, 0]])], labels)
    assert loss.item() == pytest.approx(math.log(8 / 3) / 2 + math.log(4), rel=1e-6)


def test_info_nce_symmetric_with_learnable_scale():
    # scale exp(ln 2) = 2; cos = [[0.6, 0], [0.8, 1]] -> logits [[1.2, 0], [1.6, 2]]
    drone = t([[1, 0], [0, 1]])
    sat = t([[0.6, 0.8], [0, 1]])
    rows = (math.log1p(math.exp(-1.2)) + math.log1p(math.exp(-0.4))) / 2  # targets on the diagonal
    cols = (math.log1p(math.exp(0.4)) + math.log1p(math.exp(-2.0))) / 2  # column 0 = [1.2, 1.6]
    loss = info_nce(drone, sat, torch.tensor(math.log(2.0)))
    assert loss.item() == pytest.approx((rows + cols) / 2, rel=1e-6)


def test_info_nce_scale_is_clamped_at_100():
    drone = sat = t([[1, 0], [0.6, 0.8]])  # cos = [[1, .6], [.6, 1]]
    # exp(ln 1000) is clamped to 100: every row and column has CE = log(1 + e^(-0.4 * 100))
    loss = info_nce(drone, sat, torch.tensor(math.log(1000.0)))
    assert loss.item() == pytest.approx(math.log1p(math.exp(-40.0)), rel=1e-4)


def test_kd_logit_loss_hinton_times_t_squared():
    # T=2: teacher [2 ln3, 0] / 2 -> p_t = [3/4, 1/4]; student [0, 0] -> p_s = [1/2, 1/2]
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2); * T^2 = 3 ln 1.5 - ln 2 = ln(1.6875)
    loss = kd_logit_loss(t([[0, 0]]), t([[2 * LN3, 0]]), temperature=2.0)
    assert loss.item() == pytest.approx(math.log(1.6875), rel=1e-6)
    assert kd_logit_loss(t([[1, 2]]), t([[1, 2]]), 4.0).item() == pytest.approx(0.0, abs=1e-7)


def test_kd_logit_heads_pairs_or_ensembles():
    student = [t([[0, 0]])]
    # two teacher heads [4 ln3, 0] and [0, 0] -> ensemble [2 ln3, 0]: the value above
    loss = kd_logit_heads(student, [t([[4 * LN3, 0]]), t([[0, 0]])], temperature=2.0)
    assert loss.item() == pytest.approx(math.log(1.6875), rel=1e-6)
    # equal counts: head i <- head i; second pair identical -> (ln 1.6875 + 0) / 2
    paired = kd_logit_heads([t([[0, 0]]), t([[1, 1]])], [t([[2 * LN3, 0]]), t([[1, 1]])], 2.0)
    assert paired.item() == pytest.approx(math.log(1.6875) / 2, rel=1e-6)


def test_depth_pairs_relative_position():
    assert depth_pairs(2, 4) == [(0, 1), (1, 3)]
    assert depth_pairs(4, 4) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert depth_pairs(4, 2) == [(0, 0), (1, 0), (2, 1), (3, 1)]
    assert depth_pairs(3, 4) == [(0, 0), (1, 2), (2, 3)]  # 4/3 -> 1 -> 0; 8/3 -> 3 -> 2


def test_feature_kd_loss_mse_cosine_and_adapters():
    s, tt = t([[1, 2]]), t([[2, 2]])
    assert match_loss(s, tt, "mse").item() == pytest.approx(0.5)  # ((1-2)^2 + 0) / 2
    cos = 6 / math.sqrt(5 * 8)
    assert match_loss(s, tt, "cosine").item() == pytest.approx(1 - cos, rel=1e-6)
    adapter = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        adapter.weight.copy_(t([[1, 1]]))
    # pair 1: [1,2] -> 3 vs 5 -> (3-5)^2 = 4;  pair 2 (identity): [1,2] vs [2,2] -> 0.5
    loss = feature_kd_loss([s, s], [t([[5]]), tt], [adapter, nn.Identity()], "mse")
    assert loss.item() == pytest.approx((4 + 0.5) / 2)
    with pytest.raises(ValueError, match="feature loss"):
        match_loss(s, tt, "l1")


def test_feature_kd_teacher_gets_no_gradient():
    s = t([[1, 2]]).requires_grad_()
    teacher = t([[2, 2]]).requires_grad_()
    feature_kd_loss([s], [teacher], None, "mse").backward()
    assert teacher.grad is None
    assert s.grad.tolist() == [[-1.0, 0.0]]  # d/ds mean((s-t)^2) = 2(s-t)/2


def test_relation_kd_loss_both_directions():
    # teacher: drone = satellite = I, tau 1 -> S_t = I; student drone = [[1,0],[1,0]] -> S_s = [[1,0],[1,0]]
    eye = t([[1, 0], [0, 1]])
    a, b = E / (E + 1), 1 / (E + 1)
    rows = (0 + (b * math.log(b / a) + a * math.log(a / b))) / 2  # row 0 equal; row 1 swapped
    cols = a * math.log(2 * a) + b * math.log(2 * b)  # student columns are uniform
    loss = relation_kd_loss(t([[1, 0], [1, 0]]), eye, eye, eye, tau=1.0)
    assert loss.item() == pytest.approx((rows + cols) / 2, rel=1e-6)
    assert relation_kd_loss(eye, eye, eye, eye, tau=0.1).item() == pytest.approx(0.0, abs=1e-7)


def test_self_distill_deepest_teaches_shallower():
    shallow = t([[1, 1]]).requires_grad_()
    deep = t([[3]]).requires_grad_()
    adapter = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        adapter.weight.copy_(t([[1, 1]]))
    loss = self_distill_loss([shallow, deep], [adapter], "mse")
    assert loss.item() == pytest.approx(1.0)  # (2 - 3)^2
    loss.backward()
    assert deep.grad is None  # the target is detached
    assert shallow.grad.tolist() == [[-2.0, -2.0]]
    assert self_distill_loss([deep], [], "mse").item() == 0.0


# ---------------------------------------------------------------------------- PFED terms


def test_fisd_inverse_shallow_stages_teach_the_deepest():
    # T=2. Stage 1 [2 ln3, 0] -> p = [3/4, 1/4]; stage 2 equals the deep head [0, 0] -> p = [1/2, 1/2].
    # KL(stage1 || deep) * T^2 = ln(1.6875) (as in the Hinton test); stage 2 adds 0; mean of the two.
    stage1, stage2 = t([[2 * LN3, 0]]).requires_grad_(), t([[0, 0]]).requires_grad_()
    deep = t([[0, 0]]).requires_grad_()
    loss = fisd_loss([stage1, stage2], deep, temperature=2.0, direction="inverse")
    assert loss.item() == pytest.approx(math.log(1.6875) / 2, rel=1e-6)
    loss.backward()
    assert stage1.grad is None and stage2.grad is None  # the shallow stages are the (detached) targets
    # d/dz_deep of T^2/2 * KL(p1 || softmax(z/T)) = T/2 * (p_deep - p1) = [-0.25, 0.25]: class 0 goes up
    assert deep.grad[0].tolist() == pytest.approx([-0.25, 0.25])


def test_fisd_forward_deepest_teaches_the_shallow_stages():
    # KL(deep || stage1) * T^2 with p_deep = [1/2, 1/2], p_1 = [3/4, 1/4]:
    # 4 * (1/2 ln(2/3) + 1/2 ln 2) = 2 ln(4/3)
    stage1, deep = t([[2 * LN3, 0]]).requires_grad_(), t([[0, 0]]).requires_grad_()
    loss = fisd_loss([stage1], deep, temperature=2.0, direction="forward")
    assert loss.item() == pytest.approx(2 * math.log(4 / 3), rel=1e-6)
    loss.backward()
    assert deep.grad is None
    assert stage1.grad[0].tolist() == pytest.approx([0.5, -0.5])  # T * (p_1 - p_deep): towards uniform
    assert fisd_loss([], deep, 2.0, "inverse").item() == 0.0
    with pytest.raises(ValueError, match="fisd direction"):
        fisd_loss([stage1], deep, 2.0, "sideways")


def test_triplet_mines_the_hardest_negative_in_the_batch():
    # drone = I3; satellite rows s0 = (.8,.6,0), s1 = (.6,.8,0), s2 = (0,0,1) -> cos = [[.8,.6,0],[.6,.8,0],[0,0,1]]
    # d = sqrt(2 - 2 cos). Anchors 0 and 1 (both directions): positive at cos .8, the HARDEST negative
    # at cos .6 (not the easy one at cos 0): max(0, m + sqrt(.4) - sqrt(.8)); anchor 2: m - sqrt(2) < 0.
    drone = torch.eye(3)
    sat = t([[0.8, 0.6, 0], [0.6, 0.8, 0], [0, 0, 1]])
    labels = torch.tensor([0, 1, 2])
    loss = cross_domain_triplet_loss(drone, sat, labels, margin=0.5)
    assert loss.item() == pytest.approx(2 / 3 * (0.5 + math.sqrt(0.4) - math.sqrt(0.8)), rel=1e-5)
    # A margin the batch already satisfies gives 0.
    assert cross_domain_triplet_loss(drone, sat, labels, margin=0.1).item() == 0.0
    # No negative in the batch (one building): nothing to mine, 0.
    assert cross_domain_triplet_loss(drone[:1], sat[:1], labels[:1], margin=0.5).item() == 0.0


def test_triplet_gradient_pulls_the_positive_and_pushes_the_negative():
    # drone 0 = e0: its positive s0 (cos .6) is FARTHER than building 1's s1 (cos .8), an active triplet.
    drone = t([[1, 0, 0], [0, 0, 1]]).requires_grad_()
    sat = t([[0.6, 0.8, 0], [0.8, 0, 0.6]])
    cross_domain_triplet_loss(drone, sat, torch.tensor([0, 1]), margin=0.3).backward()
    step = F.normalize(drone - 0.1 * drone.grad, dim=-1)
    # After a step against the gradient drone 0 is closer to its positive and farther from the negative.
    assert step[0] @ sat[0] > drone[0] @ sat[0] and step[0] @ sat[1] < drone[0] @ sat[1]


def test_uapa_weights_the_uncertain_view_towards_the_certain_one():
    # T=1. Drone [ln3, 0] -> p_d = [3/4, 1/4] (confident); satellite [0, 0] -> p_s = [1/2, 1/2].
    # u = H / ln 2: u_s = 1, u_d = (ln 4 - 3/4 ln 3) / ln 2.
    # KL(p_d || p_s) = ln(1.6875) / 4; KL(p_s || p_d) = 1/2 ln(4/3).
    u_s, u_d = 1.0, (math.log(4) - 0.75 * LN3) / math.log(2)
    expect = (u_s * math.log(1.6875) / 4 + u_d * 0.5 * math.log(4 / 3)) / (u_d + u_s)
    drone, sat = t([[LN3, 0]]).requires_grad_(), t([[0, 0]]).requires_grad_()
    loss = uapa_loss(drone, sat, temperature=1.0)
    assert loss.item() == pytest.approx(expect, rel=1e-6)
    loss.backward()
    # The uncertain satellite prediction moves towards the drone's class 0, and harder than the
    # confident drone prediction moves towards uniform.
    assert sat.grad[0, 0] < 0 < sat.grad[0, 1]
    assert drone.grad[0, 0] > 0
    assert sat.grad.abs().sum() > drone.grad.abs().sum()
    # T^2 scaling: logits x2 at T=2 give the same distributions, so the loss is 4x.
    assert uapa_loss(2 * drone, 2 * sat, temperature=2.0).item() == pytest.approx(4 * expect, rel=1e-6)
    # Identical predictions: nothing to align.
    assert uapa_loss(sat, sat, temperature=1.0).item() == pytest.approx(0.0, abs=1e-7)


def test_triplet_mines_the_hardest_positive_when_a_building_repeats():
    # Two rows of building 0 (labels [0, 0, 1]), unit vectors in the plane at angles 0, 60 and 90 deg:
    # drone = satellite = (1,0), (1/2, sqrt3/2), (0,1). Drone anchor 0: positives s0 (d 0) and s1
    # (cos 1/2, d 1) -> the FARTHER, d_pos = 1; negative s2 (cos 0, d sqrt2). Anchor 1: positives s0
    # (d 1), s1 (d 0) -> d_pos = 1; negative s2 (cos sqrt3/2, d sqrt(2 - sqrt3)). Anchor 2: its only
    # positive s2 (d 0), hardest negative s1 (d sqrt(2 - sqrt3)). Symmetric, so both directions agree.
    r3 = math.sqrt(3)
    x = t([[1, 0], [0.5, r3 / 2], [0, 1]])
    m = 0.5
    per_anchor = [
        max(0.0, m + 1 - math.sqrt(2)),
        max(0.0, m + 1 - math.sqrt(2 - r3)),
        max(0.0, m + 0 - math.sqrt(2 - r3)),
    ]
    loss = cross_domain_triplet_loss(x, x, torch.tensor([0, 0, 1]), margin=m)
    assert loss.item() == pytest.approx(sum(per_anchor) / 3, rel=1e-5)
    # With the nearest positive instead (d 0 for every anchor) only anchor 2's term would remain.
    assert loss.item() > per_anchor[2] / 3 + 0.1

"""Each loss against a value worked out by hand on 2x2-sized tensors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from geodistill.train.losses import (
    depth_pairs,
    feature_kd_loss,
    info_nce,
    instance_loss,
    kd_logit_heads,
    kd_logit_loss,
    match_loss,
    relation_kd_loss,
    self_distill_loss,
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

"""The strategy interface's plain form: accumulation boundaries, 1/accum gradients, scheduled steps, resumable state."""

from __future__ import annotations

import pytest
import torch

from geodistill.errors import ConfigError
from geodistill.models import model_from_config
from geodistill.train.config import RunConfig
from geodistill.train.steps import TrainModule, build_optimizer, build_scheduler
from geodistill.train.wrapped import Wrapped, check_strategy, distributed_ready

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


def _wrapped(**train) -> Wrapped:
    cfg = RunConfig.from_dict(
        {
            "data": {"img_size": 32},
            "model": {"backbone": "convnext_atto", "embed_dim": 8, "pooling": "avg"},
            "train": {"warmup_steps": 0, "schedule": "cosine", "lr": 0.01, **train},
        }
    )
    torch.manual_seed(0)
    module = TrainModule(model_from_config(cfg.model, 4), cfg)
    optimizer = build_optimizer(module, cfg)
    return Wrapped(module, optimizer, build_scheduler(optimizer, cfg, 4), cfg, CPU)


def _batch(seed: int):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(2, 1, 3, 32, 32, generator=g),
        torch.randn(2, 3, 32, 32, generator=g),
        torch.tensor([0, 3]),
    )


def test_the_optimizer_steps_on_accumulation_boundaries_only():
    wrapped = _wrapped(grad_accum=2)
    lrs = []
    for micro in range(4):
        loss, _ = wrapped.forward(*_batch(micro))
        wrapped.backward(loss)
        lrs.append(wrapped.optimizer.param_groups[0]["lr"])
        assert wrapped.step() == (micro % 2 == 1)
    assert (wrapped.micro, wrapped.optimizer_steps) == (4, 2)
    # cosine over 4 optimizer steps: factor 1 before the first step, 0.5 (1 + cos(pi / 4)) after it
    assert lrs[0] == lrs[1] == pytest.approx(0.01)
    assert lrs[2] == pytest.approx(0.01 * 0.5 * (1 + 2**-0.5))


def test_backward_scales_the_loss_by_one_over_the_accumulation():
    plain, accumulated = _wrapped(grad_accum=1), _wrapped(grad_accum=4)
    for wrapped in (plain, accumulated):
        wrapped.module.eval()  # BatchNorm's batch statistics aside, the two forwards are the same
        loss, _ = wrapped.forward(*_batch(7))
        wrapped.backward(loss)
    weight = "model.heads.0.add_block.0.weight"
    grads = [dict(w.unwrap().named_parameters())[weight].grad for w in (plain, accumulated)]
    torch.testing.assert_close(grads[1], grads[0] / 4)


def test_state_round_trips_for_a_resume():
    wrapped = _wrapped()
    loss, _ = wrapped.forward(*_batch(1))
    wrapped.backward(loss)
    wrapped.step()
    state = wrapped.state()
    fresh = _wrapped()
    fresh.load_state(state)
    assert fresh.optimizer_steps == 1 and fresh.scheduler.last_epoch == wrapped.scheduler.last_epoch
    assert fresh.optimizer.state_dict()["state"].keys() == wrapped.optimizer.state_dict()["state"].keys()
    assert set(wrapped.full_state_dict()) == set(wrapped.unwrap().model.state_dict())
    assert wrapped.adapters_state_dict() is None  # a teacher run has no distillation adapters


def test_precision_picks_the_autocast_and_fp16_deepspeed_needs_a_gpu():
    assert _wrapped(precision="bf16").autocast().fast_dtype == torch.bfloat16
    assert not isinstance(_wrapped().autocast(), torch.autocast)
    cfg = RunConfig.from_dict({"train": {"strategy": "deepspeed", "precision": "fp16"}})
    with pytest.raises(
        ConfigError, match=r"^train.precision=fp16 with deepspeed needs a GPU; use bf16 on CPU$"
    ):
        check_strategy(cfg, CPU)
    check_strategy(cfg, torch.device("cuda", 0))  # allowed where there is one
    assert not distributed_ready()

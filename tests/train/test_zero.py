"""The DeepSpeed strategy's inputs: its config dict from the run config, and 0-d parameters held as [1]."""

from __future__ import annotations

import torch
from torch import nn

from geodistill.train.config import RunConfig
from geodistill.train.zero import deepspeed_config, scalar_params_to_1d


def _cfg(**train) -> RunConfig:
    return RunConfig.from_dict({"train": {"strategy": "deepspeed", **train}})


def test_batch_sizes_precision_and_zero_stage():
    config = deepspeed_config(_cfg(grad_accum=3, zero_stage=2, precision="bf16", grad_clip=1.5), 4, 2)
    assert config["train_micro_batch_size_per_gpu"] == 2 and config["gradient_accumulation_steps"] == 3
    assert config["train_batch_size"] == 24  # 2 per rank x 3 accumulated x 4 ranks
    assert config["zero_optimization"] == {"stage": 2}
    assert (config["bf16"], config["fp16"], config["gradient_clipping"]) == (
        {"enabled": True},
        {"enabled": False},
        1.5,
    )
    assert config["zero_force_ds_cpu_optimizer"] is False  # torch's AdamW, nothing compiled


def test_offload_moves_the_optimizer_and_at_stage_3_the_parameters():
    assert deepspeed_config(_cfg(zero_stage=2, offload=True), 1, 1)["zero_optimization"] == {
        "stage": 2,
        "offload_optimizer": {"device": "cpu"},
    }
    assert deepspeed_config(_cfg(zero_stage=3, offload=True), 1, 1)["zero_optimization"] == {
        "stage": 3,
        "offload_optimizer": {"device": "cpu"},
        "offload_param": {"device": "cpu"},
    }


def test_scalar_parameters_become_one_element_vectors_in_place():
    model = nn.Module()
    model.scale = nn.Parameter(torch.tensor(2.5))
    model.head = nn.Linear(2, 2)
    model.head.p = nn.Parameter(torch.tensor(3.0), requires_grad=False)
    names = scalar_params_to_1d(model)
    assert names == ["scale", "head.p"]
    assert model.scale.shape == (1,) and model.scale.item() == 2.5 and model.scale.requires_grad
    assert model.head.p.shape == (1,) and not model.head.p.requires_grad
    assert model.head.weight.shape == (2, 2)  # other parameters untouched
    assert scalar_params_to_1d(model) == []

"""The DeepSpeed strategy's inputs: its config dict from the run config, 0-d parameters held as [1],
and a CPU host's set-up without DeepSpeed's and torch's GPU warnings."""

from __future__ import annotations

import logging
import os
import warnings

import torch
from torch import nn

from geodistill.train import zero
from geodistill.train.config import RunConfig
from geodistill.train.zero import deepspeed_config, quiet_deepspeed, scalar_params_to_1d


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


def test_a_cpu_host_names_deepspeeds_accelerator_and_drops_only_torchs_cuda_home_warning(
    tmp_path, monkeypatch
):
    import torch.utils.cpp_extension as cpp_extension

    class Records(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    logger = logging.getLogger("torch.utils.cpp_extension")
    records = Records()
    logger.addHandler(records)
    monkeypatch.setattr(logger, "filters", [f for f in logger.filters if f is not zero._NO_CUDA_RUNTIME])
    monkeypatch.delenv("DS_ACCELERATOR", raising=False)
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))  # a CUDA toolkit on a host torch sees no GPU on
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    try:
        assert cpp_extension._find_cuda_home() == str(tmp_path)
        assert records.messages == [f"No CUDA runtime is found, using CUDA_HOME='{tmp_path}'"]
        quiet_deepspeed(cpu=True)
        quiet_deepspeed(cpu=True)  # twice: one filter
        assert cpp_extension._find_cuda_home() == str(tmp_path)
        logger.warning("something else")
        assert records.messages[1:] == ["something else"]
        assert logger.filters.count(zero._NO_CUDA_RUNTIME) == 1
        assert os.environ["DS_ACCELERATOR"] == "cpu"
    finally:
        logger.removeHandler(records)


def test_deepspeeds_call_of_a_deprecated_collective_warns_no_more_and_other_warnings_still_do(monkeypatch):
    """ZeRO calls all_gather_into_tensor and reduce_scatter_tensor: every worker printed torch's FutureWarnings."""
    import torch.distributed as dist

    monkeypatch.setenv("DS_ACCELERATOR", "cpu")

    def call(quiet: bool) -> list[str]:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("default")
            if quiet:
                quiet_deepspeed(cpu=False)
            for collective in (dist.all_gather_into_tensor, dist.reduce_scatter_tensor):
                try:  # the real functions: they warn before they find no process group
                    collective(torch.zeros(2), torch.zeros(1))
                except (ValueError, RuntimeError):
                    pass
            warnings.warn("another FutureWarning", FutureWarning, stacklevel=1)
        return [str(w.message) for w in seen]

    before = call(quiet=False)
    assert any("all_gather_into_tensor` is deprecated" in m for m in before), before
    assert any("reduce_scatter_tensor` is deprecated" in m for m in before), before
    assert call(quiet=True) == ["another FutureWarning"]

"""ModelConfig: its checks, the replay trial's way around the timm ones, and no torch to read it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from geodistill.errors import ConfigError
from geodistill.models.config import ModelConfig, without_backbone_checks


def test_an_unknown_backbone_is_named_in_one_line():
    with pytest.raises(ConfigError, match="unknown backbone 'resnet_nope'"):
        ModelConfig(backbone="resnet_nope").validate()


def test_an_input_smaller_than_one_cell_of_the_backbone_is_refused():
    with pytest.raises(
        ConfigError, match=r"model.img_size=16 is smaller than one cell of resnet18 \(total stride 32\)"
    ):
        ModelConfig(backbone="resnet18", img_size=16).validate()


def test_without_backbone_checks_skips_the_timm_checks_inside_the_block_only():
    with without_backbone_checks():
        ModelConfig(backbone="resnet_nope", img_size=16).validate()  # nothing asks timm
        with pytest.raises(ConfigError, match="pooling"):  # the declared choices still hold
            ModelConfig(pooling="max").validate()
    with pytest.raises(ConfigError, match="unknown backbone"):
        ModelConfig(backbone="resnet_nope").validate()


def test_reading_and_checking_a_config_imports_neither_torch_nor_timm():
    """A replayed search trial composes its config and builds no model: it must not pay for torch."""
    code = (
        "import sys\n"
        "from geodistill.train.config import RunConfig\n"
        "from geodistill.models.config import ModelConfig, without_backbone_checks\n"
        "with without_backbone_checks():\n"
        "    ModelConfig(backbone='convnext_atto').validate()\n"
        "print(sorted(m for m in ('torch', 'timm') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True
    )
    assert out.stdout.strip() == "[]"

"""The backbone's total stride (the smallest image it accepts), read on the meta device and cached."""

from __future__ import annotations

import pytest

from geodistill.errors import UnknownBackboneError
from geodistill.models.stride import total_stride


@pytest.mark.parametrize(
    ("backbone", "stride"),
    [("vit_tiny", 16), ("resnet18", 32), ("convnext_atto", 32), ("vit_small_patch8_224", 8)],
)
def test_total_stride_of_vits_and_convnets(backbone, stride):
    assert total_stride(backbone) == stride


def test_the_answer_is_cached_per_backbone():
    total_stride.cache_clear()
    total_stride("resnet18")
    total_stride("resnet18")
    info = total_stride.cache_info()
    assert (info.hits, info.misses) == (1, 1)


def test_an_unknown_backbone_is_one_line():
    with pytest.raises(UnknownBackboneError) as err:
        total_stride("vit_huge_nope")
    assert "unknown backbone 'vit_huge_nope'" in str(err.value) and "\n" not in str(err.value)

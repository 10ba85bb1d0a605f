"""Image transforms: the backbone's normalisation, renormalisation between backbones, train augmentation."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from geodistill.data.transforms import (
    IMAGENET,
    ImageConfig,
    RandomRotate90,
    drone_transform,
    renormalize,
    satellite_transform,
    seeded_rng,
)

HALF = ImageConfig(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bilinear")


def test_eval_transform_resizes_and_normalises_with_the_configs_mean_and_std():
    img = Image.new("RGB", (40, 24), (255, 0, 51))  # 51 / 255 = 0.2
    x = drone_transform(16, train=False, image=HALF)(img)
    assert x.shape == (3, 16, 16)
    # (v - 0.5) / 0.5: 1 -> 1, 0 -> -1, 0.2 -> -0.6
    assert [x[c].mean().item() for c in range(3)] == pytest.approx([1.0, -1.0, -0.6], abs=1e-6)
    y = satellite_transform(16, train=False)(img)  # ImageNet's: (1 - 0.485) / 0.229
    assert y[0, 0, 0].item() == pytest.approx((1 - 0.485) / 0.229, abs=1e-5)


def test_renormalize_maps_one_backbones_input_to_anothers():
    raw = torch.rand(2, 3, 4, 4)
    as_imagenet = (raw - torch.tensor(IMAGENET.mean).view(3, 1, 1)) / torch.tensor(IMAGENET.std).view(3, 1, 1)
    as_half = (raw - 0.5) / 0.5
    torch.testing.assert_close(renormalize(as_imagenet, IMAGENET, HALF), as_half, atol=1e-5, rtol=1e-5)
    assert renormalize(as_half, HALF, HALF) is as_half  # same normalisation: untouched


def test_image_config_from_timm_keeps_known_interpolations_only():
    cfg = ImageConfig.from_timm({"mean": [0.1, 0.2, 0.3], "std": [1, 1, 1], "interpolation": "bilinear"})
    assert cfg == ImageConfig((0.1, 0.2, 0.3), (1.0, 1.0, 1.0), "bilinear")
    assert (
        ImageConfig.from_timm({"mean": [0] * 3, "std": [1] * 3, "interpolation": "odd"}).interpolation
        == "bicubic"
    )
    assert ImageConfig.from_timm({"mean": [0] * 3, "std": [1] * 3}).interpolation == "bicubic"


def test_train_transforms_augment_and_torch_seed_governs_them():
    img = Image.new("RGB", (16, 16))
    img.putpixel((0, 0), (255, 255, 255))  # one white corner: flips and rotations move it
    corners = set()
    for seed in range(12):
        torch.manual_seed(seed)
        x = satellite_transform(16, train=True, image=HALF)(img)
        assert x.shape == (3, 16, 16)
        corners.add(tuple((x[0] > 0).nonzero()[0].tolist()) if (x[0] > 0).any() else None)
    assert len(corners) > 1  # the white pixel lands in more than one place
    torch.manual_seed(3)
    a = drone_transform(16, train=True)(img)
    torch.manual_seed(3)
    torch.testing.assert_close(drone_transform(16, train=True)(img), a)
    torch.manual_seed(5)
    first = seeded_rng().random()
    torch.manual_seed(5)
    assert seeded_rng().random() == first


def test_random_rotate90_turns_by_quarter_turns():
    img = Image.new("L", (2, 2))
    img.putpixel((0, 0), 255)
    seen = set()
    for seed in range(20):
        torch.manual_seed(seed)
        seen.add(tuple(RandomRotate90()(img).getdata()))
    assert seen == {(255, 0, 0, 0), (0, 0, 255, 0), (0, 0, 0, 255), (0, 255, 0, 0)}

"""Image transforms for drone frames and satellite tiles (PIL -> normalised tensor).

The normalisation and the resize interpolation are the backbone's: an ``ImageConfig`` built
from timm's data config of the model (``geodistill.models.image_config(name)``), ImageNet's by
default. The data layer does not import models; callers pass the config down.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = {
    "bicubic": T.InterpolationMode.BICUBIC,
    "bilinear": T.InterpolationMode.BILINEAR,
    "nearest": T.InterpolationMode.NEAREST,
    "lanczos": T.InterpolationMode.LANCZOS,
    "box": T.InterpolationMode.BOX,
    "hamming": T.InterpolationMode.HAMMING,
}


@dataclass(frozen=True)
class ImageConfig:
    """What a backbone expects of its input: per-channel mean/std and the resize interpolation."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"

    @classmethod
    def from_timm(cls, data_config: Mapping[str, Any]) -> ImageConfig:
        """From ``timm.data.resolve_data_config(...)`` (keys mean, std, interpolation)."""
        interp = str(data_config.get("interpolation") or "bicubic")
        return cls(
            mean=tuple(float(v) for v in data_config["mean"]),
            std=tuple(float(v) for v in data_config["std"]),
            interpolation=interp if interp in INTERPOLATIONS else "bicubic",
        )


IMAGENET = ImageConfig()


def renormalize(x: torch.Tensor, src: ImageConfig, dst: ImageConfig) -> torch.Tensor:
    """x [...,3,H,W] normalised for ``src`` -> normalised for ``dst`` (a per-channel affine map).

    Lets a teacher with another normalisation read the student's batch; the interpolation
    stays the one the batch was resized with.
    """
    if (src.mean, src.std) == (dst.mean, dst.std):
        return x
    s_mean, s_std, d_mean, d_std = (
        torch.tensor(v, dtype=x.dtype, device=x.device).view(3, 1, 1)
        for v in (src.mean, src.std, dst.mean, dst.std)
    )
    return (x * s_std + s_mean - d_mean) / d_std


class RandomRotate90:
    """Rotate by 0/90/180/270 degrees: a satellite tile has no canonical heading."""

    def __call__(self, img: Image.Image) -> Image.Image:
        k = int(torch.randint(4, (1,)).item())
        return img if k == 0 else img.rotate(90 * k)


def _common(img_size: int, *, train: bool, rotate: bool, image: ImageConfig) -> T.Compose:
    steps: list = [T.Resize((img_size, img_size), interpolation=INTERPOLATIONS[image.interpolation])]
    if train:
        pad = max(1, img_size // 16)
        steps += [T.Pad(pad, padding_mode="edge"), T.RandomCrop(img_size), T.RandomHorizontalFlip()]
        if rotate:
            steps.append(RandomRotate90())
    steps += [T.ToTensor(), T.Normalize(image.mean, image.std)]
    return T.Compose(steps)


def drone_transform(img_size: int, *, train: bool, image: ImageConfig = IMAGENET) -> T.Compose:
    """Resize; in training pad+crop and flip. Output Tensor[3, img_size, img_size]."""
    return _common(img_size, train=train, rotate=False, image=image)


def satellite_transform(img_size: int, *, train: bool, image: ImageConfig = IMAGENET) -> T.Compose:
    """Like the drone transform plus a random rotation by a multiple of 90 in training."""
    return _common(img_size, train=train, rotate=True, image=image)


def seeded_rng() -> random.Random:
    """A Python RNG drawn from torch's, so torch.manual_seed and DataLoader workers govern it."""
    return random.Random(int(torch.randint(2**62, (1,)).item()))

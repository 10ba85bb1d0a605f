"""Image transforms for drone frames and satellite tiles (PIL -> normalised tensor)."""

from __future__ import annotations

import random

import torch
from PIL import Image
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RandomRotate90:
    """Rotate by 0/90/180/270 degrees: a satellite tile has no canonical heading."""

    def __call__(self, img: Image.Image) -> Image.Image:
        k = int(torch.randint(4, (1,)).item())
        return img if k == 0 else img.rotate(90 * k)


def _common(img_size: int, *, train: bool, rotate: bool) -> T.Compose:
    steps: list = [T.Resize((img_size, img_size), interpolation=T.InterpolationMode.BICUBIC)]
    if train:
        pad = max(1, img_size // 16)
        steps += [T.Pad(pad, padding_mode="edge"), T.RandomCrop(img_size), T.RandomHorizontalFlip()]
        if rotate:
            steps.append(RandomRotate90())
    steps += [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return T.Compose(steps)


def drone_transform(img_size: int, *, train: bool) -> T.Compose:
    """Resize; in training pad+crop and flip. Output Tensor[3, img_size, img_size]."""
    return _common(img_size, train=train, rotate=False)


def satellite_transform(img_size: int, *, train: bool) -> T.Compose:
    """Like the drone transform plus a random rotation by a multiple of 90 in training."""
    return _common(img_size, train=train, rotate=True)


def seeded_rng() -> random.Random:
    """A Python RNG drawn from torch's, so torch.manual_seed and DataLoader workers govern it."""
    return random.Random(int(torch.randint(2**62, (1,)).item()))

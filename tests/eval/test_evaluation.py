"""evaluate() on the synthetic UniV: an oracle model scores 100, a random tiny GeoModel stays sane."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from geodistill.data import DatasetIndex, ViewDataset, open_index
from geodistill.errors import DataError
from geodistill.eval import evaluate, format_table
from geodistill.models import GeoModel, ModelConfig

VIEWS, IMG = 2, 32


class BuildingOracle(nn.Module):
    """Knows every test image: encode returns the one-hot of its building (flipped images too)."""

    def __init__(self, index: DatasetIndex) -> None:
        super().__init__()
        images, labels = [], []
        for subset in ("query_drone", "gallery_drone", "query_satellite", "gallery_satellite"):
            for x, label in ViewDataset(index.select(subset=subset), views=VIEWS, img_size=IMG):
                frames = x if x.dim() == 4 else x[None]  # [V,3,H,W]
                images += [frames, frames.flip(-1)]
                labels += [label] * 2 * len(frames)
        self.register_buffer("bank", torch.cat(images).flatten(1))  # [M,3*H*W]
        self.buildings = sorted(set(labels))
        self.register_buffer("slots", torch.tensor([self.buildings.index(b) for b in labels]))  # [M]

    def encode(self, images: torch.Tensor, view: str = "satellite") -> torch.Tensor:
        nearest = torch.cdist(images.flatten(1), self.bank).argmin(1)  # [B]
        return nn.functional.one_hot(self.slots[nearest], len(self.buildings)).float()  # [B,K]

    def refine(self, frame_descriptors: torch.Tensor) -> torch.Tensor:
        return frame_descriptors.mean(1)  # [B,V,D] -> [B,D]


@pytest.fixture(scope="module")
def index(synth_univ):
    return open_index(synth_univ)


def test_oracle_scores_100(index):
    result = evaluate(BuildingOracle(index), index, views=VIEWS, img_size=IMG, batch_size=4)
    perfect = {"recall@1": 100.0, "recall@5": 100.0, "recall@10": 100.0, "recall@top1": 100.0, "ap": 100.0}
    assert result == {"drone->satellite": perfect, "satellite->drone": perfect}


def test_random_tiny_geomodel_is_sane_and_deterministic(index):
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="resnet18", img_size=IMG, embed_dim=16, droprate=0.0)
    model = GeoModel(cfg, num_classes=6)
    model.train()
    result = evaluate(model, index, views=VIEWS, img_size=IMG, batch_size=3)
    assert model.training  # evaluation leaves the mode as it found it
    assert set(result) == {"drone->satellite", "satellite->drone"}
    for metrics in result.values():
        # 6 queries, 7 gallery items each with one positive: R@1 is a multiple of 100/6,
        # R@10 covers the whole gallery, top1% of 7 is CMC[0], AP >= 1/(2*7).
        assert metrics["recall@1"] * 6 / 100 == pytest.approx(round(metrics["recall@1"] * 6 / 100))
        assert metrics["recall@1"] <= metrics["recall@5"] <= metrics["recall@10"] == 100.0
        assert metrics["recall@top1"] == metrics["recall@1"]
        assert 100.0 / 14 - 1e-9 <= metrics["ap"] <= 100.0
    again = evaluate(model, index, views=VIEWS, img_size=IMG, batch_size=5)  # other batching, same numbers
    assert {d: pytest.approx(m) for d, m in result.items()} == again


def test_missing_subset_and_fps_are_user_errors(index):
    no_test = DatasetIndex([it for it in index.items if it.split == "train"])
    with pytest.raises(DataError, match="no test/query_drone items"):
        evaluate(BuildingOracle(index), no_test, views=VIEWS, img_size=IMG)
    with pytest.raises(DataError, match="no test/query_drone items at 5 fps"):
        evaluate(BuildingOracle(index), index, views=VIEWS, img_size=IMG, fps=5)
    at_5 = DatasetIndex([dataclasses.replace(it, fps=5) if it.view == "drone" else it for it in index.items])
    assert (
        evaluate(BuildingOracle(index), at_5, views=VIEWS, img_size=IMG, fps=5)["drone->satellite"]["ap"]
        == 100.0
    )


def test_format_table():
    result = {
        "drone->satellite": {
            "recall@1": 58.49,
            "recall@5": 78.67,
            "recall@10": 85.2,
            "recall@top1": 85.7,
            "ap": 63.13,
        },
        "satellite->drone": {
            "recall@1": 71.18,
            "recall@5": 82.31,
            "recall@10": 86.05,
            "recall@top1": 89.1,
            "ap": 58.74,
        },
    }
    assert format_table(result).splitlines() == [
        "direction           R@1    R@5   R@10  R@top1%     AP",
        "drone->satellite  58.49  78.67  85.20    85.70  63.13",
        "satellite->drone  71.18  82.31  86.05    89.10  58.74",
    ]

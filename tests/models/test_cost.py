"""Cost profiling: counted FLOPs against anchors and the analytic formulas, per-query cost."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from geodistill.models import GeoModel, ModelConfig, create_backbone, profile
from geodistill.models.cost import (
    COUNTER,
    analytic_backbone_macs,
    convnext_macs,
    count_flops,
    query_flops,
    resnet_macs,
    vit_macs,
)
from geodistill.models.refiners import MeanRefiner, MIRefiner


def meta_backbone_macs(name: str, size: int) -> tuple[int, int | None]:
    with torch.device("meta"):
        bb = create_backbone(name, img_size=size).eval()
    counted = count_flops(bb, torch.zeros(1, 3, size, size, device="meta")) // 2
    return counted, analytic_backbone_macs(bb, size)


@pytest.mark.parametrize("name,anchor_gmacs", [("vit_small", 4.6), ("resnet50", 4.1), ("convnext_tiny", 4.5)])
def test_published_anchors_at_224(name, anchor_gmacs):
    counted, _ = meta_backbone_macs(name, 224)
    assert counted / 1e9 == pytest.approx(anchor_gmacs, rel=0.03)


@pytest.mark.parametrize(
    "name,size",
    [
        ("vit_tiny", 128),
        ("vit_small", 224),
        ("vit_video2bev", 256),
        ("vit_small", 100),  # padded up to 112: a 7x7 grid
        ("resnet18", 224),
        ("resnet50", 100),
        ("convnext_atto", 128),
        ("convnext_tiny", 224),
        ("convnext_nano", 100),
    ],
)
def test_analytic_formula_agrees_with_the_counter(name, size):
    counted, analytic = meta_backbone_macs(name, size)
    assert analytic is not None
    assert abs(analytic - counted) / counted < 0.02


def test_analytic_formulas_by_hand():
    # ViT: 32 px, patch 16 -> 4 patches + cls = 5 tokens, width 8, depth 1, MLP 16.
    # embed 4*3*16*16*8 = 24576; block 4*5*64 + 2*25*8 + 2*5*8*16 = 1280 + 400 + 1280.
    assert vit_macs(img_size=32, patch=16, width=8, depth=1, mlp_hidden=16) == 24576 + 2960
    # ConvNeXt: 32 px -> 8x8 after the stem; dims (2, 4), one block each, kernel 3, ratio 4.
    # stem 64*3*16*2 = 6144; stage 0: 64*(9*2 + 8*4) = 3200; down 16*2*4*4 = 512; stage 1: 16*(36 + 128) = 2624.
    assert convnext_macs(img_size=32, dims=[2, 4], depths=[1, 1], kernel=3) == 6144 + 3200 + 512 + 2624
    # ResNet-18 at 224: the textbook 1.82 GMACs.
    assert resnet_macs(img_size=224, layers=[2, 2, 2, 2], bottleneck=False) / 1e9 == pytest.approx(
        1.814, abs=1e-3
    )
    assert analytic_backbone_macs(create_backbone("efficientnet_b0", img_size=32), 32) is None


def tiny_model(refiner: str = "mean", classes: int = 3, k: int = 2) -> GeoModel:
    cfg = ModelConfig(backbone="vit_tiny", img_size=32, embed_dim=16, refiner=refiner, refiner_k=k)
    return GeoModel(cfg, num_classes=classes)


def test_query_cost_is_views_times_frame_plus_refiner():
    d = 16
    one = query_flops(tiny_model(), img_size=32, views=1)
    assert query_flops(tiny_model(), img_size=32, views=4) == 4 * one  # the mean adds no matmul
    # select: similarities [4,D]x[D,4] and scores against the mean [4,D]x[D,1] -> 2*(16+4)*D FLOPs.
    assert query_flops(tiny_model("select"), img_size=32, views=4) == 4 * one + 2 * (16 + 4) * d
    # mi: the same two matmuls on the standardised frames, whatever k is.
    assert query_flops(tiny_model("mi"), img_size=32, views=4) == 4 * one + 2 * (16 + 4) * d
    # attention: scorer Linear(D,16) and Linear(16,1) on 4 frames -> 2*4*(16*D + 16) FLOPs.
    assert query_flops(tiny_model("attention"), img_size=32, views=4) == 4 * one + 2 * 4 * (16 * d + 16)


@pytest.mark.parametrize("views", [4, 8])
def test_mi_refiner_cost_by_kept_views(views):
    # The MI refiner (MSRM) gets all V encoded frames, then scores them with [V,D]x[D,V] (pairwise
    # correlations) and [V,D]x[D,1] (against the video mean): 2 (V^2 + V) D FLOPs, whatever k < V it
    # keeps (the greedy pick is element-wise, not counted). With k >= V it keeps every frame, which
    # is the mean: no FLOP. (The backbone part, V x one frame, is pinned in the test above.)
    d = 16
    frames = F.normalize(torch.randn(1, views, d), dim=-1)
    assert count_flops(MeanRefiner(), frames) == 0
    for k in (1, 2, views - 1):
        assert count_flops(MIRefiner(k), frames) == 2 * (views**2 + views) * d
        assert count_flops(MIRefiner(views), frames, k) == 2 * (views**2 + views) * d  # run-time k
    assert count_flops(MIRefiner(views), frames) == 0


def test_profile_without_latency_and_with_latency():
    model = tiny_model()
    cost = profile(model, img_size=32, views=2, measure_latency=False)
    assert cost.latency_ms is None and cost.throughput_qps is None
    assert cost.gflops == pytest.approx(2 * cost.gmacs) and cost.counter == COUNTER
    assert (cost.views, cost.img_size, cost.device) == (2, 32, "cpu")
    # The counted backbone part equals the analytic formula; the rest is the 192->16 bottleneck.
    backbone = analytic_backbone_macs(model.drone_encoder, 32)
    assert cost.gmacs * 1e9 == pytest.approx(2 * (backbone + 192 * 16), abs=1)
    # Parameters exclude the training-only classifier: independent of the class count.
    assert (
        profile(tiny_model(classes=1000), img_size=32, views=2, measure_latency=False).params_m
        == cost.params_m
    )
    expected = sum(p.numel() for p in model.parameters()) - (16 * 3 + 3) - 1  # classifier + logit_scale
    assert cost.params_m == pytest.approx(expected / 1e6)
    timed = profile(model, img_size=32, views=2, batch_size=2, repeats=1)
    assert timed.latency_ms > 0 and timed.latency_ms * timed.throughput_qps == pytest.approx(1000.0)
    assert timed.gmacs == cost.gmacs

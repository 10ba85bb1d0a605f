"""Backbone registry, pooling heads, refiners, GeoModel and its save/load."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from geodistill.errors import CheckpointError, ConfigError, UnknownBackboneError
from geodistill.models import (
    BACKBONES,
    GeoModel,
    ModelConfig,
    create_backbone,
    extract_descriptors,
    load_model,
    model_from_config,
    save_model,
)
from geodistill.models.cost import descriptor_params
from geodistill.models.heads import ring_weights
from geodistill.models.refiners import (
    AttentionRefiner,
    MIRefiner,
    SelectRefiner,
    gaussian_mi,
    mi_select_frames,
    select_frames,
)


def tiny_cfg(**kw) -> ModelConfig:
    base = dict(backbone="vit_tiny", img_size=32, embed_dim=16, droprate=0.0)
    base.update(kw)
    return ModelConfig(**base)


def test_registry_covers_the_issue_sizes():
    wanted = {
        "vit_tiny", "vit_small", "vit_base", "convnext_atto", "convnext_femto", "convnext_pico",
        "convnext_nano", "convnext_tiny", "resnet18", "resnet50", "mobilenetv3", "efficientnet_b0",
    }  # fmt: skip
    assert wanted <= set(BACKBONES)


def test_unknown_backbone_lists_known_names_in_one_line():
    with pytest.raises(UnknownBackboneError) as err:
        create_backbone("vit_gigantic", img_size=32)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(
        "unknown backbone 'vit_gigantic': not in timm.list_models() nor an alias; known: vit_tiny, vit_small"
    )
    assert all(name in msg for name in BACKBONES)
    assert msg.endswith(
        "did you mean davit_giant, vit_gigantic_patch14_224, vit_giant_patch14_224, vit_tiny?"
    )


@pytest.mark.parametrize(
    "name,width,dims,grid",
    [
        ("vit_tiny", 192, [192] * 4, 3),  # 48 px input on a 32 px model: dynamic size, 3x3 patches
        ("resnet18", 512, [64, 128, 256, 512], 2),  # stride 32 -> 2x2 at 48 px (ceil from pool)
        ("convnext_atto", 320, [40, 80, 160, 320], 1),
        ("efficientnet_b0", 1280, [24, 40, 112, 320], 2),
    ],
)
def test_backbone_outputs_and_any_input_size(name, width, dims, grid):
    bb = create_backbone(name, img_size=32).eval()
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        pooled, inter = bb(x)
        fmap, cls, _ = bb.forward_maps(x)
    assert bb.num_features == width and bb.feature_dims == dims
    assert pooled.shape == (2, width)
    assert [tuple(t.shape) for t in inter] == [(2, c) for c in dims]
    assert fmap.shape == (2, width, grid, grid)
    if name.startswith("vit"):
        torch.testing.assert_close(pooled, cls)  # class token
    else:
        torch.testing.assert_close(pooled, fmap.mean(dim=(2, 3)))


def test_ring_weights_match_the_video2bev_definition():
    w = ring_weights(16, 16)  # [4,256]
    counts = (w > 0).sum(dim=1).tolist()
    assert counts == [16, 48, 80, 112]  # ring k = square 4k minus square 4(k-1)
    for k, side in enumerate([4, 8, 12, 16]):
        vals = w[k][w[k] > 0]
        torch.testing.assert_close(vals, torch.full_like(vals, 1.0 / side**2))
    # Ring 1 is exactly the centred 4x4 square (rows/cols 6..9).
    mask = (w[0] > 0).reshape(16, 16)
    assert mask[6:10, 6:10].all() and mask.sum() == 16
    # An 8x8 grid: squares of side 2, 4, 6, 8.
    w8 = ring_weights(8, 8)
    assert (w8 > 0).sum(dim=1).tolist() == [4, 12, 20, 28]
    assert w8.max(dim=1).values.tolist() == pytest.approx([1 / 4, 1 / 16, 1 / 36, 1 / 64])


def test_select_refiner_picks_representative_then_least_redundant():
    # Frames (unit vectors in 2-D): three near-duplicates around 0 deg, one at 90 deg.
    ang = torch.tensor([0.0, 0.05, -0.05, math.pi / 2])
    frames = torch.stack([ang.cos(), ang.sin()], dim=-1)[None]  # [1,4,2]
    idx = select_frames(frames, 2)
    # Mean direction is ~ 18 deg: closest is frame 1 (0.05 rad); the least redundant next is 3.
    assert idx.tolist() == [[1, 3]]
    out = SelectRefiner(2)(frames)
    torch.testing.assert_close(out, (frames[0, 1] + frames[0, 3])[None] / 2)
    # V <= k: plain mean.
    torch.testing.assert_close(SelectRefiner(8)(frames), frames.mean(dim=1))


def test_gaussian_mi_of_a_correlation():
    # -1/2 ln(1 - r^2): r = 0.6 -> 1/2 ln(1/0.64) = ln 1.25; r = 0 -> 0; |r| = 1 is capped (finite).
    mi = gaussian_mi(torch.tensor([0.6, -0.6, 0.0, 1.0]))
    assert mi[:3].tolist() == pytest.approx([math.log(1.25), math.log(1.25), 0.0], abs=1e-6)
    assert math.isfinite(mi[3].item()) and mi[3].item() == pytest.approx(0.5 * math.log(1e6), rel=1e-3)


def test_mi_refiner_drops_duplicates_first():
    # Frames: three copies of a, then b and c (random 64-d, nearly uncorrelated with each other).
    g = torch.Generator().manual_seed(0)
    a, b, c = F.normalize(torch.randn(3, 64, generator=g), dim=-1)
    frames = torch.stack([a, a, a, b, c])[None]  # [1,5,64]
    idx = mi_select_frames(frames, 3)[0].tolist()
    # The mean is dominated by a, so an a comes first (most relevant); its copies are the most
    # redundant frames there are, so b and c follow, whatever their order.
    assert idx[0] in (0, 1, 2) and sorted(idx[1:]) == [3, 4]
    torch.testing.assert_close(MIRefiner(3)(frames), ((a + b + c) / 3)[None])
    # The number of kept views is a run-time choice; k >= V is the plain mean.
    torch.testing.assert_close(MIRefiner(3)(frames, k=1), frames[:, idx[0]])
    torch.testing.assert_close(MIRefiner(3)(frames, k=5), frames.mean(dim=1))
    with pytest.raises(ConfigError, match="k must be >= 1"):
        MIRefiner(3)(frames, k=0)
    # Batched: each video selects independently.
    two = torch.stack([frames[0], frames[0].flip(0)])  # [2,5,64]; video 2 has c, b first and the a's last
    picked = mi_select_frames(two, 3)
    assert sorted(picked[1, 1:].tolist()) == [0, 1] and picked[1, 0].item() in (2, 3, 4)


def test_mi_refiner_in_a_model_and_its_cost():
    model = GeoModel(tiny_cfg(refiner="mi", refiner_k=2), num_classes=3).eval()
    assert isinstance(model.refiner, MIRefiner) and model.refiner.k == 2
    with torch.no_grad():
        assert model.encode_video(torch.randn(2, 4, 3, 32, 32)).shape == (2, 16)


@pytest.mark.parametrize(
    "backbone,dims", [("convnext_atto", [40, 80, 160]), ("resnet18", [64, 128, 256]), ("vit_tiny", [192] * 3)]
)
def test_stage_heads_one_per_intermediate_stage_but_the_deepest(backbone, dims):
    model = GeoModel(tiny_cfg(backbone=backbone, stage_heads=True, pooling="avg"), num_classes=5)
    assert [blk.add_block[0].in_features for blk in model.stage_heads.blocks] == dims
    out = model(torch.randn(2, 3, 3, 32, 32), torch.randn(2, 3, 32, 32))
    assert [lg.shape for lg in out.drone_stage_logits] == [(2, 5)] * 3
    assert [lg.shape for lg in out.satellite_stage_logits] == [(2, 5)] * 3
    sum(lg.sum() for lg in out.drone_stage_logits).backward()
    assert all(p.grad is not None for p in model.stage_heads.parameters())
    # Training-only: retrieval does not run them and the cost leaves them out.
    plain = GeoModel(tiny_cfg(backbone=backbone, pooling="avg"), num_classes=5)
    assert plain.stage_heads is None and not any(k.startswith("stage_heads.") for k in plain.state_dict())
    assert descriptor_params(model) == descriptor_params(plain)
    assert plain(torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)).drone_stage_logits == []


def test_attention_refiner_starts_as_mean_and_learns_weights():
    frames = F.normalize(torch.randn(3, 5, 8), dim=-1)
    ref = AttentionRefiner(8)
    torch.testing.assert_close(ref(frames), frames.mean(dim=1))
    with torch.no_grad():
        ref.score[2].weight.fill_(1.0)
    w = ref.score(frames).softmax(dim=1)
    torch.testing.assert_close(ref(frames), (w * frames).sum(dim=1))
    assert not torch.allclose(ref(frames), frames.mean(dim=1))


def test_encode_video_runs_the_backbone_once_and_matches_frame_mean():
    model = GeoModel(tiny_cfg(), num_classes=7).eval()
    calls = []
    model.drone_encoder.model.patch_embed.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    frames = torch.randn(2, 3, 3, 32, 32)  # B=2, V=3
    with torch.no_grad():
        video = model.encode_video(frames)
    assert calls == [6]  # one call on the [B*V] batch
    with torch.no_grad():
        per_frame = torch.stack([model.encode(frames[:, i], view="drone") for i in range(3)], dim=1)
    torch.testing.assert_close(video, per_frame.mean(dim=1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(per_frame.norm(dim=-1), torch.ones(2, 3))
    # V is a run-time argument.
    with torch.no_grad():
        for v in (1, 2, 4):
            assert model.encode_video(torch.randn(1, v, 3, 32, 32)).shape == (1, 16)


def test_forward_gives_the_contract_outputs():
    model = GeoModel(tiny_cfg(share=False, refiner="attention"), num_classes=5)
    out = model(torch.randn(2, 4, 3, 32, 32), torch.randn(2, 3, 32, 32))
    assert out.drone_embedding.shape == (2, 16) and out.satellite_embedding.shape == (2, 16)
    torch.testing.assert_close(out.drone_embedding.norm(dim=-1), torch.ones(2))
    assert [t.shape for t in out.drone_logits] == [(2, 5)]
    assert [t.shape for t in out.satellite_features] == [(2, 192)] * 4
    assert out.logit_scale.shape == () and math.isclose(out.logit_scale.exp().item(), 1 / 0.07, rel_tol=1e-5)
    assert model.satellite_encoder is not None and model.satellite_encoder is not model.drone_encoder
    # The bottleneck BN sees each view's batch once (drone frames, then satellite).
    assert model.heads[0].add_block[1].num_batches_tracked.item() == 2
    loss = sum(lg.sum() for lg in out.drone_logits + out.satellite_logits) + out.drone_embedding.sum()
    loss.backward()  # gradients reach both encoders and the refiner
    assert model.drone_encoder.model.cls_token.grad is not None
    assert model.satellite_encoder.model.cls_token.grad is not None


@pytest.mark.parametrize("backbone,size,parts,width", [("vit_tiny", 128, 5, 192), ("resnet18", 256, 4, 512)])
def test_lpn_pooling_parts_and_descriptor(backbone, size, parts, width):
    # Sizes give an 8x8 final grid, so all four rings hold cells.
    model = GeoModel(tiny_cfg(backbone=backbone, pooling="lpn", img_size=size), num_classes=3).eval()
    assert len(model.heads) == parts and model.descriptor_dim == parts * width
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        d = model.encode(x)
    assert d.shape == (2, parts * width)
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(2))
    # Every part block has norm 1/sqrt(P).
    torch.testing.assert_close(d.view(2, parts, width).norm(dim=-1), torch.full((2, parts), parts**-0.5))
    out = model(x[:, None], x)
    assert len(out.drone_logits) == parts


def test_gem_and_token_pooling_and_config_errors():
    gem = GeoModel(tiny_cfg(backbone="resnet18", pooling="gem"), num_classes=2)
    assert gem.pool.gem.p.item() == pytest.approx(3.0)
    with pytest.raises(ConfigError, match="pooling 'token' needs a ViT backbone"):
        GeoModel(tiny_cfg(backbone="resnet18", pooling="token"), num_classes=2)
    with pytest.raises(
        ConfigError, match="model.refiner must be one of mean, attention, select, mi; got 'median'"
    ):
        GeoModel(tiny_cfg(refiner="median"), num_classes=2)
    with pytest.raises(ConfigError, match="unknown model config field"):
        model_from_config({"backbone": "vit_tiny", "depth": 3}, num_classes=2)
    m = model_from_config({"backbone": "vit_tiny", "img_size": 32, "pooling": "token"}, num_classes=2)
    assert isinstance(m, GeoModel) and m.cfg.pooling == "token"


def test_extract_descriptors_flip_tta_batched_and_restores_mode():
    model = GeoModel(tiny_cfg(), num_classes=3)
    model.train()
    x = torch.randn(5, 3, 32, 32)
    d = extract_descriptors(model, x, batch_size=2)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        ref = F.normalize(model.encode(x) + model.encode(x.flip(-1)), dim=-1)
    torch.testing.assert_close(d, ref, atol=1e-5, rtol=1e-5)
    assert d.is_inference()
    # Videos: flip-TTA per frame, then the refiner (mean, not re-normalised).
    v = torch.randn(2, 3, 3, 32, 32)
    dv = extract_descriptors(model, v)
    frames = extract_descriptors(model, v.flatten(0, 1), view="drone").view(2, 3, -1)
    torch.testing.assert_close(dv, frames.mean(dim=1), atol=1e-5, rtol=1e-5)


def test_save_and_load_round_trip_safetensors(tmp_path):
    cfg = tiny_cfg(share=False, pooling="gem", refiner="attention")
    model = GeoModel(cfg, num_classes=4).eval()
    with torch.no_grad():
        model.pool.gem.p.fill_(2.5)
    path = save_model(model, tmp_path / "model.safetensors")
    again = load_model(path, cfg, num_classes=4).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again.encode(x), model.encode(x))
    assert again.pool.gem.p.item() == pytest.approx(2.5)
    with pytest.raises(CheckpointError, match=r"shape mismatch for 'heads.0.classifier.0.weight'"):
        load_model(path, cfg, num_classes=9)


def test_backbone_local_weights_safetensors_and_pth(tmp_path):
    from safetensors.torch import save_file

    src = create_backbone("resnet18", img_size=32)
    state = {k: v.clone() for k, v in src.model.state_dict().items()}
    state["fc.weight"] = torch.zeros(10, 512)  # a classifier head in the file is ignored
    save_file(state, str(tmp_path / "r18.safetensors"))
    torch.save(state, tmp_path / "r18.pth")
    for name in ("r18.safetensors", "r18.pth"):
        bb = create_backbone("resnet18", img_size=32, weights=str(tmp_path / name))
        torch.testing.assert_close(bb.model.conv1.weight, src.model.conv1.weight)
    state["layer1.0.conv1.weight"] = torch.zeros(3, 3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"shape mismatch for 'layer1.0.conv1.weight'"):
        create_backbone("resnet18", img_size=32, weights=str(tmp_path / "bad.pth"))
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        create_backbone("resnet18", img_size=32, weights=str(tmp_path / "nope.pth"))

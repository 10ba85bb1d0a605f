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
from geodistill.models.refiners import (
    MIRefiner,
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

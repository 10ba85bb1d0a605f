"""Any timm model as a backbone: aliases and other families through timm's generic API,
pretrained weights through timm's own loading code (a Hugging Face cache the test writes),
weight files and URIs, the backbone's normalisation, and the partly frozen DINOv2 teacher."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

from geodistill.data import IMAGENET, ImageConfig, drone_transform, renormalize
from geodistill.errors import (
    CheckpointError,
    ConfigError,
    UnknownBackboneError,
    UnsupportedBackboneError,
    WeightsUnavailableError,
)
from geodistill.models import ALIASES, GeoModel, ModelConfig, create_backbone, get_spec, image_config
from geodistill.models.backbones import has_class_token
from geodistill.models.cost import analytic_backbone_macs, count_flops

# The fast tier builds a few; the rest run in the slow tier (as timm's own model tests split them).
FAST = {"vit_tiny", "resnet18", "convnext_atto", "mobilenetv3_small"}
OTHERS = [  # other families: what makes each one different for the generic code
    "vit_small_patch14_reg4_dinov2",  # 4 register tokens after the class token, patch 14
    "deit_tiny_distilled_patch16_224",  # class + distillation token
    "swin_tiny_patch4_window7_224",  # NHWC final map
    "levit_128s",  # tokens without a class token, 3 strides
    "regnety_002",
    "efficientvit_b0",
    "edgenext_xx_small",
    "fastvit_t8",
    "tiny_vit_5m_224",
    "mobilevitv2_050",
    "ghostnet_100",
]
SIZE = {"swin_tiny_patch4_window7_224": 224, "tiny_vit_5m_224": 64, "levit_128s": 64}


def _param(name: str):
    return pytest.param(name, marks=() if name in FAST or name == "regnety_002" else pytest.mark.slow)


@pytest.mark.parametrize("name", [_param(n) for n in [*ALIASES, *OTHERS]])
def test_backbone_builds_forwards_and_is_costed(name):
    size = SIZE.get(name, 32)
    bb = create_backbone(name, img_size=size).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        pooled, inter = bb(x)
        grid, cls, _ = bb.forward_maps(x)
        # Retrieval's path (forward_features, no taps) gives the same map and class token.
        grid_plain, cls_plain, none = bb.forward_maps(x, intermediates=False)
        # What timm's own API reports for the same taps: widths agree with feature_dims.
        _, raw = bb.model.forward_intermediates(x, indices=bb._take, output_fmt="NCHW")
    n = len(bb.feature_dims)
    assert 3 <= n <= 4 and len(inter) == n
    assert [tuple(t.shape) for t in inter] == [(2, c) for c in bb.feature_dims]
    assert [t.shape[1] for t in raw] == bb.feature_dims
    assert bb._take[-1] == len(bb.model.feature_info) - 1  # the deepest tap is the last stage/block
    assert pooled.shape == (2, bb.num_features) and grid.shape[:2] == (2, bb.num_features)
    torch.testing.assert_close(grid_plain, grid, rtol=0, atol=0)
    assert none == [] and (cls_plain is None) == (cls is None)
    if cls is not None:
        torch.testing.assert_close(cls_plain, cls, rtol=0, atol=0)
    assert torch.isfinite(pooled).all()
    if bb.has_token:
        torch.testing.assert_close(pooled, cls)
    else:
        assert cls is None
        torch.testing.assert_close(pooled, grid.mean(dim=(2, 3)))
    # Cost: counted on the meta device, positive; equal to the closed form where one exists.
    with torch.device("meta"):
        twin = create_backbone(name, img_size=size).eval()
    macs = count_flops(twin, torch.zeros(1, 3, size, size, device="meta")) // 2
    assert macs > 0
    analytic = analytic_backbone_macs(twin, size)
    if analytic is not None:
        assert abs(analytic - macs) / macs < 0.02
    assert (analytic is not None) == any(
        name.startswith(p) for p in ("vit", "deit", "convnext", "resnet", "dinov2")
    )


def test_names_tags_and_aliases_resolve_through_timm():
    assert get_spec("convnext_tiny.fb_in22k_ft_in1k").timm_name == "convnext_tiny.fb_in22k_ft_in1k"
    assert get_spec("vit_small.augreg_in21k").timm_name == "vit_small_patch16_224.augreg_in21k"
    assert get_spec("mobilenetv3").timm_name == "mobilenetv3_large_100"
    with pytest.raises(UnknownBackboneError) as err:
        get_spec("convnext_tiny.nope")
    msg = str(err.value)
    assert msg.startswith(
        "backbone 'convnext_tiny.nope': timm knows no pretrained tag 'nope' for convnext_tiny"
    )
    assert "fb_in22k_ft_in1k" in msg and "\n" not in msg
    assert has_class_token("vit_small_patch14_dinov2") and not has_class_token("resnet18")


def test_a_timm_model_without_the_feature_api_gets_one_line():
    from timm.models import register_model

    class Plain(nn.Module):
        def __init__(self, **kwargs):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.num_features = 8

        def forward(self, x):
            return self.conv(x)

    if not timm.is_model("geodistill_test_plain"):

        @register_model
        def geodistill_test_plain(pretrained=False, **kwargs):
            return Plain(**kwargs)

    with pytest.raises(UnsupportedBackboneError) as err:
        create_backbone("geodistill_test_plain", img_size=32)
    assert str(err.value) == (
        "backbone 'geodistill_test_plain' (Plain) has no timm forward_intermediates/feature_info API, "
        "which feature KD and pooling read; pick another timm model"
    )


def test_image_config_comes_from_timm_data_config():
    # augreg ViTs are trained on [-1, 1] inputs; ResNet/ConvNeXt on ImageNet statistics.
    assert image_config("vit_tiny") == ImageConfig((0.5,) * 3, (0.5,) * 3, "bicubic")
    assert image_config("resnet18") == IMAGENET
    assert image_config("vit_video2bev") == IMAGENET  # the release's own normalisation
    clip = image_config("vit_base_patch16_clip_224.openai")
    assert clip.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert create_backbone("vit_tiny", img_size=32).image_config == image_config("vit_tiny")
    # The transform applies it: a white image maps to (1 - mean) / std per channel.
    from PIL import Image

    white = Image.new("RGB", (40, 40), (255, 255, 255))
    for cfg in (image_config("vit_tiny"), IMAGENET):
        t = drone_transform(32, train=False, image=cfg)(white)
        expect = (1 - torch.tensor(cfg.mean)) / torch.tensor(cfg.std)
        torch.testing.assert_close(t[:, 0, 0], expect)
    # A teacher with another normalisation reads the student's batch re-mapped.
    x01 = torch.rand(2, 3, 4, 4)
    a, b = image_config("vit_tiny"), IMAGENET
    xa = (x01 - torch.tensor(a.mean).view(3, 1, 1)) / torch.tensor(a.std).view(3, 1, 1)
    xb = (x01 - torch.tensor(b.mean).view(3, 1, 1)) / torch.tensor(b.std).view(3, 1, 1)
    torch.testing.assert_close(renormalize(xa, a, b), xb)


# ---------------------------------------------------------------------------- pretrained weights


def _hub_cache(root: Path, repo: str, state: dict[str, torch.Tensor]) -> Path:
    """Write ``state`` where huggingface_hub's cache keeps ``repo``'s model.safetensors."""
    commit = "0" * 40
    repo_dir = root / "hub" / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snap / "model.safetensors"))
    return snap / "model.safetensors"


def test_pretrained_true_loads_the_tag_from_the_hf_cache_offline(tmp_path, monkeypatch):
    from huggingface_hub import constants

    torch.manual_seed(1)
    src = timm.create_model("resnet18", num_classes=1000)  # the "released" weights, with their classifier
    _hub_cache(tmp_path, "timm/resnet18.a1_in1k", src.state_dict())
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    bb = create_backbone("resnet18.a1_in1k", img_size=32, pretrained=True)
    torch.testing.assert_close(bb.model.layer4[1].conv2.weight, src.layer4[1].conv2.weight)
    # An alias names the same weights (resnet18's default tag is a1_in1k).
    again = create_backbone("resnet18", img_size=32, pretrained=True)
    torch.testing.assert_close(again.model.conv1.weight, src.conv1.weight)
    # Not cached and offline: one line naming the weights and how to fetch them.
    with pytest.raises(WeightsUnavailableError) as err:
        create_backbone("convnext_atto.d2_in1k", img_size=32, pretrained=True)
    msg = str(err.value)
    assert msg.startswith("pretrained weights timm/convnext_atto.d2_in1k are not available here")
    assert "hf download timm/convnext_atto.d2_in1k" in msg and "HF_HUB_OFFLINE=1" in msg
    assert str(tmp_path / "hub") in msg and "\n" not in msg
    with pytest.raises(ConfigError, match="model.weights and model.pretrained=true both choose weights"):
        create_backbone("resnet18", img_size=32, pretrained=True, weights="x.safetensors")


def test_pretrained_vit_at_another_size_resamples_position_embeddings(tmp_path, monkeypatch):
    from huggingface_hub import constants

    src = timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=64)  # 4x4 grid + cls
    _hub_cache(tmp_path, "timm/vit_tiny_patch16_224.augreg_in21k", src.state_dict())
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    bb = create_backbone("vit_tiny.augreg_in21k", img_size=32, pretrained=True)  # 2x2 grid
    assert bb.model.pos_embed.shape == (1, 5, 192)
    torch.testing.assert_close(bb.model.blocks[3].attn.qkv.weight, src.blocks[3].attn.qkv.weight)
    torch.testing.assert_close(bb.model.pos_embed[:, 0], src.pos_embed[:, 0])  # class position kept


@pytest.mark.slow
def test_hf_home_and_offline_are_read_from_the_environment(tmp_path):
    """A fresh process: HF_HOME chooses the cache and HF_HUB_OFFLINE=1 keeps off the network."""
    src = timm.create_model("resnet18", num_classes=0)
    _hub_cache(tmp_path, "timm/resnet18.a1_in1k", src.state_dict())
    code = (
        "import sys\n"
        "from geodistill.models import create_backbone\n"
        "from geodistill.errors import UserError\n"
        "bb = create_backbone('resnet18.a1_in1k', img_size=32, pretrained=True)\n"
        "print(float(bb.model.conv1.weight.sum()))\n"
        "try:\n"
        "    create_backbone('resnet18.tv_in1k', img_size=32, pretrained=True)\n"
        "except UserError as err:\n"
        "    print(err)\n"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2] / "src"), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=True
    ).stdout.splitlines()
    assert float(out[0]) == pytest.approx(float(src.conv1.weight.detach().sum()), rel=1e-5)
    assert out[1].startswith("pretrained weights timm/resnet18.tv_in1k are not available here")
    assert "hf download timm/resnet18.tv_in1k" in out[1]


def test_weights_file_or_uri_through_timms_filter_with_input_size_adaptation(tmp_path):
    src = create_backbone("vit_tiny", img_size=64)  # pos_embed for a 4x4 grid
    state = dict(src.model.state_dict())
    state["head.weight"] = torch.zeros(10, 192)  # a classifier head in the file is ignored
    save_file(state, str(tmp_path / "vit.safetensors"))
    for ref in (str(tmp_path / "vit.safetensors"), (tmp_path / "vit.safetensors").as_uri()):
        bb = create_backbone("vit_tiny", img_size=32, weights=ref)  # resampled to 2x2 (+ cls)
        assert bb.model.pos_embed.shape == (1, 5, 192)
        torch.testing.assert_close(bb.model.blocks[0].mlp.fc1.weight, src.model.blocks[0].mlp.fc1.weight)
    state.pop("blocks.0.mlp.fc1.weight")
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing key 'blocks.0.mlp.fc1.weight'"):
        create_backbone("vit_tiny", img_size=32, weights=str(tmp_path / "bad.safetensors"))


# ---------------------------------------------------------------------------- the DINOv2 teacher


def _by_state(model: nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters()) - trainable


def test_dinov2_teacher_trains_only_its_last_blocks():
    from geodistill.train.config import RunConfig
    from geodistill.train.steps import param_groups

    cfg = ModelConfig(
        backbone="vit_small_patch14_dinov2", img_size=28, embed_dim=32, pooling="gem", trainable_blocks=2
    )
    model = GeoModel(cfg, num_classes=5)
    vit = model.drone_encoder.model
    assert len(vit.blocks) == 12 and model.pool.gem is not None  # GeM over the patch grid
    block = sum(p.numel() for p in vit.blocks[0].parameters())
    norm = sum(p.numel() for p in vit.norm.parameters())
    enc_trainable, enc_frozen = _by_state(vit)
    assert enc_trainable == 2 * block + norm
    assert enc_frozen == sum(p.numel() for p in vit.parameters()) - 2 * block - norm
    assert not vit.pos_embed.requires_grad and not vit.patch_embed.proj.weight.requires_grad
    assert all(p.requires_grad for p in vit.blocks[10].parameters())
    assert not any(p.requires_grad for p in vit.blocks[9].parameters())
    # The optimizer gets the trainable tensors only (heads, GeM p, the last 2 blocks, norm).
    from geodistill.train.steps import TrainModule

    run = RunConfig.from_dict({"model": {"backbone": cfg.backbone, "img_size": 28}})
    module = TrainModule(model, run, None)
    opt = torch.optim.AdamW(param_groups(module, run))
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert in_opt == {id(p) for p in module.parameters() if p.requires_grad}
    # One step: the frozen front keeps no graph, no gradient and no optimizer state.
    seen = {}
    vit.blocks[9].register_forward_hook(lambda m, i, o: seen.setdefault("frozen_out", o))
    vit.blocks[10].register_forward_hook(lambda m, i, o: seen.setdefault("trained_out", o))
    out = model(torch.randn(2, 1, 3, 28, 28), torch.randn(2, 3, 28, 28))
    assert seen["frozen_out"].grad_fn is None and seen["trained_out"].grad_fn is not None
    loss = out.drone_embedding.sum() + sum(lg.sum() for lg in out.drone_logits) + out.logit_scale
    loss.backward()
    opt.step()
    assert all(p.grad is None for p in vit.parameters() if not p.requires_grad)
    assert all(p.grad is not None for p in vit.blocks[11].parameters())
    assert all(p in in_opt for p in map(id, opt.state))  # no state for frozen tensors
    stateful = sum(p.numel() for p in opt.state)
    assert stateful == sum(p.numel() for p in module.parameters() if p.requires_grad)
    with pytest.raises(ConfigError, match=r"model.trainable_blocks must be in 0..12, got 13"):
        create_backbone("vit_small_patch14_dinov2", img_size=28, trainable_blocks=13)


def test_pretrained_run_config_builds_and_its_checkpoint_reloads_without_the_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from geodistill.models import model_from_config
    from geodistill.platform.compose import compose_run_config
    from geodistill.train.checkpoint import load_checkpoint, save_checkpoint

    src = timm.create_model("resnet18", num_classes=0)
    _hub_cache(tmp_path / "hf", "timm/resnet18.a1_in1k", src.state_dict())
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    cfg = compose_run_config(["model=resnet18", "model.backbone=resnet18.a1_in1k", "model.pretrained=true"])
    model = model_from_config(cfg.model, num_classes=3)
    torch.testing.assert_close(model.drone_encoder.model.layer1[0].conv1.weight, src.layer1[0].conv1.weight)
    save_checkpoint(tmp_path / "ckpt", model, config=cfg, metrics={}, epoch=1)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))  # the weights are gone
    again, meta = load_checkpoint(tmp_path / "ckpt")
    assert meta["config"]["model"]["pretrained"] is True and again.cfg.pretrained is False
    torch.testing.assert_close(again.drone_encoder.model.layer1[0].conv1.weight, src.layer1[0].conv1.weight)


def test_teacher_reads_the_student_batch_in_its_own_normalisation():
    from geodistill.train.teacher_cache import TeacherOutputs

    teacher = GeoModel(ModelConfig(backbone="resnet18", img_size=32, embed_dim=8), num_classes=3)
    student_image = image_config("vit_tiny")  # [-1, 1] inputs; the ResNet teacher wants ImageNet's
    seen = []
    teacher.drone_encoder.model.conv1.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    x01 = torch.rand(2, 1, 3, 32, 32)
    as_student = (x01 - 0.5) / 0.5
    TeacherOutputs(teacher, None, image=student_image)(
        as_student, as_student[:, 0], epoch=0, indices=[0, 1], device=torch.device("cpu")
    )
    want = (x01[:, 0] - torch.tensor(IMAGENET.mean).view(3, 1, 1)) / torch.tensor(IMAGENET.std).view(3, 1, 1)
    torch.testing.assert_close(seen[0], want, atol=1e-5, rtol=1e-5)  # the drone frames [B*V,3,H,W]
    torch.testing.assert_close(seen[1], want, atol=1e-5, rtol=1e-5)  # the satellite tiles


def test_every_model_config_option_is_a_backbone_name_profile_accepts():
    """Issue 29: `model=dinov2_small` was a config option, `profile --backbone dinov2_small` unknown.
    Config options and profile's names come from one registry: each option's name resolves to the
    architecture the option trains."""
    from pathlib import Path

    import yaml

    from geodistill.models.backbones import get_spec

    conf = Path(__file__).resolve().parents[2] / "src/geodistill/platform/conf/model"
    for option in sorted(conf.glob("*.yaml")):
        backbone = yaml.safe_load(option.read_text())["backbone"]
        assert get_spec(option.stem).arch == get_spec(backbone).arch, option.name

"""Video2BEV release import: real shapes, an independent forward in plain torch, safe loading."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F
from video2bev_weights import CLASSES, GRID, HEADS, WIDTH, released_state_dict

from geodistill.errors import CheckpointError
from geodistill.models.video2bev import load_video2bev, video2bev_from_state_dict


def reference_descriptor(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The legacy ViT + LPN-ring descriptor in plain torch ops, written from docs/design.md."""
    p = {k[len("model_1.") :]: v.double() for k, v in state.items() if k.startswith("model_1.")}
    x = x.double()
    b = x.shape[0]
    t = F.conv2d(x, p["patch_embed.proj.weight"], p["patch_embed.proj.bias"], stride=16)  # [B,768,16,16]
    t = t.flatten(2).transpose(1, 2)  # [B,256,768] row-major
    t = torch.cat([p["cls_token"].expand(b, -1, -1), t], dim=1) + p["pos_embed"]  # [B,257,768]
    depth = len({k.split(".")[1] for k in p if k.startswith("blocks.")})
    for i in range(depth):
        q = lambda n, i=i: p[f"blocks.{i}.{n}"]  # noqa: E731
        h = F.layer_norm(t, (WIDTH,), q("norm1.weight"), q("norm1.bias"), eps=1e-6)
        qkv = (h @ q("attn.qkv.weight").T).reshape(b, -1, 3, HEADS, WIDTH // HEADS).permute(2, 0, 3, 1, 4)
        attn = (qkv[0] @ qkv[1].transpose(-2, -1)) * WIDTH**-0.5  # legacy scale
        o = (attn.softmax(-1) @ qkv[2]).transpose(1, 2).reshape(b, -1, WIDTH)
        t = t + o @ q("attn.proj.weight").T + q("attn.proj.bias")
        h = F.layer_norm(t, (WIDTH,), q("norm2.weight"), q("norm2.bias"), eps=1e-6)
        h = F.gelu(h @ q("mlp.fc1.weight").T + q("mlp.fc1.bias"))
        t = t + h @ q("mlp.fc2.weight").T + q("mlp.fc2.bias")
    t = F.layer_norm(t, (WIDTH,), p["norm.weight"], p["norm.bias"], eps=1e-6)
    grid = t[:, 1:].reshape(b, GRID, GRID, WIDTH)
    parts = [t[:, 0]]
    for k in range(1, 5):
        outer = grid[:, 8 - 2 * k : 8 + 2 * k, 8 - 2 * k : 8 + 2 * k].sum(dim=(1, 2))
        inner = grid[:, 8 - 2 * (k - 1) : 8 + 2 * (k - 1), 8 - 2 * (k - 1) : 8 + 2 * (k - 1)].sum(dim=(1, 2))
        parts.append((outer - inner) / (4 * k) ** 2)
    return torch.cat([F.normalize(part, dim=-1) / math.sqrt(5) for part in parts], dim=1)


@pytest.fixture(scope="module")
def released():
    return released_state_dict()


def test_real_shapes_match_the_independent_forward(released):
    model = video2bev_from_state_dict(released)
    assert model.cfg.backbone == "vit_video2bev" and model.cfg.pooling == "lpn" and model.cfg.share
    assert model.descriptor_dim == 3840 and len(model.heads) == 5 and model.num_classes == CLASSES
    assert sum(p.numel() for p in model.drone_encoder.parameters()) == sum(
        v.numel() for k, v in released.items() if k.startswith("model_1.")
    )
    x = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        got = model.encode(x)
    ref = reference_descriptor(released, x).float()
    assert got.shape == (2, 3840)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)
    # Temperature: released logits are divided by 0.07; ours multiply by exp(logit_scale).
    assert model.logit_scale.exp().item() == pytest.approx(1 / 0.07, rel=1e-6)
    # The heads load unchanged: bottleneck of part 0 equals Linear -> BN (eval) by hand.
    with torch.inference_mode():
        cls = torch.randn(2, WIDTH)
        z, _ = model.heads[0](cls)
    w, bias = released["classifier0.add_block.0.weight"], released["classifier0.add_block.0.bias"]
    rm, rv = released["classifier0.add_block.1.running_mean"], released["classifier0.add_block.1.running_var"]
    bn_w, bn_b = released["classifier0.add_block.1.weight"], released["classifier0.add_block.1.bias"]
    torch.testing.assert_close(z, ((cls @ w.T + bias) - rm) / torch.sqrt(rv + 1e-5) * bn_w + bn_b)


def test_wrong_key_and_shape_give_one_line_naming_the_first_mismatch(released):
    bad = dict(released)
    del bad["model_1.blocks.3.mlp.fc1.bias"]
    with pytest.raises(
        CheckpointError, match=r"^Video2BEV checkpoint: missing key 'model_1.blocks.3.mlp.fc1.bias'$"
    ):
        video2bev_from_state_dict(bad)
    bad = dict(released)
    bad["model_1.pos_embed"] = torch.zeros(1, 197, WIDTH)
    bad["model_3.pos_embed"] = bad["model_1.pos_embed"]
    with pytest.raises(CheckpointError) as err:
        video2bev_from_state_dict(bad)
    assert str(err.value) == (
        "Video2BEV checkpoint: shape mismatch for 'model_1.pos_embed': checkpoint (1, 197, 768), model (1, 257, 768)"
    )
    bad = dict(released)
    bad["model_1.head.weight"] = torch.zeros(3, WIDTH)
    with pytest.raises(CheckpointError, match=r"unexpected key 'model_1.head.weight'"):
        video2bev_from_state_dict(bad)
    with pytest.raises(CheckpointError, match="not a Video2BEV stage-1 state_dict"):
        video2bev_from_state_dict({"weight": torch.zeros(1)})


class _Evil:
    """Unpickling this calls os.system / open: a weights-only loader must refuse it."""

    def __init__(self, action, arg):
        self.action, self.arg = action, arg

    def __reduce__(self):
        if self.action == "system":
            return (os.system, (f"touch {self.arg}",))
        return (open, (self.arg, "w"))


@pytest.mark.parametrize("action", ["system", "open"])
def test_pickled_code_is_refused_and_never_runs(tmp_path, action):
    marker = tmp_path / "pwned"
    path = tmp_path / "net_EEE.pth"
    torch.save({"logit_scale": torch.tensor(0.07), "payload": _Evil(action, str(marker))}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError) as err:
        load_video2bev(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(
        f"refusing to load {path}: it needs pickled code to rebuild, which is never executed"
    )
    assert not marker.exists()


@pytest.mark.slow
def test_load_from_file_with_opts_and_separate_branches(tmp_path, released):
    """The file path: weights-only .pth + opts.yaml; different model_3 -> separate drone encoder."""
    state = dict(released)
    state["model_3.norm.bias"] = state["model_1.norm.bias"] + 0.5
    (tmp_path / "opts.yaml").write_text(
        "h: 256\nw: 256\ndroprate: 0.75\nshare: false\nlpn: true\nnclasses: 11\n"
    )
    torch.save(state, tmp_path / "net_EEE.pth")
    model = load_video2bev(tmp_path / "net_EEE.pth")
    assert model.cfg.share is False and model.cfg.droprate == 0.75
    assert model.heads[0].dropout.p == 0.75
    x = torch.randn(1, 3, 256, 256)
    with torch.inference_mode():
        sat = model.encode(x, view="satellite")
        drone = model.encode(x, view="drone")
    torch.testing.assert_close(sat, reference_descriptor(state, x).float(), atol=1e-4, rtol=0)
    drone_state = {
        k.replace("model_3.", "model_1.", 1): v for k, v in state.items() if k.startswith("model_3.")
    }
    torch.testing.assert_close(drone, reference_descriptor(drone_state, x).float(), atol=1e-4, rtol=0)
    (tmp_path / "opts.yaml").write_text("h: 256\nw: 128\n")
    with pytest.raises(CheckpointError, match="non-square input h=256 w=128"):
        load_video2bev(tmp_path / "net_EEE.pth")

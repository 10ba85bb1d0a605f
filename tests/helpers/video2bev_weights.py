"""Random weights in Video2BEV's released net_EEE.pth key layout (docs/design.md), for the tests that load them."""

from __future__ import annotations

import torch

WIDTH, DEPTH, HEADS, MLP, GRID, CLASSES, EMBED = 768, 8, 8, 2304, 16, 11, 512


def released_state_dict(
    seed: int = 0, depth: int = DEPTH, *, img_size: int = 16 * GRID, classes: int = CLASSES
) -> dict[str, torch.Tensor]:
    """Random weights in the released layout; ``img_size`` sets the patch grid, ``classes`` the heads."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, std=0.02, mean=0.0):
        return torch.randn(*shape, generator=g) * std + mean

    vit = {
        "cls_token": rnd(1, 1, WIDTH),
        "pos_embed": rnd(1, (img_size // 16) ** 2 + 1, WIDTH),
        "patch_embed.proj.weight": rnd(WIDTH, 3, 16, 16),
        "patch_embed.proj.bias": rnd(WIDTH),
    }
    for i in range(depth):
        b = f"blocks.{i}."
        vit |= {
            b + "norm1.weight": rnd(WIDTH, std=0.1, mean=1.0),
            b + "norm1.bias": rnd(WIDTH),
            b + "attn.qkv.weight": rnd(3 * WIDTH, WIDTH, std=0.05),
            b + "attn.proj.weight": rnd(WIDTH, WIDTH),
            b + "attn.proj.bias": rnd(WIDTH),
            b + "norm2.weight": rnd(WIDTH, std=0.1, mean=1.0),
            b + "norm2.bias": rnd(WIDTH),
            b + "mlp.fc1.weight": rnd(MLP, WIDTH),
            b + "mlp.fc1.bias": rnd(MLP),
            b + "mlp.fc2.weight": rnd(WIDTH, MLP),
            b + "mlp.fc2.bias": rnd(WIDTH),
        }
    vit |= {"norm.weight": rnd(WIDTH, std=0.1, mean=1.0), "norm.bias": rnd(WIDTH)}
    state = {"logit_scale": torch.tensor(0.07)}
    state |= {f"model_1.{k}": v for k, v in vit.items()}
    state |= {f"model_3.{k}": v for k, v in vit.items()}  # shared branch: the same tensors
    for i in range(5):
        c = f"classifier{i}."
        state |= {
            c + "add_block.0.weight": rnd(EMBED, WIDTH),
            c + "add_block.0.bias": rnd(EMBED),
            c + "add_block.1.weight": rnd(EMBED, std=0.1, mean=1.0),
            c + "add_block.1.bias": rnd(EMBED),
            c + "add_block.1.running_mean": rnd(EMBED),
            c + "add_block.1.running_var": rnd(EMBED).abs() + 1.0,
            c + "add_block.1.num_batches_tracked": torch.tensor(100),
            c + "classifier.0.weight": rnd(classes, EMBED),
            c + "classifier.0.bias": rnd(classes),
        }
    return state

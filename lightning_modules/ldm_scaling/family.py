"""The scaled SD-style UNet family of thesis 001, Ch. 2 (Sec. 2.2, Table 2.1).

Every member is Stable Diffusion's denoising UNet with one change: the base width ``c``
(per-level channels ``[c, 2c, 4c, 4c]``). Everything else is SD v1.5's layout: two layers per
block, cross-attention in the three upper levels, 8 attention heads, 4 latent channels. The
digest (§1.2, [verified]) shows the thesis's parameter counts come out exactly with a 1024-d
text context (SD 2.x / OpenCLIP ViT-H width): ``c = 320`` gives 865.9M.

``build_scaled_unet(c, device='meta')`` builds a member without allocating memory;
``count_flops`` counts FLOPs (2 x multiply-adds) of one forward with
``torch.utils.flop_counter`` at the thesis's 64x64x4 latent and 77 context tokens.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn

#: Table 2.1: base width c -> the thesis's parameter count label.
TABLE_2_1_WIDTHS: tuple[int, ...] = (64, 96, 128, 160, 192, 224, 256, 288, 320, 512, 768)
#: Table 2.1 GFLOPS (64x64x4 latent); the c=64 entry 25.3 is a typo per the digest (§1.2).
TABLE_2_1_GFLOPS: dict[int, float] = {
    64: 25.3, 96: 102.7, 128: 161.5, 160: 233.5, 192: 318.5, 224: 416.6,
    256: 527.8, 288: 652.0, 320: 789.3, 512: 1887.5, 768: 4082.6,
}
REFERENCE_WIDTH = 320  # SD's 866M UNet: one unit of sampling cost


def scaled_unet_config(
    c: int,
    context_dim: int = 1024,
    layers_per_block: int = 2,
    attention_head_dim: int = 8,
    sample_size: int = 64,
    in_channels: int = 4,
    out_channels: int = 4,
    norm_num_groups: int = 32,
    levels: int = 4,
    overrides: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    """The ``UNet2DConditionModel`` config dict of the family member with base width ``c``.

    ``levels < 4`` (tiny CPU models only) drops the lowest-resolution levels; the channel rule
    ``[c, 2c, 4c, 4c][:levels]`` is unchanged.
    """
    if c % norm_num_groups:
        raise ValueError(f"base width c={c} must be divisible by norm_num_groups={norm_num_groups}")
    if not 2 <= levels <= 4:
        raise ValueError(f"levels must be 2, 3 or 4, got {levels}")
    channels = [c, 2 * c, 4 * c, 4 * c][:levels]
    down = ["CrossAttnDownBlock2D"] * (levels - 1) + ["DownBlock2D"]
    up = ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (levels - 1)
    config: dict[str, Any] = {
        "sample_size": sample_size,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "layers_per_block": layers_per_block,
        "block_out_channels": channels,
        "down_block_types": down,
        "up_block_types": up,
        "cross_attention_dim": context_dim,
        "attention_head_dim": attention_head_dim,
        "norm_num_groups": norm_num_groups,
    }
    config.update(dict(overrides or {}))
    return config


def build_scaled_unet(c: int, device: str | torch.device = "cpu", **config_kwargs: Any) -> nn.Module:
    """A randomly initialised family member (``device='meta'`` allocates nothing)."""
    from diffusers import UNet2DConditionModel

    with torch.device(device):
        return UNet2DConditionModel.from_config(scaled_unet_config(c, **config_kwargs))


def count_flops(
    unet: nn.Module, latent_shape: Sequence[int] = (1, 4, 64, 64), context_tokens: int = 77,
    device: str | torch.device = "meta",
) -> int:
    """FLOPs of one UNet forward (``torch.utils.flop_counter``; works on the meta device)."""
    from torch.utils.flop_counter import FlopCounterMode

    context_dim = int(unet.config.cross_attention_dim)
    sample = torch.zeros(tuple(latent_shape), device=device)
    context = torch.zeros(latent_shape[0], context_tokens, context_dim, device=device)
    timestep = torch.full((latent_shape[0],), 999, device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        unet(sample, timestep, encoder_hidden_states=context)
    return int(counter.get_total_flops())


__all__ = [
    "REFERENCE_WIDTH", "TABLE_2_1_GFLOPS", "TABLE_2_1_WIDTHS",
    "build_scaled_unet", "count_flops", "scaled_unet_config",
]

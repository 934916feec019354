"""Tiny CoDi / scaling models for the tests (random weights: they test the code, not the thesis's numbers)."""
from __future__ import annotations

import functools
from typing import Any

import torch

TINY_UNET: dict[str, Any] = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=[32, 64],
    down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"], up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
    cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32,
)
TINY_VAE: dict[str, Any] = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[16, 16],
    down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"], up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
    layers_per_block=1, norm_num_groups=8, sample_size=16,
)


def tiny_codi(**kwargs: Any):
    from lightning_modules.codi import CoDi

    args = dict(unet_config=TINY_UNET, vae_config=TINY_VAE, text_encoder="stand_in", image_size=16, task="sr")
    args.update(kwargs)
    return CoDi(**args)


def sr_batch(size: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(size, 3, 16, 16, generator=g) * 2 - 1, "lr": torch.rand(size, 3, 4, 4, generator=g) * 2 - 1}


@functools.lru_cache(maxsize=None)
def meta_unet(width: int, context_dim: int = 1024):
    """A full-size family member on the meta device (built once per session)."""
    from lightning_modules.ldm_scaling.family import build_scaled_unet

    return build_scaled_unet(width, "meta", context_dim=context_dim)

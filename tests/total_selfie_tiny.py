"""Tiny random-weight Total Selfie parts shared by the Total Selfie tests (they test code, not the paper's numbers)."""
from __future__ import annotations

from typing import Any

UNET: dict[str, Any] = dict(sample_size=16, in_channels=9, out_channels=4, layers_per_block=1, block_out_channels=[32, 64],
                            down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"], up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
                            cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32)
VAE: dict[str, Any] = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[16, 16],
                           down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                           layers_per_block=1, norm_num_groups=8, sample_size=32)
CLIP: dict[str, Any] = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=4, num_attention_heads=4, image_size=32,
                            patch_size=8, proj_size=32)
CONTROLNET: dict[str, Any] = dict(in_channels=4, conditioning_channels=3, layers_per_block=1, block_out_channels=[32, 64],
                                  down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"], cross_attention_dim=32,
                                  attention_head_dim=8, norm_num_groups=32, conditioning_embedding_out_channels=[8, 16])


def tiny_module(**kwargs: Any) -> Any:
    from lightning_modules.total_selfie.module import TotalSelfieModule

    args: dict[str, Any] = dict(unet_config=UNET, vae_config=VAE, image_encoder_config=CLIP, controlnet_config=CONTROLNET,
                                image_size=32, clip_size=32, num_sampling_steps=4, mask_dilation=2, selfie_min_pixels=2,
                                reference_min_pixels=1)
    args.update(kwargs)
    return TotalSelfieModule(**args)

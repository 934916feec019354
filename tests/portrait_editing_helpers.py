"""Tiny random parts for the portrait-editing tests (they test code, not the paper's numbers)."""
from __future__ import annotations

UNET = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=[16, 32],
            down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"], cross_attention_dim=32,
            attention_head_dim=4, norm_num_groups=8)
VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[16, 16],
           down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"], up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
           layers_per_block=1, norm_num_groups=8, sample_size=16)
TEXT = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, vocab_size=1000,
            max_position_embeddings=16, projection_dim=32, bos_token_id=0, eos_token_id=1, pad_token_id=1)
CLIP = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8,
            projection_dim=32)


def tiny_mcdm(**overrides):
    from lightning_modules.portrait_editing import MCDM

    kwargs = dict(sd_path=None, unet_config=UNET, vae_config=VAE, text_encoder_config=TEXT, clip_path=None, clip_config=CLIP,
                  image_size=16, num_sampling_steps=4, mask_step=2, mask_seeds=2)
    kwargs.update(overrides)
    return MCDM(**kwargs)


def tiny_generator(**overrides):
    from lightning_modules.portrait_editing import PortraitPairGenerator

    kwargs = dict(sd_path=None, unet_config=UNET, vae_config=VAE, text_encoder_config=TEXT, clip_config=CLIP,
                  controlnet_conditioning_channels=[8, 16], identity_hidden=32, image_size=16, num_sampling_steps=3,
                  sigma_max=8.0)
    kwargs.update(overrides)
    return PortraitPairGenerator(**kwargs)

"""Tiny random-weight Inverse Painting parts for the tests (they test the code, not the paper's numbers)."""
from __future__ import annotations

from typing import Any

import torch

UNET = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=[8, 16],
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"], up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    cross_attention_dim=16, attention_head_dim=4, norm_num_groups=4,
)
VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[8, 8], down_block_types=["DownEncoderBlock2D"] * 2,
    up_block_types=["UpDecoderBlock2D"] * 2, layers_per_block=1, norm_num_groups=4, sample_size=16,
)
TEXT = dict(hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2, vocab_size=200,
            max_position_embeddings=77, projection_dim=16, bos_token_id=0, eos_token_id=1, pad_token_id=1)
CLIP = dict(hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=16, patch_size=8, projection_dim=16)
SIZE = 16


def renderer(**overrides: Any):
    from lightning_modules.inverse_painting import InversePaintingRenderer

    kwargs: dict[str, Any] = dict(
        sd_path=None, unet_config=UNET, vae_config=VAE, text_encoder_config=TEXT, clip_path=None, clip_config=CLIP,
        clip_hidden=(16, 8), time_hidden=(8, 16), image_size=SIZE, num_sampling_steps=2, canvas_mode="add",
    )
    kwargs.update(overrides)
    return InversePaintingRenderer(**kwargs)


def mask_generator(**overrides: Any):
    from lightning_modules.inverse_painting import DifferenceMask, MaskInstructionGenerator

    kwargs: dict[str, Any] = dict(sd_path=None, unet_config=UNET, vae_config=VAE, text_encoder_config=TEXT, time_hidden=(8, 16),
                                  difference_mask=DifferenceMask(distance="l1", alpha=0.02))
    kwargs.update(overrides)
    return MaskInstructionGenerator(**kwargs)


def text_generator():
    from lightning_modules.inverse_painting import ClosedVocabularyInstructionClassifier, TextInstructionGenerator

    return TextInstructionGenerator(ClosedVocabularyInstructionClassifier(image_size=16, width=8))


def pair_batch(batch_size: int = 2, seed: int = 0) -> dict[str, Any]:
    from datamodules.painting_timelapse import PaintingTimelapseDataModule

    dm = PaintingTimelapseDataModule(size=SIZE, num_paintings=4, num_strokes=3, batch_size=batch_size, seed=seed, val_fraction=0.25)
    dm.setup()
    return next(iter(dm.train_dataloader()))


def fixed_seed(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)

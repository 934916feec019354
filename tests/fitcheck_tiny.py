"""Shared tiny Fit-Check builders for tests/test_fitcheck_*.py (random weights: they test code, not the paper)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((REPO / "configs" / "tiny" / "fitcheck.yaml").read_text())["model"]["init_args"]


def tiny_kwargs(**overrides: Any) -> dict[str, Any]:
    """The tiny overlay's model arguments (the same dicts the CLI test fits)."""
    keys = ("unet_config", "vae_config", "image_encoder_config", "pose_net_config", "vae_class",
            "num_sampling_steps", "window", "overlap")
    kwargs = {k: TINY[k] for k in keys}
    kwargs.update(overrides)
    return kwargs


def tiny_module(**overrides: Any):
    from lightning_modules.fitcheck import FitCheckVideoModule

    return FitCheckVideoModule(**tiny_kwargs(**overrides))


def tiny_unet(in_channels: int = 8, num_frames: int = 6):
    from diffusers import UNetSpatioTemporalConditionModel

    config = dict(TINY["unet_config"], in_channels=in_channels, num_frames=num_frames)
    return UNetSpatioTemporalConditionModel(**config)


def random_batch(batch: int = 1, frames: int = 4, height: int = 32, width: int = 24, seed: int = 0) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    out: dict[str, Any] = {
        "video": torch.rand(batch, frames, 3, height, width, generator=g) * 2 - 1,
        "pose": torch.rand(batch, frames, 3, height, width, generator=g) * 2 - 1,
    }
    for key in ("front", "back", "background", "front_pose", "back_pose"):
        out[key] = torch.rand(batch, 3, height, width, generator=g) * 2 - 1
    return out

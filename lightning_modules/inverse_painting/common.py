"""Shared tensor helpers of the Inverse Painting modules (condition dropout, masks, prompts)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def drop_mask(batch: int, probability: float, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
    """``[B]`` float: 0 where a condition is dropped (probability ``probability``), else 1."""
    if probability <= 0:
        return torch.ones(batch, device=device)
    return (torch.rand(batch, device=device, generator=generator) >= probability).float()


def broadcast_keep(keep: Tensor, like: Tensor) -> Tensor:
    return keep.view(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def downsample_mask(mask: Tensor, size: Sequence[int]) -> Tensor:
    """A binary mask to the latent grid: a latent cell is on when any of its pixels is (max pool)."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask.float()
    return F.adaptive_max_pool2d(mask.float(), tuple(size))


def upsample_mask(mask: Tensor, size: Sequence[int]) -> Tensor:
    return F.interpolate(mask.float(), size=tuple(size), mode="nearest")


def side_by_side(left: Tensor, right: Tensor) -> Tensor:
    """The text generator's image prompt: horizontal concatenation ``[left | right]``."""
    return torch.cat([left, right], dim=-1)

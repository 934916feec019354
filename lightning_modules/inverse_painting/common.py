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
    """Horizontal concatenation ``[left | right]``."""
    return torch.cat([left, right], dim=-1)


#: ``image_order`` of the text generator: which image is on the left.
IMAGE_ORDERS = ("current_target", "target_current")


def instruction_image(target: Tensor, canvas: Tensor, order: str = "current_target") -> Tensor:
    """The text generator's image prompt (§6.3).

    ``"current_target"`` (default) is ``[I_{t-1} | I_T]``: the order the chapter's own question
    describes ("The left image is an intermediate stage in a painting process of the right image")
    and the official code's ``[cur | ref]``. ``"target_current"`` is the literal ``[I_T, I_{t-1}]``
    of Eq. 6.2, which contradicts that question.
    """
    if order == "current_target":
        return side_by_side(canvas, target)
    if order == "target_current":
        return side_by_side(target, canvas)
    raise ValueError(f"image_order must be one of {list(IMAGE_ORDERS)}, got {order!r}")

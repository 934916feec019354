"""Packing operator PK and the contextual loss CX (thesis 001 Ch. 6, §6.3.3, Eqs. 6.6-6.8, 6.12).

**PK (Eq. 6.6)** cuts an ``rH x rW x C`` image into ``H * W`` non-overlapping sub-images of
``r x r x C`` and flattens each into one sample vector (dimension ``C r^2``). Two readings:

* ``"contiguous"`` (MKFMIKU/LTT-GAN's ``pixel_contextual_loss``: ``F.pixel_unshuffle(x, r)``
  with positions as samples): sample (i, j) is the r x r block at rows ``i r .. i r + r - 1``;
* ``"strided"`` (the text and Fig. 6.3, "spatial periodic"): sample (i, j) is the periodic
  sub-sampling ``x[:, :, i::H, j::W]``, a low-resolution r x r copy of the whole face.

Both give ``(size / r)^2`` samples of dimension ``C r^2`` (1024 x 768 at 512 px, r = 16) and are
bijections (:func:`unpack` inverts them).

**CX (Mechrez et al. 2018; Eqs. 6.7-6.8 with the code's choices).** Between samples x_i (the
output) and y_j (the target): mean shift of both by the target's mean vector; cosine distance
``d_ij = 1 - cos``; ``d~_ij = d_ij / (min_k d_ik + 1e-5)``; ``A_ij = softmax_j((1 - d~_ij) / h)``
with bandwidth h = 0.1 (Eq. 6.8 typesets ``exp(1 - d~/h)``, the code divides ``1 - d~`` by h);
``CX = mean_j max_i A_ij`` and the loss ``-log(CX + 1e-5)``. Eq. 6.7 as typeset,
``-(1/N) sum_i log sum_j A_ij``, is identically 0 because every row of A sums to 1
(:func:`eq67_as_typeset` shows it); this module uses the Mechrez / code form.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

PACKING_MODES = ("contiguous", "strided")


def _check(x: Tensor, rate: int, mode: str) -> tuple[int, int, int, int]:
    if mode not in PACKING_MODES:
        raise ValueError(f"packing mode {mode!r} is not one of {list(PACKING_MODES)}")
    if x.dim() != 4:
        raise ValueError(f"PK expects [B, C, H, W] images, got shape {tuple(x.shape)}")
    b, c, height, width = x.shape
    if rate < 1 or height % rate or width % rate:
        raise ValueError(f"packing rate r={rate} does not divide the image size {height}x{width}")
    return b, c, height // rate, width // rate


def pack(x: Tensor, rate: int, mode: str = "contiguous") -> Tensor:
    """``[B, C, rH, rW]`` -> ``[B, H W, C r^2]`` samples (module docstring)."""
    b, c, h, w = _check(x, rate, mode)
    if mode == "contiguous":
        return F.pixel_unshuffle(x, rate).flatten(2).transpose(1, 2)
    # strided: row index = a * H + i (a: position inside the low-res copy, i: which copy)
    return x.reshape(b, c, rate, h, rate, w).permute(0, 3, 5, 1, 2, 4).reshape(b, h * w, c * rate * rate)


def unpack(samples: Tensor, rate: int, height: int, width: int, mode: str = "contiguous") -> Tensor:
    """The inverse of :func:`pack` for ``height x width`` images."""
    if mode not in PACKING_MODES:
        raise ValueError(f"packing mode {mode!r} is not one of {list(PACKING_MODES)}")
    b, n, d = samples.shape
    h, w = height // rate, width // rate
    c = d // (rate * rate)
    if mode == "contiguous":
        return F.pixel_shuffle(samples.transpose(1, 2).reshape(b, d, h, w), rate)
    return samples.reshape(b, h, w, c, rate, rate).permute(0, 3, 4, 1, 5, 2).reshape(b, c, height, width)


def feature_samples(features: Tensor) -> Tensor:
    """``[B, C, H, W]`` feature maps -> ``[B, H W, C]`` (Mechrez's VGG-feature CX, the ablation)."""
    return features.flatten(2).transpose(1, 2)


def contextual_similarity(x: Tensor, y: Tensor, bandwidth: float = 0.1, eps: float = 1e-5) -> Tensor:
    """The affinity matrix A ``[B, N_x, N_y]`` of Eq. 6.8 (rows sum to 1)."""
    mu = y.mean(dim=(0, 1), keepdim=True)  # the code's channel mean of the target
    xn = F.normalize(x - mu, dim=-1)
    yn = F.normalize(y - mu, dim=-1)
    distance = (1.0 - torch.bmm(xn, yn.transpose(1, 2))).clamp_min(0.0)
    relative = distance / (distance.min(dim=-1, keepdim=True).values + eps)
    return torch.softmax((1.0 - relative) / bandwidth, dim=-1)


def contextual_loss(x: Tensor, y: Tensor, bandwidth: float = 0.1) -> Tensor:
    """``-log(mean_j max_i A_ij + 1e-5)`` per batch item, averaged (Mechrez et al. 2018)."""
    affinity = contextual_similarity(x.float(), y.float(), bandwidth)
    cx = affinity.max(dim=1).values.mean(dim=1)
    return -torch.log(cx + 1e-5).mean()


def eq67_as_typeset(x: Tensor, y: Tensor, bandwidth: float = 0.1) -> Tensor:
    """Eq. 6.7 exactly as printed: ``-(1/N) sum_i log sum_j A_ij``; always 0 (rows of A sum to 1)."""
    return -torch.log(contextual_similarity(x.float(), y.float(), bandwidth).sum(-1)).mean()


def spcx_loss(output: Tensor, target: Tensor, rate: int = 16, mode: str = "contiguous", bandwidth: float = 0.1) -> Tensor:
    """Spatial periodic CX: :func:`contextual_loss` between ``PK(output)`` and ``PK(target)``."""
    return contextual_loss(pack(output, rate, mode), pack(target, rate, mode), bandwidth)


__all__ = ["PACKING_MODES", "contextual_loss", "contextual_similarity", "eq67_as_typeset", "feature_samples", "pack",
           "spcx_loss", "unpack"]

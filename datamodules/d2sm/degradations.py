"""Degradations of the D2SM experiments (thesis 001, Ch. 9, §9.4).

* AWGN: sigma on the 0..255 scale, noise N(0, sigma / 255) on the [0, 1] image (the d2sm code),
  i.e. N(0, 2 sigma / 255) on the suite's [-1, 1] scale; not clipped (the code does not clip).
  Training draws sigma ~ U[0, 75] per image (§9.4.1); validation uses fixed sigmas with noise
  from ``numpy.random.RandomState`` seeded by ``(seed, sigma, index)`` (the code seeds NumPy
  with 0; per-item seeding makes an item's noise independent of the loading order, so the
  draws are not bit-identical to the code's single sequential stream).
* Face SR (DIC setting, §9.4.2): bicubic x8 down-sampling, 128 -> 16.
* Embedded dehazing stand-in: the atmospheric scattering model I = J t + A (1 - t) with a
  smooth transmission map (real runs read I-HAZE / O-HAZE pairs instead).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def add_gaussian_noise(clean: Tensor, sigma: float, generator: Optional[torch.Generator] = None) -> Tensor:
    """``clean`` in [-1, 1] plus AWGN of std ``sigma`` / 255 on the [0, 1] scale (torch generator)."""
    noise = torch.randn(clean.shape, generator=generator, dtype=torch.float32)
    return clean + noise * (2.0 * float(sigma) / 255.0)


def seeded_gaussian_noise(clean: Tensor, sigma: float, seed: int, index: int) -> Tensor:
    """Validation noise: NumPy ``RandomState((seed, round(sigma), index))``, as the code's seed-0 convention."""
    rng = np.random.RandomState([int(seed), int(round(sigma)), int(index)])
    noise = torch.from_numpy(rng.normal(0.0, float(sigma) / 255.0, size=tuple(clean.shape)).astype(np.float32))
    return clean + 2.0 * noise


def bicubic_downsample(image: Tensor, scale: int) -> Tensor:
    """``[C, H, W]`` -> ``[C, H / scale, W / scale]`` (bicubic, antialiased)."""
    if image.shape[-1] % scale or image.shape[-2] % scale:
        raise ValueError(f"image size {tuple(image.shape[-2:])} is not divisible by the SR scale {scale}")
    small = F.interpolate(image[None], scale_factor=1.0 / scale, mode="bicubic", antialias=True, align_corners=False)
    return small[0].clamp(-1, 1)


def synthetic_haze(clean: Tensor, seed: int, index: int, airlight: float = 0.8) -> Tensor:
    """Stand-in haze: I = J t + A (1 - t), t a smooth random field in [0.3, 0.9] (embedded data only)."""
    rng = np.random.RandomState([int(seed), int(index)])
    coarse = torch.from_numpy(rng.uniform(0.3, 0.9, size=(1, 1, 3, 3)).astype(np.float32))
    t = F.interpolate(coarse, size=clean.shape[-2:], mode="bicubic", align_corners=False)[0].clamp(0.05, 1.0)
    unit = (clean + 1.0) * 0.5
    return (unit * t + airlight * (1.0 - t)) * 2.0 - 1.0


__all__ = ["add_gaussian_noise", "bicubic_downsample", "seeded_gaussian_noise", "synthetic_haze"]

"""ElasticAug: LTT-GAN's training degradation (thesis 001 Ch. 6, §6.3.1 / Fig. 6.6; digest 6.1 [code]).

"The BFR degradation pipeline followed by an elastic transformation" (Simard et al. 2003).
Order of the authors' dataset code: elastic deformation of the GT -> blur with a random
iso/aniso Gaussian kernel -> bilinear downsampling by a random factor -> optional Gaussian
noise -> bilinear upsampling back -> colour shift (p 0.3) -> colour jitter (p 0.3) -> greyscale
(p 0.01) -> quantisation to uint8. The target stays the undeformed GT.

The elastic transform is written here (the code calls ``imgaug.augmenters.ElasticTransformation``):
a per-pixel displacement ``U(-1, 1)`` field, Gaussian-smoothed with std ``sigma`` pixels, scaled
by ``alpha`` pixels, applied with bilinear ``grid_sample`` (border padding). Blur kernels come
from :func:`datamodules.degradation.random_kernel` (the Real-ESRGAN kernel code of the suite) with
the kernel types restricted to iso / aniso (p 0.5 / 0.5) and no sinc. Every random number is
drawn from one ``torch.Generator``: the same seed gives the same degraded image.

Two parameter sets ([code]): :meth:`ElasticAugConfig.full` (``train_gfpgan_v1_simple_blur2_cx_py_full.yml``,
the 800k run) and :meth:`ElasticAugConfig.ablation` (``ab_..._cx_py_g8.yml``, the 80k ablations).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from datamodules.degradation import StageConfig, filter2d, random_kernel


@dataclass
class ElasticAugConfig:
    """Parameters of :class:`ElasticAug` (defaults: the 800k ``..._full.yml`` config)."""

    kernel_range: Sequence[int] = (5, 25)  # blur kernel sizes (odd values in the range)
    kernel_probs: Sequence[float] = (0.5, 0.5)  # iso, aniso
    blur_sigma: Sequence[float] = (1.0, 25.0)
    downsample_range: Sequence[float] = (0.8, 8.0)
    noise_range: Optional[Sequence[float]] = None  # Gaussian sigma on 0..255; None = no noise
    color_shift_prob: float = 0.3
    color_shift: float = 20.0 / 255.0
    color_jitter_prob: float = 0.3
    brightness: Sequence[float] = (0.5, 1.5)
    contrast: Sequence[float] = (0.5, 1.5)
    saturation: Sequence[float] = (0.0, 1.5)
    hue: Sequence[float] = (-0.1, 0.1)
    gray_prob: float = 0.01
    elastic_alpha: Sequence[float] = (50.0, 80.0)
    elastic_sigma: Sequence[float] = (5.0, 8.0)

    @classmethod
    def full(cls) -> "ElasticAugConfig":
        return cls()

    @classmethod
    def ablation(cls) -> "ElasticAugConfig":
        return cls(kernel_range=(5, 50), downsample_range=(1.0, 16.0), noise_range=(0.0, 25.0),
                   elastic_alpha=(0.0, 50.0), elastic_sigma=(4.0, 5.0))


def _u(g: torch.Generator, low: float, high: float) -> float:
    return float(low + (high - low) * torch.rand((), generator=g, dtype=torch.float64))


def _gaussian_1d(sigma: float) -> Tensor:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / max(sigma, 1e-6)) ** 2)
    return k / k.sum()


def _smooth(field_: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian smoothing of ``[N, 1, H, W]`` (reflect padding, kernel clipped to the image)."""
    k = _gaussian_1d(sigma)
    limit = min(field_.shape[-2], field_.shape[-1]) - 1
    if k.numel() // 2 > limit:  # a tiny image: clip the kernel to what reflect padding allows
        centre = k.numel() // 2
        k = k[centre - limit: centre + limit + 1]
        k = k / k.sum()
    r = k.numel() // 2
    out = F.conv2d(F.pad(field_, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(out, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))


def elastic_deform(image: Tensor, alpha: float, sigma: float, generator: torch.Generator) -> Tensor:
    """Simard-style elastic deformation of ``[C, H, W]``: smoothed U(-1, 1) field x ``alpha`` pixels."""
    c, h, w = image.shape
    noise = torch.rand(2, 1, h, w, generator=generator) * 2 - 1
    displacement = _smooth(noise, sigma)[:, 0] * alpha  # [2, H, W] pixels (dx, dy)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    gx = (xs + displacement[0]) / max(w - 1, 1) * 2 - 1
    gy = (ys + displacement[1]) / max(h - 1, 1) * 2 - 1
    grid = torch.stack([gx, gy], dim=-1)[None]
    return F.grid_sample(image[None].float(), grid, mode="bilinear", padding_mode="border", align_corners=True)[0]


class ElasticAug:
    """``__call__(gt [3, H, W] in [0, 1], generator) -> degraded [3, H, W] in [0, 1]`` (module docstring)."""

    def __init__(self, config: Optional[ElasticAugConfig] = None, preset: Optional[str] = None) -> None:
        if preset is not None:
            if preset not in ("full", "ablation"):
                raise ValueError(f"ElasticAug preset {preset!r} is not 'full' or 'ablation'")
            config = getattr(ElasticAugConfig, preset)()
        self.config = config or ElasticAugConfig()
        c = self.config
        self.stage = StageConfig(kernel_types=("iso", "aniso"), kernel_probs=tuple(c.kernel_probs), sinc_prob=0.0,
                                 blur_sigma=tuple(c.blur_sigma))

    def __call__(self, gt: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        import torchvision.transforms.functional as TF

        c, g = self.config, generator if generator is not None else torch.Generator().manual_seed(0)
        _, h, w = gt.shape
        x = elastic_deform(gt, _u(g, *c.elastic_alpha), _u(g, *c.elastic_sigma), g)
        low, high = int(c.kernel_range[0]), int(c.kernel_range[1])
        limit = 2 * ((min(h, w) - 1) // 2) - 1  # reflect padding needs kernel // 2 < size
        kernel_range = (min(low, limit), min(high, limit)) if limit >= 1 else (1, 1)
        kernel = random_kernel(g, self.stage, kernel_range).float()
        x = filter2d(x[None], [kernel])
        scale = _u(g, *c.downsample_range)
        small = (max(1, round(h / scale)), max(1, round(w / scale)))
        x = F.interpolate(x, size=small, mode="bilinear", align_corners=False)
        if c.noise_range is not None:
            sigma = _u(g, *c.noise_range) / 255.0
            x = x + torch.randn(x.shape, generator=g) * sigma
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)[0].clamp(0, 1)
        if _u(g, 0, 1) < c.color_shift_prob:
            x = (x + (torch.rand(3, 1, 1, generator=g) * 2 - 1) * c.color_shift).clamp(0, 1)
        if _u(g, 0, 1) < c.color_jitter_prob:
            order = torch.randperm(4, generator=g).tolist()
            factors = [_u(g, *c.brightness), _u(g, *c.contrast), _u(g, *c.saturation), _u(g, *c.hue)]
            for op in order:
                if op == 0:
                    x = TF.adjust_brightness(x, factors[0])
                elif op == 1:
                    x = TF.adjust_contrast(x, factors[1])
                elif op == 2:
                    x = TF.adjust_saturation(x, factors[2])
                else:
                    x = TF.adjust_hue(x, factors[3])
            x = x.clamp(0, 1)
        if _u(g, 0, 1) < c.gray_prob:
            grey = 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
            x = grey.expand(3, -1, -1).clone()
        return (x * 255.0).round() / 255.0


__all__ = ["ElasticAug", "ElasticAugConfig", "elastic_deform"]

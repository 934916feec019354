"""Degradations and model conditions of the Bi-Noising tasks (thesis 001 Ch. 8, §8.4).

``degrade(task, clean)`` makes the degraded observation x0 from a clean image y0 (both ``[3, S, S]``
in [-1, 1]); ``condition(task, degraded, size)`` turns an observation into the conditional model's
input at model size (the condition concatenated at the input, SR3 style):

* ``colorization`` (§8.4.1): "averaging the values at red, green, and blue channels"; the grey
  image is replicated to three channels (the condition keeps the 3-channel layout of all tasks).
* ``sr`` (§8.4.2): 4x bicubic downsampling (64 -> 256 in the paper); the condition is the LR
  image bicubic-upsampled back to the target size ([ext] SR3's convention).
* ``derain`` (§8.4.3): real pairs come from Rain800 / Rain200L; the embedded default synthesises
  rain streaks (a stand-in: bright thin slanted lines, motion-blurred, added to the image).
* ``turbulence`` (§8.4.4): real pairs are pre-simulated (AT-DDPM / Turbulence-Simulations); the
  embedded default is a stand-in: a smooth random warp plus a Gaussian blur.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

TASKS = ("colorization", "sr", "derain", "turbulence")
SR_FACTOR = 4


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"task={task!r} is not one of {list(TASKS)}")
    return task


def to_gray(image: Tensor) -> Tensor:
    """RGB mean replicated to 3 channels (§8.4.1)."""
    return image.mean(dim=-3, keepdim=True).expand_as(image).contiguous()


def bicubic(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Antialiased bicubic resize of ``[C, H, W]`` or ``[B, C, H, W]`` in [-1, 1] (clamped)."""
    batch = image if image.ndim == 4 else image[None]
    out = F.interpolate(batch.float(), size=size, mode="bicubic", align_corners=False, antialias=True).clamp(-1, 1)
    return out if image.ndim == 4 else out[0]


def synthetic_rain(clean: Tensor, generator: torch.Generator, density: float = 0.02, length: int = 7) -> Tensor:
    """Stand-in rain streaks: sparse seeds smeared along one random slant, brightened onto the image."""
    _, h, w = clean.shape
    seeds = (torch.rand((1, 1, h, w), generator=generator) < density).float()
    angle = (torch.rand((), generator=generator).item() - 0.5) * math.pi / 3
    k = length if length % 2 else length + 1
    kernel = torch.zeros(k, k)
    c = k // 2
    for s in range(-c, c + 1):
        y, x = round(c + s * math.cos(angle)), round(c + s * math.sin(angle))
        kernel[min(max(y, 0), k - 1), min(max(x, 0), k - 1)] = 1.0
    streaks = F.conv2d(seeds, kernel[None, None], padding=c).clamp(0, 1)[0]
    return (clean + 0.8 * streaks).clamp(-1, 1)


def synthetic_turbulence(clean: Tensor, generator: torch.Generator, strength: float = 0.03, blur_sigma: float = 0.8) -> Tensor:
    """Stand-in turbulence: a smooth random displacement field (tilt) and a Gaussian blur."""
    _, h, w = clean.shape
    coarse = torch.randn((1, 2, 4, 4), generator=generator) * strength
    flow = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    grid = torch.stack([xs, ys], dim=-1)[None] + flow
    warped = F.grid_sample(clean[None], grid, mode="bilinear", padding_mode="border", align_corners=True)
    r = max(1, int(math.ceil(2 * blur_sigma)))
    g = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * blur_sigma ** 2))
    g = g / g.sum()
    chans = warped.shape[1]
    warped = F.conv2d(F.pad(warped, (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1).expand(chans, 1, 1, -1), groups=chans)
    warped = F.conv2d(F.pad(warped, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1).expand(chans, 1, -1, 1), groups=chans)
    return warped[0].clamp(-1, 1)


def degrade(task: str, clean: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """The task's degraded observation x0 of a clean ``[3, S, S]`` image (module docstring)."""
    check_task(task)
    generator = generator or torch.Generator().manual_seed(0)
    if task == "colorization":
        return to_gray(clean)
    if task == "sr":
        h, w = clean.shape[-2:]
        if h % SR_FACTOR or w % SR_FACTOR:
            raise ValueError(f"4x SR needs image sides divisible by {SR_FACTOR}, got {h}x{w}")
        return bicubic(clean, (h // SR_FACTOR, w // SR_FACTOR))
    if task == "derain":
        return synthetic_rain(clean, generator)
    return synthetic_turbulence(clean, generator)


def condition(task: str, degraded: Tensor, size: int) -> Tensor:
    """The conditional model's input ``[3, size, size]`` from an observation (SR: LR must be size/4)."""
    check_task(task)
    if degraded.shape[-3] != 3:
        raise ValueError(f"{task}: the degraded image must have 3 channels, got {tuple(degraded.shape)}")
    h, w = degraded.shape[-2:]
    if task == "sr":
        if (h, w) != (size // SR_FACTOR, size // SR_FACTOR):
            raise ValueError(f"sr: the low-resolution input must be {size // SR_FACTOR}x{size // SR_FACTOR} for a "
                             f"{size}x{size} model (4x), got {w}x{h}")
        return bicubic(degraded, (size, size))
    if (h, w) != (size, size):
        raise ValueError(f"{task}: the degraded image must be {size}x{size} (the model size), got {w}x{h}")
    return to_gray(degraded) if task == "colorization" else degraded


__all__ = ["SR_FACTOR", "TASKS", "bicubic", "check_task", "condition", "degrade", "synthetic_rain",
           "synthetic_turbulence", "to_gray"]

"""Instance-shadow triplet synthesis after SynShadow (Inoue & Yamasaki, TCSVT 2020), for thesis 001 Ch. 7 §7.4.

The thesis trains instance-level removal on triplets "synthesized following the method proposed
by Inoue et al." and defers the details to its supplement. SynShadow composites a shadow matte
onto a shadow-free photo with an illumination model fitted to real shadows:

    x = y * (1 - alpha) + (gain * y + offset) * alpha

where ``alpha`` in [0, 1] is a soft matte (umbra 1, a blurred penumbra at the boundary) and
``gain`` / ``offset`` are per-channel darkening parameters (shadows are darker and, lit by the sky
only, bluer). **What is simplified here** ([GAP], documented choice): SynShadow draws its mattes
from a large set of real shadow masks and samples the illumination parameters from a
distribution fitted to ISTD/SRD; here mattes are random smooth blobs (a few overlapping
ellipses), the penumbra is a Gaussian blur of random width, and ``gain`` is uniform in
``[min_gain, max_gain]`` with the blue channel darkened least (``blue_lift``). Its
self-shadowing / 3-D geometry is not modelled.

Instance level: ``num_instances`` shadows are cast; one of them is the target. The shadow image
has all of them, the ground truth has all but the target (the other shadows must be preserved,
§7.4.2) and the mask is the target's (``alpha > mask_threshold``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["SynShadowConfig", "cast_shadows", "random_matte"]


@dataclass(frozen=True)
class SynShadowConfig:
    """Ranges of the synthetic shadows (module docstring)."""

    num_instances: tuple[int, int] = (1, 3)
    ellipses_per_instance: tuple[int, int] = (1, 4)
    radius_frac: tuple[float, float] = (0.08, 0.3)
    penumbra_frac: tuple[float, float] = (0.005, 0.03)
    min_gain: float = 0.25
    max_gain: float = 0.65
    blue_lift: float = 0.1
    mask_threshold: float = 0.1


def random_matte(height: int, width: int, rng: np.random.Generator, cfg: SynShadowConfig) -> np.ndarray:
    """One instance's soft matte ``[H, W]`` in [0, 1]: a union of ellipses, blurred at the boundary."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    side = float(min(height, width))
    cy, cx = rng.uniform(0.15, 0.85) * height, rng.uniform(0.15, 0.85) * width
    hard = np.zeros((height, width), dtype=bool)
    for _ in range(int(rng.integers(cfg.ellipses_per_instance[0], cfg.ellipses_per_instance[1] + 1))):
        ry, rx = (rng.uniform(*cfg.radius_frac) * side for _ in range(2))
        oy, ox = rng.normal(0.0, 0.1 * side, size=2)
        theta = rng.uniform(0, np.pi)
        dy, dx = yy - (cy + oy), xx - (cx + ox)
        u = dx * np.cos(theta) + dy * np.sin(theta)
        v = -dx * np.sin(theta) + dy * np.cos(theta)
        hard |= (u / rx) ** 2 + (v / ry) ** 2 <= 1.0
    sigma = rng.uniform(*cfg.penumbra_frac) * side
    return np.clip(ndimage.gaussian_filter(hard.astype(np.float32), sigma=max(sigma, 1e-3)), 0.0, 1.0)


def _apply(image: np.ndarray, alpha: np.ndarray, gain: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    return image * (1.0 - a) + (image * gain[None, None, :]) * a


def cast_shadows(shadow_free: np.ndarray, rng: np.random.Generator, cfg: SynShadowConfig = SynShadowConfig()
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(shadow image, target mask, ground truth)`` from a float ``[H, W, 3]`` image in [0, 1].

    The ground truth keeps the non-target shadows (instance removal); with one instance it is the
    input itself. The mask is ``float32 [H, W]`` in {0, 1}.
    """
    height, width = shadow_free.shape[:2]
    count = int(rng.integers(cfg.num_instances[0], cfg.num_instances[1] + 1))
    target = int(rng.integers(0, count))
    shadow = shadow_free.astype(np.float32).copy()
    truth = shadow_free.astype(np.float32).copy()
    mask = np.zeros((height, width), dtype=np.float32)
    for index in range(count):
        alpha = random_matte(height, width, rng, cfg)
        base = rng.uniform(cfg.min_gain, cfg.max_gain)
        gain = np.clip(np.array([base, base + 0.5 * cfg.blue_lift, base + cfg.blue_lift]) * rng.uniform(0.95, 1.05, 3), 0, 1)
        shadow = _apply(shadow, alpha, gain.astype(np.float32))
        if index == target:
            mask = (alpha > cfg.mask_threshold).astype(np.float32)
        else:
            truth = _apply(truth, alpha, gain.astype(np.float32))
    return np.clip(shadow, 0, 1), mask, np.clip(truth, 0, 1)

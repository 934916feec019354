"""scikit-learn's bundled handwritten digits as diffusion-ready image tensors.

The 1797 8x8 digits of ``sklearn.datasets.load_digits`` ship inside the
scikit-learn wheel, so they are the suite's smallest real image data set that
needs no download. Their pixels are integers 0..16 (16 = ink).

Choice (documented because the resolution is not the data's own): the 8x8
images are upsampled to ``size x size`` with **bilinear interpolation,
``align_corners=False``, ``antialias=False``** (antialias only matters when
shrinking; it is off so the result does not depend on the torch version's
antialias kernel). Bilinear keeps values inside the original range, so the
output stays in ``[-1, 1]`` exactly, and it gives smoother strokes than
nearest-neighbour blocks, which suits a diffusion model's continuous output.
``size == 8`` returns the original pixels unchanged.
"""
from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger(__name__)

NUM_DIGITS_IMAGES = 1797
DIGITS_MAX_VALUE = 16.0


@lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """The digits as ``uint8 [N, 8, 8]`` (values 0..16) and ``int64 [N]`` labels, loaded once."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)
    labels = np.asarray(bunch.target, dtype=np.int64)
    log.info("using the embedded scikit-learn digits (%d images, 8x8, 10 classes)", len(images))
    return images, labels


def load_digits_images(size: int = 32) -> tuple[Tensor, Tensor]:
    """Return scikit-learn's digits as ``(images, labels)``.

    Args:
        size: output side length in pixels. The 8x8 originals are upsampled with
            bilinear interpolation (``align_corners=False``, ``antialias=False``);
            ``size=8`` keeps the original pixels. Sizes below 8 downsample with
            antialiasing on (area-like averaging) so thin strokes do not vanish.

    Returns:
        images: float32 ``[1797, 1, size, size]`` in ``[-1, 1]``; the original
            pixel values 0..16 map linearly to -1..1 (``v / 8 - 1``), so the
            background is -1 and full ink is +1.
        labels: int64 ``[1797]``, the digit classes 0..9 in scikit-learn's order.
    """
    if int(size) < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    size = int(size)
    images_np, labels_np = _raw_digits()
    images = torch.from_numpy(images_np.copy()).unsqueeze(1)  # [N, 1, 8, 8], 0..16
    images = images / (DIGITS_MAX_VALUE / 2.0) - 1.0
    if size != images.shape[-1]:
        images = F.interpolate(
            images, size=(size, size), mode="bilinear", align_corners=False, antialias=size < 8
        )
    images = images.clamp_(-1.0, 1.0).contiguous()
    labels = torch.from_numpy(labels_np.copy())
    return images, labels


__all__ = ["load_digits_images", "NUM_DIGITS_IMAGES"]

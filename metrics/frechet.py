"""Fréchet distance between Gaussians and the KID estimator, in float64.

These are the formulas behind FID, FD-DINOv2, rFID, FVD and frame FID. The
streaming metrics keep ``sum(x)`` and ``sum(x x^T)`` and call
:func:`gaussian_from_sums` at compute time, so memory does not depend on the
number of samples.

Non-finite statistics (a diverged model's NaN/inf samples or features) give a NaN distance with
one warning instead of an eigen-solver error: an in-training FID must never crash the run it
monitors (the NaN guard, not the metric, decides whether training stops).
"""
from __future__ import annotations

import warnings

import torch
from torch import Tensor


def gaussian_from_sums(feature_sum: Tensor, outer_sum: Tensor, count: Tensor | int) -> tuple[Tensor, Tensor]:
    """Mean and unbiased covariance (``n - 1`` denominator, as ``numpy.cov``) from running sums."""
    n = float(count)
    if n < 2:
        raise ValueError(f"need at least 2 samples to estimate a covariance, received {int(n)}")
    mean = feature_sum.double() / n
    cov = (outer_sum.double() - n * torch.outer(mean, mean)) / (n - 1.0)
    return mean, cov


def _sqrt_psd(matrix: Tensor) -> Tensor:
    """Square root of a symmetric positive semi-definite matrix by eigen-decomposition."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    root = eigenvalues.clamp_min(0).sqrt()
    return (eigenvectors * root) @ eigenvectors.T


def trace_sqrt_product(sigma1: Tensor, sigma2: Tensor) -> Tensor:
    """``Tr(sqrtm(sigma1 @ sigma2))`` for covariance matrices.

    ``sigma1 @ sigma2`` is similar to the symmetric PSD matrix
    ``sqrt(sigma1) sigma2 sqrt(sigma1)``, so the trace is the sum of the square
    roots of that matrix's eigenvalues: real, non-negative and stable, with no
    complex round trip as in ``scipy.linalg.sqrtm``.
    """
    root1 = _sqrt_psd(sigma1.double())
    middle = root1 @ sigma2.double() @ root1
    middle = 0.5 * (middle + middle.T)
    return torch.linalg.eigvalsh(middle).clamp_min(0).sqrt().sum()


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> Tensor:
    """``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))`` in float64."""
    mu1, mu2 = torch.as_tensor(mu1).double(), torch.as_tensor(mu2).double()
    sigma1, sigma2 = torch.as_tensor(sigma1).double(), torch.as_tensor(sigma2).double()
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(
            f"Fréchet distance needs statistics of equal size, received means {tuple(mu1.shape)} vs "
            f"{tuple(mu2.shape)} and covariances {tuple(sigma1.shape)} vs {tuple(sigma2.shape)}"
        )
    if not all(bool(torch.isfinite(t).all()) for t in (mu1, sigma1, mu2, sigma2)):
        warnings.warn("Fréchet distance: the feature statistics are not finite (NaN/inf samples or features); "
                      "the distance is NaN for this evaluation", RuntimeWarning, stacklevel=2)
        return torch.tensor(float("nan"), dtype=torch.float64, device=mu1.device)
    diff = mu1 - mu2
    return diff.dot(diff) + torch.trace(sigma1) + torch.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)


def polynomial_kernel(x: Tensor, y: Tensor, degree: int = 3, gamma: float | None = None, coef: float = 1.0) -> Tensor:
    """``(gamma <x, y> + coef)^degree``; ``gamma`` defaults to ``1 / dim`` (the KID kernel)."""
    if gamma is None:
        gamma = 1.0 / x.shape[1]
    return (x @ y.T * gamma + coef) ** degree


def mmd2_unbiased(x: Tensor, y: Tensor, degree: int = 3, gamma: float | None = None, coef: float = 1.0) -> Tensor:
    """Unbiased squared MMD with the polynomial kernel (Bińkowski et al. 2018, the KID estimator)."""
    m, n = x.shape[0], y.shape[0]
    k_xx = polynomial_kernel(x, x, degree, gamma, coef)
    k_yy = polynomial_kernel(y, y, degree, gamma, coef)
    k_xy = polynomial_kernel(x, y, degree, gamma, coef)
    term_xx = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    term_yy = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return term_xx + term_yy - 2.0 * k_xy.mean()


def kernel_inception_distance(
    real: Tensor,
    fake: Tensor,
    num_subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """KID: mean and standard deviation of the unbiased MMD^2 over random subsets.

    The subset size is capped by the smaller set; when it covers both sets
    entirely, every subset is the full set and the estimate is deterministic.
    """
    real, fake = real.double(), fake.double()
    size = min(subset_size, real.shape[0], fake.shape[0])
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per set, received {real.shape[0]} real and {fake.shape[0]} fake")
    full = size == real.shape[0] == fake.shape[0]
    scores = []
    for _ in range(1 if full else num_subsets):
        if full:
            xs, ys = real, fake
        else:
            xs = real[torch.randperm(real.shape[0], generator=generator)[:size]]
            ys = fake[torch.randperm(fake.shape[0], generator=generator)[:size]]
        scores.append(mmd2_unbiased(xs, ys, degree, gamma, coef))
    stacked = torch.stack(scores)
    std = stacked.std(unbiased=False) if stacked.numel() > 1 else torch.zeros((), dtype=torch.float64)
    return stacked.mean(), std


__all__ = [
    "gaussian_from_sums",
    "trace_sqrt_product",
    "frechet_distance",
    "polynomial_kernel",
    "mmd2_unbiased",
    "kernel_inception_distance",
]

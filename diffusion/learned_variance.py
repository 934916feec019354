"""Learned reverse-process variance and its VLB term (Nichol & Dhariwal 2021, "improved DDPM"; [EXT]).

ADM networks with ``learn_sigma=True`` output, beside epsilon, a map ``v`` in ``[-1, 1]`` that
interpolates the log variance between the two DDPM choices (the posterior ``beta_tilde`` and the
forward ``beta``): ``log Sigma = frac log beta + (1 - frac) log beta_tilde``, ``frac = (v + 1) / 2``.
It is trained by the hybrid objective ``L_simple + L_vlb`` where ``L_vlb`` is the KL between the
posterior ``q(x_{k-1} | x_k, x_0)`` and ``N(mu_theta, Sigma_theta)`` in bits per dimension, with the
mean taken from the *detached* epsilon (so ``L_vlb`` only trains ``v``), and the decoder NLL at
``k = 0``. LFG-Diffusion's public re-implementation trains this way (thesis 001 Ch. 7 digest
[code]); Bi-Noising's ADM priors come with learned sigma too.

Everything is written on a :class:`diffusion.paths.DiscreteDDPMPath` at integer steps ``k``
(``k = 0`` least noisy): the path's own ``betas`` / ``alphas_cumprod``, nothing re-derived.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .paths import DiscreteDDPMPath

__all__ = ["integer_steps", "posterior_log_variance_range", "learned_log_variance", "vlb_terms"]


def integer_steps(path: DiscreteDDPMPath, t: Tensor) -> Tensor:
    """The integer DDPM step ``k`` of path times that lie on the integer grid (``DiscreteTimeSampler``)."""
    k = path.timestep_from_t(t).round().long()
    if bool(((k < 0) | (k >= path.num_train_timesteps)).any()):
        raise ValueError("times must map to training steps 0..T-1 (draw them with DiscreteTimeSampler)")
    return k


def _tables(path: DiscreteDDPMPath, device: torch.device) -> dict[str, Tensor]:
    betas = path.betas.to(device)
    abar = path.alphas_cumprod.to(device)
    abar_prev = torch.cat([torch.ones(1, dtype=abar.dtype, device=device), abar[:-1]])
    post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
    return {
        "betas": betas,
        "abar": abar,
        "abar_prev": abar_prev,
        # ADM clips the k = 0 posterior variance (0) to its k = 1 value before the log
        "post_log_var": torch.log(torch.cat([post_var[1:2], post_var[1:]])),
        "coef_x0": betas * abar_prev.sqrt() / (1.0 - abar),
        "coef_xt": (1.0 - abar_prev) * (1.0 - betas).sqrt() / (1.0 - abar),
    }


def _gather(table: Tensor, k: Tensor, like: Tensor) -> Tensor:
    return table[k].to(like.dtype).view(-1, *([1] * (like.ndim - 1)))


def posterior_log_variance_range(path: DiscreteDDPMPath, k: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    """``(log beta_tilde_k, log beta_k)``, the bounds the learned variance interpolates."""
    tab = _tables(path, like.device)
    return _gather(tab["post_log_var"], k, like), _gather(torch.log(tab["betas"]), k, like)


def learned_log_variance(path: DiscreteDDPMPath, k: Tensor, v: Tensor) -> Tensor:
    """``frac log beta + (1 - frac) log beta_tilde`` with ``frac = (v + 1) / 2``."""
    low, high = posterior_log_variance_range(path, k, v)
    frac = (v + 1.0) / 2.0
    return frac * high + (1.0 - frac) * low


def _normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_std_normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _discretized_gaussian_log_likelihood(x: Tensor, means: Tensor, log_scales: Tensor) -> Tensor:
    """Log-likelihood of 8-bit data in ``[-1, 1]`` under a discretised Gaussian (ADM's decoder)."""
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = _approx_std_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = _approx_std_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    cdf_delta = cdf_plus - cdf_min
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_one_minus_cdf_min, torch.log(cdf_delta.clamp(min=1e-12))))


def vlb_terms(path: DiscreteDDPMPath, x0: Tensor, x_t: Tensor, k: Tensor, eps: Tensor, v: Tensor) -> Tensor:
    """Per-sample ``L_vlb`` in bits/dim: KL for ``k > 0``, decoder NLL for ``k = 0``.

    ``eps`` should be detached by the caller (the "hybrid" objective trains the mean by
    ``L_simple`` only). Returns ``[B]``.
    """
    tab = _tables(path, x0.device)
    abar = _gather(tab["abar"], k, x0)
    x0_hat = (x_t - (1.0 - abar).sqrt() * eps) / abar.sqrt()
    true_mean = _gather(tab["coef_x0"], k, x0) * x0 + _gather(tab["coef_xt"], k, x0) * x_t
    true_logvar = _gather(tab["post_log_var"], k, x0)
    model_mean = _gather(tab["coef_x0"], k, x0) * x0_hat + _gather(tab["coef_xt"], k, x0) * x_t
    model_logvar = learned_log_variance(path, k, v)
    kl = _normal_kl(true_mean, true_logvar, model_mean, model_logvar).flatten(1).mean(1) / math.log(2.0)
    nll = -_discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_logvar).flatten(1).mean(1) / math.log(2.0)
    return torch.where(k == 0, nll, kl)

"""Loss weightings and the Ch. 2 epsilon-equivalence identities (thesis 000, Ch. 2, Eq. 2.17).

Ch. 2's unifying claim: scheduler, output parametrization and time sampling all collapse
into one weight ``w(t)`` on the noise-prediction loss ``||noise_hat - noise||^2`` (Eq. 2.17).
:func:`epsilon_equivalent_weight` gives that weight for each prediction type, so that for
any ``x_t``-consistent estimate ``||pred_hat - pred||^2 = w * ||noise_hat - noise||^2``:

* ``sample``: ``e^{-lambda}`` (stated in Ch. 2),
* ``v_prediction`` (Salimans-Ho v): ``data_coef^2 (e^{-lambda} + 1)^2`` (Ch. 2's "velocity"
  identity; exact for this ``v`` on any affine path, digest §1.5 [D]),
* ``velocity`` (ODE ``dx/dt``): ``(noise_coef' - data_coef' noise_coef / data_coef)^2``, which is
  ``1/t^2`` on the straight path (digest §1.5 [D]; *not* the Salimans identity),
* ``score``: ``1 / noise_coef^2``; ``epsilon``: 1.

The weighting objects are callables ``(t, path) -> w`` with ``w`` shaped like ``t`` (``[B]``):
multiply the per-sample loss of the module's prediction type by it.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .paths import AffinePath, EDMPath
from .predictions import target_coefficients, validate_prediction_type
from .tensor_utils import as_time

__all__ = [
    "epsilon_equivalent_weight",
    "ConstantWeighting",
    "SNRWeighting",
    "MinSNRWeighting",
    "EDMWeighting",
    "P2Weighting",
]


def epsilon_equivalent_weight(prediction_type: str, t: Tensor, path: AffinePath) -> Tensor:
    """``w`` with ``||pred_hat - pred||^2 = w ||noise_hat - noise||^2`` (Eq. 2.17 and the list above).

    General form: with ``pred = E data + F noise`` and ``data_hat - data = -(noise_coef /
    data_coef)(noise_hat - noise)`` (both estimates reproduce ``x_t``), ``w = (F - E sigma)^2``.
    """
    validate_prediction_type(prediction_type)
    t = as_time(t)
    e, f = target_coefficients(prediction_type, t, path)
    return (f - e * path.sigma(t)) ** 2


class ConstantWeighting:
    """``w = 1``: the plain loss of the module's prediction type (Eq. 2.6 for ``velocity``)."""

    def __call__(self, t: Tensor, path: AffinePath) -> Tensor:
        return torch.ones_like(as_time(t))


class SNRWeighting:
    """``w = SNR = e^{lambda}``. On an ``epsilon`` loss this equals the unweighted ``sample`` loss."""

    def __call__(self, t: Tensor, path: AffinePath) -> Tensor:
        return torch.exp(path.log_snr(as_time(t)))


class MinSNRWeighting:
    """Min-SNR-gamma (Hang et al. 2023) for a loss written in ``prediction_type`` ([EXT]).

    The target total weight is ``min(SNR, gamma)`` on the ``sample`` loss, i.e.
    ``min(SNR, gamma) / SNR`` in epsilon-equivalent form; dividing by the prediction type's
    :func:`epsilon_equivalent_weight` gives the factor for its own loss
    (``min(SNR, gamma)/SNR`` for ``epsilon``, ``min(SNR, gamma)/(SNR + 1)`` for ``v_prediction`` on a
    VP path, as in diffusers' training scripts).
    """

    def __init__(self, gamma: float = 5.0, prediction_type: str = "epsilon") -> None:
        self.gamma = float(gamma)
        self.prediction_type = validate_prediction_type(prediction_type)

    def __call__(self, t: Tensor, path: AffinePath) -> Tensor:
        t = as_time(t)
        snr = torch.exp(path.log_snr(t))
        eps_weight = torch.minimum(snr, torch.full_like(snr, self.gamma)) / snr
        return eps_weight / epsilon_equivalent_weight(self.prediction_type, t, path)


class EDMWeighting:
    """EDM's ``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2`` ([EXT], digest §1.7).

    The weight of the denoiser loss ``||D(y + sigma n) - y||^2`` in EDM's own units; SVD uses it
    with ``sigma_data = 1``: ``(sigma^2 + 1)/sigma^2``. On an :class:`EDMPath` sigma is EDM's
    sigma and ``sigma_data`` the path's; on any other path ``sigma = noise_coef/data_coef`` and
    ``sigma_data`` is this object's (default 1).
    """

    def __init__(self, sigma_data: float | None = None) -> None:
        self.sigma_data = sigma_data

    def __call__(self, t: Tensor, path: AffinePath) -> Tensor:
        t = as_time(t)
        if isinstance(path, EDMPath):
            sigma = path.sigma_from_t(t)
            sd = path.sigma_data if self.sigma_data is None else float(self.sigma_data)
        else:
            sigma = path.sigma(t)
            sd = 1.0 if self.sigma_data is None else float(self.sigma_data)
        return (sigma * sigma + sd * sd) / (sigma * sd) ** 2


class P2Weighting:
    """Perception-prioritised weighting (Choi et al. 2022, [EXT]): ``w = 1 / (k + SNR)^gamma`` on the epsilon loss.

    LFG-Diffusion's public re-implementation trains with ``gamma = 1, k = 1`` (thesis 001 Ch. 7
    digest [code]); ``gamma = 0`` is the constant weight.
    """

    def __init__(self, gamma: float = 1.0, k: float = 1.0) -> None:
        if k <= 0 and gamma > 0:
            raise ValueError(f"P2Weighting needs k > 0, got {k}")
        self.gamma, self.k = float(gamma), float(k)

    def __call__(self, t: Tensor, path: AffinePath) -> Tensor:
        snr = torch.exp(path.log_snr(as_time(t)))
        return (self.k + snr) ** (-self.gamma)

"""Schedulers as pointwise transforms of each other (thesis 000, Ch. 2, §2.2.1-2.2.2, Eqs. 2.12-2.16).

Two affine paths with the same endpoints satisfy ``X'_t = X_{tau_t} / omega_t`` (Eq. 2.13) with
``alpha_{tau}/beta_{tau} = alpha'_t/beta'_t`` and ``omega_t = alpha_{tau}/alpha'_t = beta_{tau}/beta'_t``
(Eq. 2.14). Here ``X`` is the *source* path (e.g. the one a model was trained on) and ``X'``
the *target* path. Consequences implemented here:

* inference: :class:`PathSwappedDenoiser` lets a model trained on one path be sampled on
  another ("scheduler swapping", §2.2.1);
* training: :func:`warped_loss_weight` is the loss reweighting of §2.2.2 in its corrected
  form ``w'(t) = omega_t^2 / tau'_t * w(tau_t)`` (digest §1.4 [D]; the extracted thesis text lost
  the dot on ``tau``).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .paths import AffinePath
from .predictions import from_data_and_noise, to_data_and_noise
from .tensor_utils import as_time, expand_to

__all__ = ["time_warp", "time_warp_speed", "warped_loss_weight", "PathSwappedDenoiser"]


def time_warp(source_path: AffinePath, target_path: AffinePath, t: Tensor) -> tuple[Tensor, Tensor]:
    """``(tau_t, omega_t)`` of Eq. 2.14 so that ``target.x_t = source.x_{tau_t} / omega_t``.

    ``tau`` matches the log-SNR; ``omega`` is computed as the least-squares ratio
    ``(alpha_tau alpha' + beta_tau beta') / (alpha'^2 + beta'^2)``, which equals both ratios of
    Eq. 2.14 when they agree and stays finite where one coefficient vanishes (the ends).
    Computed in float64 and returned in ``t``'s dtype.
    """
    t = as_time(t)
    t64 = t.to(torch.float64)
    tau = source_path.t_from_log_snr(target_path.log_snr(t64))
    a_tau, b_tau = source_path.data_coef(tau), source_path.noise_coef(tau)
    a_t, b_t = target_path.data_coef(t64), target_path.noise_coef(t64)
    omega = (a_tau * a_t + b_tau * b_t) / (a_t * a_t + b_t * b_t)
    return tau.to(t.dtype), omega.to(t.dtype)


def time_warp_speed(source_path: AffinePath, target_path: AffinePath, t: Tensor) -> Tensor:
    """``d tau_t / dt = lambda'_target(t) / lambda'_source(tau_t)`` (log-SNR matching, Eq. 2.14)."""
    t = as_time(t)
    tau, _ = time_warp(source_path, target_path, t)
    return target_path.log_snr_deriv(t) / source_path.log_snr_deriv(tau)


def warped_loss_weight(
    weight: Callable[[Tensor, AffinePath], Tensor],
    source_path: AffinePath,
    target_path: AffinePath,
    t: Tensor,
) -> Tensor:
    """The target-path weight ``w'(t) = omega_t^2 / tau'_t * w(tau_t)`` of §2.2.2 (Eqs. 2.15-2.16).

    ``weight(t, path)`` is the source path's velocity-loss weight (any object of
    :mod:`diffusion.weighting`). Training on the target path with velocity loss weighted by
    ``w'`` equals training on the source path with ``w``, pointwise in the integrand:
    ``w'(t) ||dX'_t/dt - v'_t||^2 dt = w(tau) ||dX_tau/dtau - v_tau||^2 dtau``.
    """
    t = as_time(t)
    tau, omega = time_warp(source_path, target_path, t)
    speed = time_warp_speed(source_path, target_path, t)
    return omega * omega / speed * weight(tau, source_path)


class PathSwappedDenoiser:
    """Sample a model trained on ``trained_path`` with a sampler running on ``sampling_path``.

    At sampler time ``t`` and state ``x'`` the trained model is queried at ``(omega_t x', tau_t)``
    (Eq. 2.13) and its output is re-expressed on the sampling path. ``data`` and ``noise``
    are shared by both paths, so ``epsilon``/``sample`` outputs pass through unchanged while
    ``velocity`` becomes ``tau'/omega v(omega x, tau) - omega'/omega x`` (§2.2.2), computed here via
    the exact data/noise conversion. The warp is evaluated per call (the wrapper cannot
    know the sampler's grid in advance).
    """

    def __init__(
        self,
        denoiser: Callable[[Tensor, Tensor], Tensor],
        trained_path: AffinePath,
        sampling_path: AffinePath,
    ) -> None:
        self.denoiser = denoiser
        self.trained_path = trained_path
        self.sampling_path = sampling_path
        self.prediction_type: str = denoiser.prediction_type  # type: ignore[attr-defined]

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        t = as_time(t, x_t)
        tau, omega = time_warp(self.trained_path, self.sampling_path, t)
        x_src = expand_to(omega, x_t) * x_t
        out = self.denoiser(x_src, tau)
        if self.prediction_type in ("epsilon", "sample"):
            return out
        data, noise = to_data_and_noise(out, self.prediction_type, x_src, tau, self.trained_path)
        return from_data_and_noise(data, noise, x_t, t, self.sampling_path, self.prediction_type)

"""The consistency boundary parametrisation of thesis 001, Ch. 5, Eq. 5.2.

``F(z_t, t) = c_skip(t) z_t + c_out(t) x_hat(z_t, t)`` with ``c_skip = 1``, ``c_out = 0`` at the
boundary time (the least noisy point of the step grid), so ``F`` is the identity there. The
thesis imposes "the same skip connections" on the noise prediction; here the noise prediction
is the one implied by ``F``: ``eps_F = (z_t - alpha_t F) / sigma_t`` (a VP path), so the x- and
eps-forms of the consistency function are the same object (Remark 5.1).

[GAP] ``c_skip`` / ``c_out`` are not given; the Consistency Models form (Song et al. 2023) is
used, in the path's EDM sigma ``sigma(t) = noise_coef / data_coef``::

    c_skip = sigma_data^2 / ((sigma - sigma_min)^2 + sigma_data^2)
    c_out  = sigma_data (sigma - sigma_min) / sqrt(sigma^2 + sigma_data^2)

with ``sigma_data = 0.5`` and ``sigma_min = sigma(boundary time)``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from diffusion.paths import AffinePath


class ConsistencyBoundary:
    """``c_skip``/``c_out`` of Eq. 5.2 on an affine path, identity at ``t_boundary`` (path time, near data)."""

    def __init__(self, path: AffinePath, t_boundary: float, sigma_data: float = 0.5) -> None:
        self.path = path
        self.t_boundary = float(t_boundary)
        self.sigma_data = float(sigma_data)
        self.sigma_min = float(path.sigma(torch.tensor([self.t_boundary], dtype=torch.float64))[0])

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        sigma = self.path.sigma(t.to(torch.float64))
        d = (sigma - self.sigma_min).clamp_min(0.0)
        sd2 = self.sigma_data**2
        c_skip = sd2 / (d * d + sd2)
        c_out = self.sigma_data * d / torch.sqrt(sigma * sigma + sd2)
        return c_skip.to(t.dtype), c_out.to(t.dtype)

    def apply(self, z_t: Tensor, x_hat: Tensor, t: Tensor) -> Tensor:
        """``F(z_t, t)``: the boundary-parametrised data prediction (``t`` of shape ``[B]``)."""
        c_skip, c_out = self.coefficients(t)
        shape = (-1,) + (1,) * (z_t.ndim - 1)
        return c_skip.to(z_t.dtype).view(shape) * z_t + c_out.to(z_t.dtype).view(shape) * x_hat

    def noise(self, z_t: Tensor, f: Tensor, t: Tensor) -> Tensor:
        """The noise prediction implied by ``F``: ``(z_t - alpha_t F) / sigma_t``."""
        shape = (-1,) + (1,) * (z_t.ndim - 1)
        a = self.path.data_coef(t.to(torch.float64)).to(z_t.dtype).view(shape)
        b = self.path.noise_coef(t.to(torch.float64)).to(z_t.dtype).view(shape)
        return (z_t - a * f) / b


__all__ = ["ConsistencyBoundary"]

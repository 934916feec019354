"""Affine Gaussian probability paths in the Ch. 2 time convention (thesis 000, Ch. 2).

Every path is ``x_t = data_coef(t) * x_data + noise_coef(t) * noise`` with ``t`` in
``[0, 1]``, ``t = 0`` (pure) noise and ``t = 1`` data: the generic affine path of
Eq. 2.12 (``alpha_t = data_coef``, ``beta_t = noise_coef``). Straight flow matching is
Eq. 2.4, DDPM is Eq. 2.9. Formulas in this package name the coefficients, never a bare
``t``. Papers that count DDPM integer steps, EDM sigmas or the SD3 direction reach these
paths through explicit adapters (``DiscreteDDPMPath.t_from_timestep``,
``EDMPath.t_from_sigma``, ``RectifiedFlowPath(reverse_network_time=True)``).

``network_time(t)`` is the value a network's timestep input receives. It is a property
of the path because pretrained networks were trained with one specific time input
(DDPM integer steps, EDM ``c_noise``, flow ``t * 1000``).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Literal

import torch
from torch import Tensor

from .tensor_utils import as_time, expand_to

__all__ = ["AffinePath", "RectifiedFlowPath", "CosinePath", "DiscreteDDPMPath", "EDMPath"]


class AffinePath(ABC):
    """An affine Gaussian path ``x_t = data_coef(t) x_data + noise_coef(t) noise`` (Eq. 2.12).

    Subclasses give the two coefficients, their time derivatives, the inverse of the
    log-SNR and the network time input. Everything else (log-SNR, ``sigma``, noising)
    is derived here. All methods are elementwise in ``t`` (any shape).
    """

    #: short name used in reprs and configs
    name: str = "affine"

    # --- coefficients -------------------------------------------------------------------
    @abstractmethod
    def data_coef(self, t: Tensor) -> Tensor:
        """``alpha_t`` of Eq. 2.12: the weight of the data in ``x_t``."""

    @abstractmethod
    def noise_coef(self, t: Tensor) -> Tensor:
        """``beta_t`` of Eq. 2.12: the weight of the noise in ``x_t``."""

    @abstractmethod
    def data_coef_deriv(self, t: Tensor) -> Tensor:
        """``d alpha_t / dt`` (enters the ODE velocity of Eq. 2.5 / 2.11)."""

    @abstractmethod
    def noise_coef_deriv(self, t: Tensor) -> Tensor:
        """``d beta_t / dt``."""

    @abstractmethod
    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        """Inverse of :meth:`log_snr`, clamped to ``[0, 1]`` (used by the time warp, Eq. 2.14)."""

    @abstractmethod
    def network_time(self, t: Tensor) -> Tensor:
        """The value the network's timestep input receives at path time ``t``."""

    # --- derived quantities ------------------------------------------------------------
    def log_snr(self, t: Tensor) -> Tensor:
        """``lambda_t = log(alpha_t^2 / beta_t^2)`` (Ch. 2, §2.2.2); ``-inf`` at pure noise, ``+inf`` at data."""
        t = as_time(t)
        return 2.0 * (torch.log(self.data_coef(t)) - torch.log(self.noise_coef(t)))

    def log_snr_deriv(self, t: Tensor) -> Tensor:
        """``d lambda_t / dt = 2 (alpha'/alpha - beta'/beta)``; gives the warp speed ``tau'`` of §1.4."""
        t = as_time(t)
        return 2.0 * (
            self.data_coef_deriv(t) / self.data_coef(t) - self.noise_coef_deriv(t) / self.noise_coef(t)
        )

    def sigma(self, t: Tensor) -> Tensor:
        """Noise-to-signal ratio ``noise_coef / data_coef``: the VE noise level of ``x_t / data_coef``."""
        t = as_time(t)
        return self.noise_coef(t) / self.data_coef(t)

    def sigma_from_t(self, t: Tensor) -> Tensor:
        """Noise level in the path's native unit (``sigma`` here; the EDM sigma on :class:`EDMPath`)."""
        return self.sigma(t)

    def t_from_sigma(self, sigma: Tensor) -> Tensor:
        """Inverse of :meth:`sigma_from_t`."""
        sigma = as_time(sigma)
        return self.t_from_log_snr(-2.0 * torch.log(sigma))

    def add_noise(self, x_data: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """``x_t = data_coef(t) x_data + noise_coef(t) noise`` with ``t`` of shape ``[B]`` (Eq. 2.12)."""
        t = as_time(t, x_data)
        return expand_to(self.data_coef(t), x_data) * x_data + expand_to(self.noise_coef(t), noise) * noise

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class RectifiedFlowPath(AffinePath):
    """The straight path of flow matching, Eq. 2.4: ``data_coef = t``, ``noise_coef = 1 - t``.

    The ODE velocity is ``x_data - noise`` (Eq. 2.5).

    Args:
        network_time_scale: the network receives ``t * network_time_scale``. Default 1000:
            the magnitude diffusers' flow-matching models (SD3, FlowMatchEulerDiscreteScheduler)
            feed their timestep embeddings, so a diffusers UNet/transformer sees the same
            range it was designed for. [GAP] Ch. 2 does not fix the network's time input.
        reverse_network_time: feed ``(1 - t) * network_time_scale`` instead, i.e. the SD3
            timestep (``t = 1`` noise). Use it for networks trained in the SD3 direction,
            together with the ``sd3_velocity`` prediction type.
    """

    name = "rectified_flow"

    def __init__(self, network_time_scale: float = 1000.0, reverse_network_time: bool = False) -> None:
        self.network_time_scale = float(network_time_scale)
        self.reverse_network_time = bool(reverse_network_time)

    def data_coef(self, t: Tensor) -> Tensor:
        return as_time(t).clone()

    def noise_coef(self, t: Tensor) -> Tensor:
        return 1.0 - as_time(t)

    def data_coef_deriv(self, t: Tensor) -> Tensor:
        return torch.ones_like(as_time(t))

    def noise_coef_deriv(self, t: Tensor) -> Tensor:
        return -torch.ones_like(as_time(t))

    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        # t / (1 - t) = exp(lambda / 2)
        return torch.sigmoid(0.5 * as_time(lam))

    def network_time(self, t: Tensor) -> Tensor:
        t = as_time(t)
        return (1.0 - t if self.reverse_network_time else t) * self.network_time_scale

    def __repr__(self) -> str:
        return (
            f"RectifiedFlowPath(network_time_scale={self.network_time_scale}, "
            f"reverse_network_time={self.reverse_network_time})"
        )


class CosinePath(AffinePath):
    """Nichol & Dhariwal's cosine schedule as a continuous VP path (digest §1.7 catalogue, [EXT]).

    With the noise-direction time ``u = 1 - t`` and ``f(u) = cos^2(((u + s)/(1 + s)) pi/2)``:
    ``data_coef = sqrt(f(u)/f(0))``, ``noise_coef = sqrt(1 - data_coef^2)``.

    Choices where the sources are silent ([GAP]): the continuous form is used (no 0.999
    clipping of discrete betas, which only matters for a discretised 1000-step table).

    Network time: ``network_time = network_time_scale * (1 - t) + network_time_offset``, by
    default ``1000 u - 1``. That is the timestep convention of diffusers'
    ``squaredcos_cap_v2`` table: its betas ``1 - f((i+1)/T) / f(i/T)`` telescope to
    ``alpha_bar_k = f((k+1)/T) / f(0)``, so training step ``k`` sits at ``u = (k + 1)/T`` and
    a diffusers-trained cosine network expects ``k = T u - 1`` (the same shift by one as
    :class:`DiscreteDDPMPath`). Until issue 14 the offset was 0, which fed such a network
    ``k + 1``. For the exact discrete table (with its 0.999 cap on the last step) use
    ``DiscreteDDPMPath("squaredcos_cap_v2")``. A network trained on this continuous path with
    its own time convention sets ``network_time_offset=0`` (or any scale it was trained with).
    """

    name = "cosine"

    def __init__(
        self, offset: float = 0.008, network_time_scale: float = 1000.0, network_time_offset: float = -1.0
    ) -> None:
        self.offset = float(offset)
        self.network_time_scale = float(network_time_scale)
        self.network_time_offset = float(network_time_offset)
        self._cos_phi0 = math.cos(self.offset / (1.0 + self.offset) * math.pi / 2.0)

    def _phi(self, t: Tensor) -> Tensor:
        u = 1.0 - as_time(t)
        return (u + self.offset) / (1.0 + self.offset) * (math.pi / 2.0)

    def data_coef(self, t: Tensor) -> Tensor:
        return (torch.cos(self._phi(t)) / self._cos_phi0).clamp(0.0, 1.0)

    def noise_coef(self, t: Tensor) -> Tensor:
        a = self.data_coef(t)
        return torch.sqrt((1.0 - a * a).clamp_min(0.0))

    def data_coef_deriv(self, t: Tensor) -> Tensor:
        # d/dt cos(phi(1 - t)) = sin(phi) * dphi/du
        return torch.sin(self._phi(t)) / self._cos_phi0 * (math.pi / 2.0) / (1.0 + self.offset)

    def noise_coef_deriv(self, t: Tensor) -> Tensor:
        # VP path: beta beta' = -alpha alpha'
        return -self.data_coef(t) * self.data_coef_deriv(t) / self.noise_coef(t)

    def log_snr(self, t: Tensor) -> Tensor:
        a = self.data_coef(as_time(t))
        return torch.log(a * a) - torch.log1p(-a * a)

    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        a = torch.sqrt(torch.sigmoid(as_time(lam)))  # VP: alpha^2 = sigmoid(lambda)
        phi = torch.arccos((a * self._cos_phi0).clamp(-1.0, 1.0))
        u = phi * (2.0 / math.pi) * (1.0 + self.offset) - self.offset
        return (1.0 - u).clamp(0.0, 1.0)

    def network_time(self, t: Tensor) -> Tensor:
        return (1.0 - as_time(t)) * self.network_time_scale + self.network_time_offset

    def __repr__(self) -> str:
        return (
            f"CosinePath(offset={self.offset}, network_time_scale={self.network_time_scale}, "
            f"network_time_offset={self.network_time_offset})"
        )


def _cosine_betas(num_train_timesteps: int, max_beta: float = 0.999, offset: float = 0.008) -> Tensor:
    """Nichol & Dhariwal's discrete cosine betas as diffusers' ``squaredcos_cap_v2`` builds them.

    Python floats (float64) for ``f``, the cap at ``max_beta``, then one float32 tensor: the
    rounding order matters for bit-equality with diffusers' ``alphas_cumprod``.
    """

    def f(u: float) -> float:
        return math.cos((u + offset) / (1.0 + offset) * math.pi / 2.0) ** 2

    T = int(num_train_timesteps)
    values = [min(1.0 - f((k + 1) / T) / f(k / T), max_beta) for k in range(T)]
    return torch.tensor(values, dtype=torch.float32)


class DiscreteDDPMPath(AffinePath):
    """A DDPM/LDM beta table (Eq. 2.9) made continuous in ``t``.

    ``alpha_bar`` comes from the betas exactly as diffusers' ``DDPMScheduler`` computes it
    (float32 ``linspace`` / scaled-linear betas, float32 cumulative product); it is then
    stored in float64. Adapters between ``t`` and the integer step ``k`` (``k = 0`` least
    noisy, ``k = T - 1`` noisiest)::

        k = T (1 - t) - 1        t = 1 - (k + 1) / T

    so ``t = 0`` is the noisiest training step ``k = T - 1`` and ``t = 1`` is the virtual
    step ``k = -1`` with ``alpha_bar = 1`` (clean data; diffusers' ``set_alpha_to_one`` /
    DDPM's final ``alpha_prod_t_prev = 1``). [GAP] The thesis writes ``k = 1000 (1 - t)``
    loosely; this shift by one makes both ends exact.

    Between integer steps ``sigma = sqrt((1 - alpha_bar) / alpha_bar)`` is linear in ``k``,
    exactly as diffusers' ``EulerDiscreteScheduler`` (``interpolation_type='linear'``)
    interpolates, with ``sigma(k = -1) = 0``; then ``data_coef = 1 / sqrt(1 + sigma^2)`` and
    ``noise_coef = sigma / sqrt(1 + sigma^2)`` (so ``data_coef = sqrt(alpha_bar_k)`` at
    integer ``k``). The derivative at a knot uses the segment on the data side ([GAP]).

    Defaults are Stable Diffusion 1.x / Paint-by-Example's scaled-linear table
    (0.00085 -> 0.012, 1000 steps; digest §1.7), the schedule of the thesis's Ch. 3.
    ``beta_schedule="squaredcos_cap_v2"`` is diffusers' discretised Nichol & Dhariwal cosine
    table (``beta_k = min(1 - f((k+1)/T) / f(k/T), 0.999)`` with ``f(u) = cos^2((u + 0.008)/1.008
    pi/2)``, evaluated in float64 and stored in float32 as diffusers does; ``beta_start`` /
    ``beta_end`` are ignored there), with the same ``k`` convention, so a diffusers-trained cosine
    network gets exactly the timesteps its scheduler would give it.
    """

    name = "ddpm"

    def __init__(
        self,
        beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "scaled_linear",
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        num_train_timesteps: int = 1000,
    ) -> None:
        T = int(num_train_timesteps)
        if T < 2:
            raise ValueError(f"num_train_timesteps must be >= 2, got {num_train_timesteps}")
        if beta_schedule == "linear":
            betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float32)
        elif beta_schedule == "scaled_linear":
            betas = torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float32) ** 2
        elif beta_schedule == "squaredcos_cap_v2":
            betas = _cosine_betas(T)
        else:
            raise ValueError(
                f"unknown beta_schedule {beta_schedule!r}; valid names: 'linear', 'scaled_linear', "
                "'squaredcos_cap_v2'"
            )
        self.beta_schedule = beta_schedule
        self.beta_start = float(beta_start)
        self.beta_end = float(beta_end)
        self.num_train_timesteps = T
        self.betas = betas.to(torch.float64)
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0).to(torch.float64)
        sigmas = torch.sqrt((1.0 - self.alphas_cumprod) / self.alphas_cumprod)
        # knot table over p = k + 1 = T (1 - t) in [0, T]: S[0] = 0 (clean), S[p] = sigma_{p-1}
        self._knots = torch.cat([torch.zeros(1, dtype=torch.float64), sigmas])
        self._cache: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    # --- adapters -----------------------------------------------------------------------
    def t_from_timestep(self, k: Tensor | float) -> Tensor:
        """Integer (or fractional) DDPM step ``k`` -> path time ``t = 1 - (k + 1) / T``."""
        k = as_time(k)
        return 1.0 - (k + 1.0) / self.num_train_timesteps

    def timestep_from_t(self, t: Tensor | float) -> Tensor:
        """Path time ``t`` -> continuous DDPM step ``k = T (1 - t) - 1`` (``-1`` at data)."""
        t = as_time(t)
        return self.num_train_timesteps * (1.0 - t) - 1.0

    # --- interpolation ------------------------------------------------------------------
    def _table(self, like: Tensor) -> Tensor:
        key = (like.device, like.dtype)
        table = self._cache.get(key)
        if table is None:
            table = self._knots.to(device=like.device, dtype=like.dtype)
            self._cache[key] = table
        return table

    def _position(self, t: Tensor) -> Tensor:
        return (self.num_train_timesteps * (1.0 - t)).clamp(0.0, float(self.num_train_timesteps))

    def _sigma(self, t: Tensor) -> Tensor:
        t = as_time(t)
        table = self._table(t)
        p = self._position(t)
        lo = p.floor().clamp(max=self.num_train_timesteps - 1).long()
        s_lo = table[lo]
        return s_lo + (p - lo.to(p.dtype)) * (table[lo + 1] - s_lo)

    def _sigma_deriv(self, t: Tensor) -> Tensor:
        t = as_time(t)
        table = self._table(t)
        p = self._position(t)
        hi = p.ceil().clamp(1, self.num_train_timesteps).long()
        return -self.num_train_timesteps * (table[hi] - table[hi - 1])

    def sigma(self, t: Tensor) -> Tensor:
        return self._sigma(t)

    def data_coef(self, t: Tensor) -> Tensor:
        s = self._sigma(t)
        return torch.rsqrt(1.0 + s * s)

    def noise_coef(self, t: Tensor) -> Tensor:
        s = self._sigma(t)
        return s * torch.rsqrt(1.0 + s * s)

    def data_coef_deriv(self, t: Tensor) -> Tensor:
        s = self._sigma(t)
        return -s * (1.0 + s * s) ** -1.5 * self._sigma_deriv(t)

    def noise_coef_deriv(self, t: Tensor) -> Tensor:
        s = self._sigma(t)
        return (1.0 + s * s) ** -1.5 * self._sigma_deriv(t)

    def log_snr(self, t: Tensor) -> Tensor:
        return -2.0 * torch.log(self._sigma(t))

    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        lam = as_time(lam)
        sigma = torch.exp(-0.5 * lam)
        table = self._table(sigma)
        hi = torch.searchsorted(table, sigma.contiguous()).clamp(1, self.num_train_timesteps)
        s_lo, s_hi = table[hi - 1], table[hi]
        p = (hi - 1).to(sigma.dtype) + (sigma - s_lo) / (s_hi - s_lo)
        p = p.clamp(0.0, float(self.num_train_timesteps))
        return 1.0 - p / self.num_train_timesteps

    def network_time(self, t: Tensor) -> Tensor:
        """The DDPM integer-scale step ``k = T (1 - t) - 1`` (fractional between knots)."""
        return self.timestep_from_t(t)

    def __repr__(self) -> str:
        return (
            f"DiscreteDDPMPath(beta_schedule={self.beta_schedule!r}, beta_start={self.beta_start}, "
            f"beta_end={self.beta_end}, num_train_timesteps={self.num_train_timesteps})"
        )


class EDMPath(AffinePath):
    """Karras et al.'s EDM noise levels as a variance-preserving affine path ([EXT], digest §1.7).

    EDM writes ``y + sigma n`` for data ``y`` of standard deviation ``sigma_data`` and feeds the
    network ``c_in (y + sigma n)`` with ``c_in = 1 / sqrt(sigma^2 + sigma_data^2)``. Here
    ``x_data = y / sigma_data`` (unit-scale data), so the network input is exactly::

        x_t = data_coef x_data + noise_coef noise,
        data_coef  = sigma_data / sqrt(sigma^2 + sigma_data^2),
        noise_coef = sigma      / sqrt(sigma^2 + sigma_data^2)

    (``1 / sqrt(1 + sigma^2)`` and ``sigma / sqrt(1 + sigma^2)`` for ``sigma_data = 1``, the SVD /
    MimicMotion setting of Ch. 4). ``data_coef^2 + noise_coef^2 = 1``, ``t = 1`` is data.
    ``sigma_from_t`` / ``t_from_sigma`` speak EDM's sigma; the generic ``sigma(t)`` is
    ``noise_coef / data_coef = sigma / sigma_data`` (equal for ``sigma_data = 1``).

    Time map ([GAP], Ch. 2 has no EDM time): ``sigma(t) = sigma_max (1 - t)^rho``, so a uniform
    grid in ``t`` is Karras' rho-spaced grid from ``sigma_max`` down to 0, ``t = 0`` is
    ``sigma_max`` and ``t = 1`` is ``sigma = 0``. Sigmas above ``sigma_max`` clamp to ``t = 0``.
    ``sigma_min`` is the default lower end of :func:`diffusion.grids.karras_grid`.

    ``network_time = c_noise = 0.25 ln sigma``. With this path SVD's EDM v-preconditioning
    (``c_skip = 1/(sigma^2+1)``, ``c_out = -sigma/sqrt(sigma^2+1)``) is Salimans v-prediction
    (digest §1.7; proven in ``tests/test_diffusion_paths.py``).
    """

    name = "edm"

    def __init__(
        self, sigma_min: float = 0.002, sigma_max: float = 700.0, sigma_data: float = 1.0, rho: float = 7.0
    ) -> None:
        if not 0.0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.sigma_data = float(sigma_data)
        self.rho = float(rho)

    def sigma_from_t(self, t: Tensor) -> Tensor:
        """EDM sigma at path time ``t``: ``sigma_max (1 - t)^rho``."""
        t = as_time(t)
        return self.sigma_max * (1.0 - t).clamp_min(0.0) ** self.rho

    def t_from_sigma(self, sigma: Tensor) -> Tensor:
        """Path time of an EDM sigma, clamped to ``[0, 1]``."""
        sigma = as_time(sigma)
        return (1.0 - (sigma.clamp_min(0.0) / self.sigma_max) ** (1.0 / self.rho)).clamp(0.0, 1.0)

    def _sigma_deriv(self, t: Tensor) -> Tensor:
        t = as_time(t)
        return -self.rho * self.sigma_max * (1.0 - t).clamp_min(0.0) ** (self.rho - 1.0)

    def sigma(self, t: Tensor) -> Tensor:
        return self.sigma_from_t(t) / self.sigma_data

    def data_coef(self, t: Tensor) -> Tensor:
        s = self.sigma_from_t(t)
        return self.sigma_data * torch.rsqrt(s * s + self.sigma_data**2)

    def noise_coef(self, t: Tensor) -> Tensor:
        s = self.sigma_from_t(t)
        return s * torch.rsqrt(s * s + self.sigma_data**2)

    def data_coef_deriv(self, t: Tensor) -> Tensor:
        s = self.sigma_from_t(t)
        return -self.sigma_data * s * (s * s + self.sigma_data**2) ** -1.5 * self._sigma_deriv(t)

    def noise_coef_deriv(self, t: Tensor) -> Tensor:
        s = self.sigma_from_t(t)
        return self.sigma_data**2 * (s * s + self.sigma_data**2) ** -1.5 * self._sigma_deriv(t)

    def log_snr(self, t: Tensor) -> Tensor:
        return 2.0 * (math.log(self.sigma_data) - torch.log(self.sigma_from_t(t)))

    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        return self.t_from_sigma(self.sigma_data * torch.exp(-0.5 * as_time(lam)))

    def network_time(self, t: Tensor) -> Tensor:
        """EDM ``c_noise = 0.25 ln sigma`` (``-inf`` at ``t = 1``; samplers never evaluate there)."""
        return 0.25 * torch.log(self.sigma_from_t(t))

    def __repr__(self) -> str:
        return (
            f"EDMPath(sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, "
            f"sigma_data={self.sigma_data}, rho={self.rho})"
        )

"""Training-time distributions over ``t`` (thesis 000, Ch. 2, §2.2.2 "time sampling strategies").

Ch. 2 says only that DDPM samples uniformly and EDM non-uniformly, and that the sampling
density is one more loss weighting in expectation. The concrete densities below come
from the base models' public code ([EXT], digest §1.7). Each sampler is a callable
``(batch_size, device, generator=None) -> t`` with ``t`` of shape ``[B]`` in ``[0, 1]``
(Ch. 2 direction: 0 noise, 1 data), float32. A ``generator`` must live on ``device``.
"""
from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from .paths import AffinePath, DiscreteDDPMPath, EDMPath

__all__ = [
    "TimeSampler",
    "UniformTimeSampler",
    "DiscreteTimeSampler",
    "LogitNormalTimeSampler",
    "ShiftedTimeSampler",
    "EDMLogNormalTimeSampler",
    "CubicTimeSampler",
    "shift_noise_level",
]

Device = torch.device | str | None


class TimeSampler(Protocol):
    """What the training loop calls to draw ``t``."""

    def __call__(
        self, batch_size: int, device: Device = None, generator: torch.Generator | None = None
    ) -> Tensor: ...


def shift_noise_level(s: Tensor, shift: float) -> Tensor:
    """SD3's resolution shift ``s' = shift s / (1 + (shift - 1) s)`` on a noise-direction time ``s``."""
    return shift * s / (1.0 + (shift - 1.0) * s)


def _uniform(batch_size: int, device: Device, generator: torch.Generator | None) -> Tensor:
    return torch.rand(batch_size, device=device, generator=generator, dtype=torch.float32)


def _normal(batch_size: int, device: Device, generator: torch.Generator | None) -> Tensor:
    return torch.randn(batch_size, device=device, generator=generator, dtype=torch.float32)


class UniformTimeSampler:
    """``t ~ U(t_min, t_max)`` (Eq. 2.6: ``t ~ U(0, 1)`` per sample)."""

    def __init__(self, t_min: float = 0.0, t_max: float = 1.0) -> None:
        if not 0.0 <= t_min < t_max <= 1.0:
            raise ValueError(f"need 0 <= t_min < t_max <= 1, got {t_min}, {t_max}")
        self.t_min, self.t_max = float(t_min), float(t_max)

    def __call__(self, batch_size: int, device: Device = None, generator: torch.Generator | None = None) -> Tensor:
        return self.t_min + (self.t_max - self.t_min) * _uniform(batch_size, device, generator)


class DiscreteTimeSampler:
    """Uniform integer DDPM steps ``k in {0..T-1}`` mapped to ``t`` (DDPM / Paint-by-Example training)."""

    def __init__(self, path: DiscreteDDPMPath) -> None:
        if not isinstance(path, DiscreteDDPMPath):
            raise TypeError(f"DiscreteTimeSampler needs a DiscreteDDPMPath, got {type(path).__name__}")
        self.path = path

    def __call__(self, batch_size: int, device: Device = None, generator: torch.Generator | None = None) -> Tensor:
        k = torch.randint(
            0, self.path.num_train_timesteps, (batch_size,), device=device, generator=generator
        )
        return self.path.t_from_timestep(k.to(torch.float32))


class LogitNormalTimeSampler:
    """``t = sigmoid(mean + std n)``, ``n ~ N(0, 1)`` (SD3's logit-normal density).

    ``mean`` is in the Ch. 2 direction: a positive mean favours cleaner samples. SD3 writes
    the density on its noise-direction time, so SD3's ``logit_mean = m`` is ``mean = -m`` here
    (the default 0 is the same in both).
    """

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        self.mean, self.std = float(mean), float(std)

    def __call__(self, batch_size: int, device: Device = None, generator: torch.Generator | None = None) -> Tensor:
        return torch.sigmoid(self.mean + self.std * _normal(batch_size, device, generator))


class ShiftedTimeSampler:
    """Apply SD3's shift to another sampler, in the noise direction (digest §1.7).

    With ``s = 1 - t``: ``s' = shift s / (1 + (shift - 1) s)`` and ``t' = 1 - s'``; ``shift > 1``
    moves mass towards noise (what SD3 uses at high resolution).
    """

    def __init__(self, base: TimeSampler, shift: float) -> None:
        if shift <= 0:
            raise ValueError(f"shift must be > 0, got {shift}")
        self.base, self.shift = base, float(shift)

    def __call__(self, batch_size: int, device: Device = None, generator: torch.Generator | None = None) -> Tensor:
        t = self.base(batch_size, device, generator)
        return 1.0 - shift_noise_level(1.0 - t, self.shift)


class EDMLogNormalTimeSampler:
    """EDM's ``ln sigma ~ N(p_mean, p_std^2)`` mapped through ``path.t_from_sigma`` (clamped to [0, 1]).

    Defaults are EDM's (-1.2, 1.2); community SVD fine-tuning uses (0.7, 1.6) ([EXT]; the
    thesis's Ch. 4 does not give them, [GAP]).
    """

    def __init__(self, path: AffinePath, p_mean: float = -1.2, p_std: float = 1.2) -> None:
        self.path, self.p_mean, self.p_std = path, float(p_mean), float(p_std)

    def __call__(self, batch_size: int, device: Device = None, generator: torch.Generator | None = None) -> Tensor:
        sigma = torch.exp(self.p_mean + self.p_std * _normal(batch_size, device, generator))
        if isinstance(self.path, EDMPath):
            return self.path.t_from_sigma(sigma)
        return self.path.t_from_log_snr(-2.0 * torch.log(sigma))


class CubicTimeSampler:
    """CFLD's cubic schedule: noise-direction fraction ``1 - u^3``, ``u ~ U(0, 1)``, biased to noisy steps.

    Continuous: ``t = u^3``. With a :class:`DiscreteDDPMPath` the fraction becomes the integer
    step ``k = floor((1 - u^3) T)`` (clamped to ``T - 1``), as CFLD's training code does.
    """

    def __init__(self, path: AffinePath | None = None) -> None:
        self.path = path

    def __call__(self, batch_size: int, device: Device = None, generator: torch.Generator | None = None) -> Tensor:
        u = _uniform(batch_size, device, generator)
        if isinstance(self.path, DiscreteDDPMPath):
            T = self.path.num_train_timesteps
            k = ((1.0 - u**3) * T).floor().clamp(max=T - 1)
            return self.path.t_from_timestep(k)
        return u**3

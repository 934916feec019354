"""Sampling grids: increasing float64 times from (near) 0 = noise to 1 = data (thesis 000, Ch. 2).

A grid of ``N + 1`` points defines ``N`` steps; samplers evaluate the denoiser at the first
``N`` points and land on the last one. Eq. 2.3 uses the uniform grid ``Delta t = 1/N``; the
other builders reproduce the step placements of the base models' schedulers ([EXT]):
SD3's shift, Karras' rho-spacing and diffusers' ``leading``/``trailing``/``linspace`` DDPM
timestep spacings (Lin et al. 2023, Table 2).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .paths import AffinePath, DiscreteDDPMPath
from .time_samplers import shift_noise_level

__all__ = [
    "uniform_grid",
    "shifted_grid",
    "flow_match_grid",
    "karras_grid",
    "geometric_grid",
    "discrete_grid",
    "TIMESTEP_SPACINGS",
]

TIMESTEP_SPACINGS: tuple[str, ...] = ("leading", "trailing", "linspace")
_FINALS: tuple[str, ...] = ("one", "first")


def _check_steps(num_steps: int) -> int:
    if int(num_steps) < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    return int(num_steps)


def uniform_grid(num_steps: int, t_start: float = 0.0, t_end: float = 1.0) -> Tensor:
    """``linspace(t_start, t_end, num_steps + 1)``: the Euler grid of Eq. 2.3 (``Delta t = 1/N``)."""
    num_steps = _check_steps(num_steps)
    if not 0.0 <= t_start < t_end <= 1.0:
        raise ValueError(f"need 0 <= t_start < t_end <= 1, got {t_start}, {t_end}")
    return torch.linspace(t_start, t_end, num_steps + 1, dtype=torch.float64)


def shifted_grid(num_steps: int, shift: float, t_start: float = 0.0, t_end: float = 1.0) -> Tensor:
    """A uniform grid with SD3's shift applied in the noise direction (``s = 1 - t``).

    ``s' = shift s / (1 + (shift - 1) s)``; ``shift > 1`` spends more steps at high noise.
    """
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    base = uniform_grid(num_steps, t_start, t_end)
    return 1.0 - shift_noise_level(1.0 - base, float(shift))


def flow_match_grid(num_steps: int, shift: float = 1.0, num_train_timesteps: int = 1000) -> Tensor:
    """The exact grid of diffusers' ``FlowMatchEulerDiscreteScheduler`` (static shift), as ``t = 1 - sigma``.

    That scheduler evaluates ``linspace(1, sigma_min, N)`` shifted, where ``sigma_min`` is the
    already-shifted ``1/T``, and appends ``sigma = 0``; sigmas are float32 there, so they are
    rounded to float32 here too before converting.
    """
    num_steps = _check_steps(num_steps)
    T = int(num_train_timesteps)
    shift = float(shift)
    s_min = shift_noise_level(torch.tensor(1.0 / T, dtype=torch.float32), shift).to(torch.float64)
    base = torch.linspace(1.0, float(s_min), num_steps, dtype=torch.float64)
    sigmas = shift_noise_level(base, shift).to(torch.float32).to(torch.float64)
    sigmas = torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])
    return 1.0 - sigmas


def karras_grid(
    path: AffinePath,
    num_steps: int,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float = 7.0,
) -> Tensor:
    """Karras et al.'s rho-spaced noise levels (digest §1.7) then ``sigma = 0``, mapped to ``t``.

    ``sigma_i = (sigma_max^{1/rho} + i/(N-1) (sigma_min^{1/rho} - sigma_max^{1/rho}))^rho`` for
    ``i = 0..N-1``. Sigmas are in the path's native unit (``path.t_from_sigma``: EDM sigma on an
    :class:`~diffusion.paths.EDMPath`, ``noise_coef/data_coef`` elsewhere). ``sigma_min`` /
    ``sigma_max`` default to the path's attributes of those names (EDMPath: 0.002 / 700, SVD).
    """
    num_steps = _check_steps(num_steps)
    if sigma_min is None:
        sigma_min = getattr(path, "sigma_min", None)
    if sigma_max is None:
        sigma_max = getattr(path, "sigma_max", None)
    if sigma_min is None or sigma_max is None:
        raise ValueError(f"karras_grid needs sigma_min and sigma_max for {path!r} (it has no defaults)")
    sigma_min, sigma_max = float(sigma_min), float(sigma_max)
    if not 0.0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    ramp = torch.linspace(0.0, 1.0, num_steps, dtype=torch.float64)  # [0.] when num_steps == 1
    inv_rho = 1.0 / rho
    sigmas = (sigma_max**inv_rho + ramp * (sigma_min**inv_rho - sigma_max**inv_rho)) ** rho
    t = path.t_from_sigma(sigmas)
    return torch.cat([t, torch.ones(1, dtype=torch.float64)])


def geometric_grid(
    path: AffinePath,
    num_steps: int,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
) -> Tensor:
    """Geometrically spaced noise levels ``sigma_max -> sigma_min`` (``N`` points) then ``sigma = 0``.

    ``sigma_i = sigma_max (sigma_min / sigma_max)^(i / (N - 1))``: the placement of diffusers'
    ``KarrasVeScheduler`` (the "Stochastic Karras VE" sampler of thesis 000, Ch. 5, §5.5.1), whose
    ``schedule`` is ``s_max^2 (s_min^2 / s_max^2)^(i/(N-1))`` for its own ``sigma_min`` / ``sigma_max``:
    the same grid with ``sigma_min = s_min^2`` and ``sigma_max = s_max^2`` here. Sigmas are in the
    path's native unit (``path.t_from_sigma``). On a :class:`~diffusion.paths.DiscreteDDPMPath`
    the defaults are the table's ends (SD 1.x: 0.0292 -> 14.61); elsewhere ``sigma_min`` /
    ``sigma_max`` default to the path's attributes of those names.
    """
    num_steps = _check_steps(num_steps)
    if isinstance(path, DiscreteDDPMPath):
        ends = path.sigma(path.t_from_timestep(torch.tensor([0.0, path.num_train_timesteps - 1.0], dtype=torch.float64)))
        sigma_min = float(ends[0]) if sigma_min is None else sigma_min
        sigma_max = float(ends[1]) if sigma_max is None else sigma_max
    sigma_min = getattr(path, "sigma_min", None) if sigma_min is None else sigma_min
    sigma_max = getattr(path, "sigma_max", None) if sigma_max is None else sigma_max
    if sigma_min is None or sigma_max is None:
        raise ValueError(f"geometric_grid needs sigma_min and sigma_max for {path!r} (it has no defaults)")
    sigma_min, sigma_max = float(sigma_min), float(sigma_max)
    if not 0.0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    if num_steps == 1:
        sigmas = torch.tensor([sigma_max], dtype=torch.float64)
    else:
        i = torch.arange(num_steps, dtype=torch.float64)
        sigmas = sigma_max * (sigma_min / sigma_max) ** (i / (num_steps - 1))
    t = path.t_from_sigma(sigmas)
    return torch.cat([t, torch.ones(1, dtype=torch.float64)])


def discrete_grid(
    path: DiscreteDDPMPath,
    num_steps: int,
    spacing: str = "leading",
    steps_offset: int = 0,
    final: str = "one",
    round_timesteps: bool = True,
    extra_point: bool = False,
) -> Tensor:
    """DDPM integer timesteps placed like diffusers' schedulers, mapped through ``path.t_from_timestep``.

    Spacings (``T = num_train_timesteps``, ``N = num_steps``), computed in numpy float64 with the
    same expressions diffusers uses, so ties at ``.5`` round the same way (``torch.linspace``
    lands on the other side of ``.5`` for some ``(T, N)``; issue 14):

    * ``leading``: ``k = (arange(N) * (T // N)).round()[::-1] + steps_offset`` (DDPM/DDIM default),
    * ``trailing``: ``k = round(arange(T, 0, -T/N)) - 1``,
    * ``linspace``: ``k = linspace(0, T - 1, N)[::-1]``, rounded unless ``round_timesteps=False``
      (DDIM/DDPM round; ``EulerDiscreteScheduler`` / ``HeunDiscreteScheduler`` keep fractional
      float32 steps, reproduced by casting to float32 as they do).

    ``extra_point=True`` is the placement of ``DPMSolverMultistepScheduler`` (and UniPC / DEIS):
    ``leading`` and ``linspace`` are built over ``N + 1`` points and the smallest is dropped
    (``leading`` then uses ``T // (N + 1)``); ``trailing`` is unchanged.

    ``final`` is where the last step lands: ``'one'`` is ``t = 1`` (``alpha_bar = 1``; DDIM
    ``set_alpha_to_one=True``, DDPM, Euler ``final_sigmas_type='zero'``), ``'first'`` is the
    first training step ``k = 0`` (DDIM ``set_alpha_to_one=False``, Euler ``'sigma_min'``).
    When the last timestep already is ``k = 0`` (``leading`` with ``steps_offset=0``, or
    ``linspace``) and ``final='first'``, the repeated end point is dropped: diffusers takes
    that step from ``alpha_bar_0`` to ``alpha_bar_0``, which leaves ``x`` unchanged (DDIM at any
    ``eta``: zero variance; Euler: ``dt = 0``), so the grid has ``N`` points (``N - 1`` steps,
    one network call fewer) and gives the same sample.
    """
    num_steps = _check_steps(num_steps)
    if spacing not in TIMESTEP_SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; valid names: {', '.join(TIMESTEP_SPACINGS)}")
    if final not in _FINALS:
        raise ValueError(f"unknown final {final!r}; valid names: {', '.join(_FINALS)}")
    T = int(path.num_train_timesteps)
    if num_steps > T:
        raise ValueError(f"num_steps={num_steps} exceeds num_train_timesteps={T}")
    points = num_steps + 1 if extra_point and spacing != "trailing" else num_steps
    if spacing == "leading":
        ks = (np.arange(0, points) * (T // points)).round()[::-1][:num_steps].astype(np.float64) + steps_offset
    elif spacing == "trailing":
        ks = np.round(np.arange(T, 0, -T / num_steps)).astype(np.float64) - 1.0
    else:
        ks = np.linspace(0, T - 1, points)[::-1][:num_steps]
        ks = ks.round() if round_timesteps else ks.astype(np.float32).astype(np.float64)
    if float(ks.max()) > T - 1 or float(ks.min()) < 0:
        raise ValueError(f"timesteps out of range [0, {T - 1}] (steps_offset={steps_offset})")
    k_t = torch.from_numpy(np.ascontiguousarray(ks))
    if final == "first" and float(ks[-1]) == 0.0 and len(ks) == 1:
        raise ValueError("discrete_grid: one step that starts at k = 0 and ends at k = 0 (final='first') moves nothing")
    if final == "one":
        end = torch.ones(1, dtype=torch.float64)
    elif float(ks[-1]) == 0.0:
        end = torch.zeros(0, dtype=torch.float64)  # k = 0 is already the last point (see above)
    else:
        end = path.t_from_timestep(torch.zeros(1, dtype=torch.float64))
    return torch.cat([path.t_from_timestep(k_t), end])

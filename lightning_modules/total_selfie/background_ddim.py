"""Background-preserving DDIM of Total Selfie (thesis 000, Ch. 3, supplement §3.5.4, Eq. 3.4).

At each of the ``T`` (= 50) DDIM steps from ``t`` to ``t - 1`` (the thesis counts ``t`` down from
``T``)::

    z_{t-1} = z^f_{t-1} * M_bar + z^b_{t-1} * (1 - M_bar)   if t > s T
    z_{t-1} = z^f_{t-1}                                     if t <= s T

``z^f_{t-1}`` is the inpainting model's DDIM step, ``z^b_{t-1}`` the background latent noised to the
level of ``t - 1`` by the forward process, ``M_bar`` the fine human mask dilated by 21 px and
``s = 0.4``: the background is locked during the first (noisy) 60 % of the steps and released for
the last 40 %, so shadows and contact regions can form.

Implementation: the suite's :class:`diffusion.samplers.DDIMSampler` is run one step at a time (its
constants planned once for the whole grid, then its own loop over one step; a DDIM step's constants
depend only on its two times, so the chain equals one DDIM run over the whole grid when nothing is
blended) and the blend is applied in
between. No sampler is re-implemented here.

Choices where the thesis is silent ([GAP]):

* ``t`` in Eq. 3.4 is the step counter of the ``T``-step DDIM chain: step ``i`` (0 = noisiest)
  has ``t = T - i``, so with ``T = 50, s = 0.4`` the first 30 steps are blended.
* ``z^b_{t-1}`` uses fresh Gaussian noise at every step (Blended Latent Diffusion's convention),
  unless ``background_noise`` is given (one fixed draw; the tests use this).
* Cost: per step the blend adds one noise draw, one fused ``a_t z_b + s_t eps`` and one masked select;
  the mask, the coefficients and the DDIM step constants of the whole grid are computed once per call
  (``benchmarks/perf_total_selfie.py`` measures the ratio against plain DDIM).
* The pixel mask is dilated with a square ``(2 * 21 + 1)`` max filter and brought to the latent grid
  with max pooling (a latent cell is foreground if any of its pixels is).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from diffusion.paths import AffinePath
from diffusion.samplers import DDIMSampler


def dilate_mask(mask: Tensor, pixels: int) -> Tensor:
    """Binary dilation of ``mask [B, 1, H, W]`` by ``pixels`` (square structuring element)."""
    if pixels < 0:
        raise ValueError(f"dilation must be >= 0 pixels, got {pixels}")
    mask = (mask > 0.5).float()
    if pixels == 0:
        return mask
    return F.max_pool2d(mask, kernel_size=2 * pixels + 1, stride=1, padding=pixels)


def latent_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """A pixel mask ``[B, 1, H, W]`` on a latent grid ``size``: a cell is 1 if any of its pixels is."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return (mask > 0.5).float()
    return (F.adaptive_max_pool2d((mask > 0.5).float(), size) > 0.5).float()


def blend_steps(num_steps: int, preserve_fraction: float) -> list[bool]:
    """For each DDIM step (0 = noisiest), whether Eq. 3.4 blends the background: ``T - i > s T``."""
    if not 0.0 <= preserve_fraction <= 1.0:
        raise ValueError(f"preserve_fraction s must be in [0, 1], got {preserve_fraction}")
    return [(num_steps - i) > preserve_fraction * num_steps for i in range(num_steps)]


def _whole_grid_plan(sampler: Any, denoiser: Any, path: AffinePath, ts: Tensor, steps: int) -> Optional[dict]:
    """The suite DDIM's per-step constants for the whole grid, or ``None`` (then one ``sample`` call per step).

    Calling ``sampler.sample`` on each two-point grid re-checks the grid and re-plans the constants every
    step (about 0.85 ms of host work per step on a CPU, far more than the blend itself); a DDIM step's
    constants depend only on its two times, so step ``i`` of the whole grid's plan is the same step.
    """
    if not isinstance(sampler, DDIMSampler) or sampler.init_noise != "unit":
        return None
    plan = sampler._plan(path, denoiser.prediction_type, sampler._check_grid(ts))
    if not all(hasattr(v, "__getitem__") and len(v) == steps for v in plan.values()):
        return None
    return plan


@torch.no_grad()
def background_preserving_ddim(
    denoiser: Any,
    path: AffinePath,
    noise: Tensor,
    grid: Tensor,
    background_latent: Tensor,
    foreground_mask: Tensor,
    preserve_fraction: float = 0.4,
    sampler: Optional[DDIMSampler] = None,
    generator: Optional[torch.Generator] = None,
    background_noise: Optional[Tensor] = None,
    on_step: Optional[Callable[[int, Tensor, Optional[Tensor]], None]] = None,
) -> Tensor:
    """DDIM over ``grid`` with the Eq. 3.4 blend (module docstring).

    Args:
        denoiser: ``(x_t, t) -> prediction`` with ``prediction_type`` (the guided inpainting model).
        path: the Gaussian path (the DDPM scaled-linear table of PbE).
        noise: the initial latent ``z_T``.
        grid: increasing times (``module.sampling_grid``), ``len(grid) - 1`` steps.
        background_latent: ``E(I_b)`` (scaled VAE latent), same shape as ``noise``.
        foreground_mask: ``M_bar`` on the latent grid, ``[B, 1, h, w]`` (1 = person, generated freely).
        preserve_fraction: ``s`` (0.4); ``s = 1`` never blends (plain DDIM).
        sampler: the suite's DDIM (``eta = 0`` by default).
        background_noise: a fixed noise for ``z^b``; ``None`` draws fresh noise every step.
        on_step: optional ``(i, z_{t-1}, z^b_{t-1} or None)`` observer after each step (tests, media).
    """
    sampler = sampler or DDIMSampler(eta=0.0)
    ts = torch.as_tensor(grid, dtype=torch.float64).cpu()
    steps = len(ts) - 1
    blends = blend_steps(steps, preserve_fraction)
    x = noise
    # Everything the blend needs is prepared once, not per step: the background latent in the sampler's
    # dtype, the forward-process coefficients of z^b at every t - 1 (host floats; the batch shares one
    # time), and the mask as a boolean selector when it is binary (the usual case: one `where` per step
    # instead of x * M + z^b * (1 - M)); a soft mask falls back to the weighted sum.
    background = background_latent.to(device=x.device, dtype=x.dtype)
    fixed = None if background_noise is None else background_noise.to(device=x.device, dtype=x.dtype)
    mask = foreground_mask.to(device=x.device, dtype=x.dtype)
    binary = bool(((mask == 0) | (mask == 1)).all())
    select = mask > 0.5 if binary else None
    data_coef = [float(v) for v in path.data_coef(ts[1:]).tolist()]
    noise_coef = [float(v) for v in path.noise_coef(ts[1:]).tolist()]
    plan = _whole_grid_plan(sampler, denoiser, path, ts, steps)
    t_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    for i in range(steps):
        if plan is not None:  # step i of the plan of the whole grid (the same constants, planned once)
            x = sampler._run(denoiser, x, {k: v[i : i + 1] for k, v in plan.items()}, generator, False, t_dtype)
        else:
            x = sampler.sample(denoiser, path, x, ts[i : i + 2], generator=generator)
        z_b = None
        if blends[i]:
            eps = fixed
            if eps is None:
                eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            z_b = torch.mul(eps, noise_coef[i]).add_(background, alpha=data_coef[i])  # path.add_noise at t - 1
            x = torch.where(select, x, z_b) if binary else torch.lerp(z_b, x, mask)
        if on_step is not None:
            on_step(i, x, z_b)
    return x


__all__ = ["background_preserving_ddim", "blend_steps", "dilate_mask", "latent_mask"]

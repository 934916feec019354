"""Restoration samplers over a conditional and an unconditional denoiser (thesis 001 Ch. 8, §8.3.2-§8.3.4).

Every sampler here runs the DDPM ancestral update of the core (:class:`diffusion.samplers.DDPMSampler`'s
per-step constants ``x <- p x + q eps + r z``, Eq. 8.6 / 8.11) and the core's prediction conversions
(:func:`diffusion.predictions.conversion_coefficients`: ``x0_hat = A x_t + B eps``); none re-derives
the schedule. They share one call::

    sampler.sample(cond, prior, path, noise, grid, reference=..., generator=...)

``cond`` is the conditional denoiser ``f_phi(x0, ., t)`` with its condition bound, ``prior`` the
unconditional ``eps_theta`` (or the nonparametric variant's null-condition pass), both
``(x_t, t) -> eps`` with ``prediction_type = 'epsilon'``; ``reference`` is the condition image at
model size for the projection baselines. ``clip_denoised`` (default on, [ext] guided-diffusion's sampling
default, used by SR3 / ILVR / Bi-Noising code alike) clips every data prediction to [-1, 1]: Eq. 8.9's
``y0_tilde`` and the data prediction inside each ancestral step, whose posterior mean is then
``x_coef x_t + d_coef clip(x0_hat)`` (the same constants as the core's folded step).

* :class:`BiNoisingSampler` (§8.3.4, Eqs. 8.9-8.11), per reverse step ``t -> s``:
  1. ``y0_tilde = (y_t - sqrt(1 - abar_t) f_phi(x0, y_t, t)) / sqrt(abar_t)`` (Eq. 8.9), clipped to
     [-1, 1] (``clip_denoised``; [ext] guided-diffusion's ``clip_denoised=True``);
  2. re-noise with *fresh* noise to the same level: ``y'_t = sqrt(abar_t) y0_tilde + sqrt(1 - abar_t) eps``
     (Eq. 8.10);
  3. one unconditional ancestral step from ``y'_t`` with ``eps_theta(y'_t, t)`` (Eq. 8.11).
  Two network evaluations per bi-noising step. ``binoise_steps`` chooses where it applies
  ([GAP] the thesis does not define Table 8.4's "w/o full guidance" or "alternative guidance"):
  ``"all"`` (the final setting), ``"alternate"`` (every other step, starting with the first: our
  reading of "alternative guidance" as alternating conditional and re-noised unconditional
  steps), a fraction ``0 < f <= 1`` (the first ``ceil(f n)`` steps, the noisy end where the
  conditional model's errors start; our reading of "w/o full guidance", whose time 2.3 s between
  SR3's 1.6 s and the full 3.1 s fits about half the steps), or ``"none"`` (= SR3). Steps
  without bi-noising are plain conditional ancestral steps (one evaluation).
* :class:`SR3Sampler` (Eq. 8.6): plain conditional ancestral sampling (LRDP).
* :class:`ILVRSampler` (Eqs. 8.7-8.8, Choi et al.): an unconditional ancestral step, then
  ``y_s <- y_s + phi_N(ref_s) - phi_N(y_s)`` with ``ref_s = q(ref at level s)`` and ``phi_N`` the
  low-pass "bicubic down by N, bicubic up" filter; ``N = 1`` makes ``phi`` the identity, so every
  state is replaced by the reference's noised version.
* :class:`ReplacementSampler` (Eq. 8.8, Lugmayr et al. RePaint without resampling): the known part
  of the noised reference replaces that of the state after each unconditional step; the known
  part is a pixel mask (``known='mask'``) or, for colourisation, the grey component
  ``mean_c`` (``known='gray'``: ``y <- y - mean_c(y) + mean_c(ref_s)``).
* :class:`CFGSampler` (Ho & Salimans, Table 8.4's classifier-free column): conditional ancestral
  sampling with ``eps = eps_null + s (eps_cond - eps_null)`` (``s = 1 + w``); two evaluations.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .paths import AffinePath
from .predictions import conversion_coefficients
from .samplers import DDPMSampler, Sampler, _progress

__all__ = [
    "RESTORATION_SAMPLERS",
    "BiNoisingSampler",
    "CFGSampler",
    "CountingDenoiser",
    "ILVRSampler",
    "ReplacementSampler",
    "RestorationSampler",
    "SR3Sampler",
    "binoise_schedule",
    "build_restoration_sampler",
    "low_pass",
]

Denoiser = Callable[[Tensor, Tensor], Tensor]


class CountingDenoiser:
    """Wrap a denoiser and count its calls (the NFE the paper's running time is made of)."""

    def __init__(self, denoiser: Denoiser) -> None:
        self.denoiser = denoiser
        self.prediction_type = getattr(denoiser, "prediction_type", "epsilon")
        self.calls = 0

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        self.calls += 1
        return self.denoiser(x_t, t)


def binoise_schedule(binoise_steps: Union[str, float], num_steps: int) -> list[bool]:
    """Which of ``num_steps`` reverse steps (noisiest first) use bi-noising (module docstring)."""
    if isinstance(binoise_steps, str):
        key = binoise_steps.strip().lower()
        if key == "all":
            return [True] * num_steps
        if key == "none":
            return [False] * num_steps
        if key == "alternate":
            return [i % 2 == 0 for i in range(num_steps)]
        try:
            binoise_steps = float(key)
        except ValueError:
            raise ValueError(f"binoise_steps={binoise_steps!r}: use 'all', 'alternate', 'none' or a fraction in (0, 1]") from None
    fraction = float(binoise_steps)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"binoise_steps={binoise_steps!r}: a fraction must lie in (0, 1]")
    first = math.ceil(fraction * num_steps)
    return [i < first for i in range(num_steps)]


def low_pass(x: Tensor, factor: int) -> Tensor:
    """ILVR's ``phi_N``: bicubic (antialiased) downsampling by ``factor`` and bicubic upsampling back."""
    if factor == 1:
        return x
    h, w = x.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(f"ILVR factor N={factor} must divide the image size {h}x{w}")
    small = F.interpolate(x, size=(h // factor, w // factor), mode="bicubic", align_corners=False, antialias=True)
    return F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)


class _Plan:
    """Host-side float constants of every reverse step ``ts[i] -> ts[i + 1]``."""

    def __init__(self, path: AffinePath, ts: Tensor, variance_type: str) -> None:
        ddpm = DDPMSampler(variance_type)._plan(path, "epsilon", ts)  # noqa: SLF001 - the core's own constants
        self.t, self.p, self.q, self.r = ddpm["t"], ddpm["p"], ddpm["q"], ddpm["r"]
        A, B, _, _ = conversion_coefficients("epsilon", ts[:-1], path)
        self.A, self.B = [float(v) for v in A], [float(v) for v in B]
        # p = x_coef + d_coef A, q = d_coef B: the posterior mean's weights on x_t and on the predicted data
        self.d = [q / b for q, b in zip(self.q, self.B)]
        self.xc = [p - d * a for p, d, a in zip(self.p, self.d, self.A)]
        self.a = [float(v) for v in path.data_coef(ts[:-1])]
        self.b = [float(v) for v in path.noise_coef(ts[:-1])]
        self.a_next = [float(v) for v in path.data_coef(ts[1:])]
        self.b_next = [float(v) for v in path.noise_coef(ts[1:])]

    def __len__(self) -> int:
        return len(self.p)


class RestorationSampler(ABC):
    """Shared driver: grid checks, no-grad, the ancestral constants; subclasses write ``_step``."""

    name = "restoration"
    needs_prior = True
    needs_reference = False

    def __init__(self, variance_type: str = "fixed_large", clip_denoised: bool = True) -> None:
        if variance_type not in DDPMSampler._VARIANCES:  # noqa: SLF001
            raise ValueError(f"variance_type={variance_type!r} is not one of {list(DDPMSampler._VARIANCES)}")  # noqa: SLF001
        self.variance_type, self.clip_denoised = variance_type, bool(clip_denoised)

    def evaluations_per_step(self, num_steps: int) -> list[int]:
        """Network evaluations of each reverse step."""
        return [1] * num_steps

    def num_evaluations(self, grid: Tensor) -> int:
        return sum(self.evaluations_per_step(len(grid) - 1))

    @torch.no_grad()
    def sample(self, cond: Optional[Denoiser], prior: Optional[Denoiser], path: AffinePath, noise: Tensor, grid: Tensor,
               *, reference: Optional[Tensor] = None, mask: Optional[Tensor] = None,
               generator: Optional[torch.Generator] = None) -> Tensor:
        if self.needs_prior and prior is None:
            raise ValueError(f"the {self.name} sampler needs the unconditional prior eps_theta (model.prior or nonparametric)")
        if self.needs_reference and reference is None:
            raise ValueError(f"the {self.name} sampler needs the condition image as reference")
        if reference is not None and tuple(reference.shape) != tuple(noise.shape):
            raise ValueError(f"{self.name}: reference shape {tuple(reference.shape)} differs from the sample shape {tuple(noise.shape)}")
        ts = Sampler._check_grid(grid)  # noqa: SLF001 - the core's grid validation
        plan = _Plan(path, ts, self.variance_type)
        x = noise
        t_dtype = torch.float64 if noise.dtype == torch.float64 else torch.float32
        for i in _progress(range(len(plan)), False, self.name):  # the predict bar counts these steps
            t = torch.full((x.shape[0],), plan.t[i], device=x.device, dtype=t_dtype)
            x = self._step(i, x, t, plan, cond, prior, reference, mask, generator)
        return x

    def ancestral(self, i: int, x: Tensor, eps: Tensor, plan: _Plan, generator: Optional[torch.Generator]) -> Tensor:
        """Eq. 8.6 / 8.11: ``x_s = p x_t + q eps + r z`` (the core DDPM step); with ``clip_denoised`` the posterior
        mean is taken at the clipped data prediction (guided-diffusion's ``p_sample(clip_denoised=True)``)."""
        if self.clip_denoised:
            data = torch.add(x * plan.A[i], eps, alpha=plan.B[i]).clamp_(-1.0, 1.0)
            out = torch.add(x * plan.xc[i], data, alpha=plan.d[i])
        else:
            out = torch.add(x * plan.p[i], eps, alpha=plan.q[i])
        if plan.r[i] != 0.0:
            out = out.add_(_randn(x, generator), alpha=plan.r[i])
        return out

    def noised_reference(self, i: int, reference: Tensor, plan: _Plan, generator: Optional[torch.Generator]) -> Tensor:
        """The reference at the next level ``s``: ``sqrt(abar_s) ref + sqrt(1 - abar_s) z``."""
        out = reference * plan.a_next[i]
        if plan.b_next[i] != 0.0:
            out = out + plan.b_next[i] * _randn(reference, generator)
        return out

    @abstractmethod
    def _step(self, i: int, x: Tensor, t: Tensor, plan: _Plan, cond: Optional[Denoiser], prior: Optional[Denoiser],
              reference: Optional[Tensor], mask: Optional[Tensor], generator: Optional[torch.Generator]) -> Tensor:
        """One reverse step ``ts[i] -> ts[i + 1]``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(variance_type={self.variance_type!r})"


def _randn(x: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


class SR3Sampler(RestorationSampler):
    """Plain conditional ancestral sampling (Eq. 8.6, SR3 / LRDP)."""

    name = "sr3"
    needs_prior = False

    def _step(self, i, x, t, plan, cond, prior, reference, mask, generator):  # type: ignore[no-untyped-def]
        return self.ancestral(i, x, cond(x, t), plan, generator)


class BiNoisingSampler(RestorationSampler):
    """The bi-noising sampler of §8.3.4 (module docstring); ``binoise_steps`` picks the steps."""

    name = "bi_noising"
    needs_prior = False  # checked in sample(): binoise_steps='none' runs without a prior

    def __init__(self, binoise_steps: Union[str, float] = "all", variance_type: str = "fixed_large",
                 clip_denoised: bool = True) -> None:
        super().__init__(variance_type, clip_denoised)
        binoise_schedule(binoise_steps, 2)  # validate early
        self.binoise_steps = binoise_steps
        self._schedule: list[bool] = []

    def evaluations_per_step(self, num_steps: int) -> list[int]:
        return [2 if on else 1 for on in binoise_schedule(self.binoise_steps, num_steps)]

    def sample(self, cond, prior, path, noise, grid, *, reference=None, mask=None, generator=None):  # type: ignore[no-untyped-def]
        self._schedule = binoise_schedule(self.binoise_steps, len(grid) - 1)
        if prior is None and any(self._schedule):
            raise ValueError("the bi_noising sampler needs the unconditional prior eps_theta (model.prior or nonparametric)")
        return super().sample(cond, prior, path, noise, grid, reference=reference, mask=mask, generator=generator)

    def implicit_prediction(self, i: int, x: Tensor, t: Tensor, plan: _Plan, cond: Denoiser) -> Tensor:
        """Eq. 8.9: ``y0_tilde = A_t y_t + B_t f_phi(x0, y_t, t)`` (clipped)."""
        y0 = torch.add(x * plan.A[i], cond(x, t), alpha=plan.B[i])
        return y0.clamp(-1.0, 1.0) if self.clip_denoised else y0

    def renoise(self, i: int, y0: Tensor, plan: _Plan, generator: Optional[torch.Generator]) -> Tensor:
        """Eq. 8.10: ``y'_t = sqrt(abar_t) y0_tilde + sqrt(1 - abar_t) eps`` with fresh ``eps``."""
        return torch.add(y0 * plan.a[i], _randn(y0, generator), alpha=plan.b[i])

    def _step(self, i, x, t, plan, cond, prior, reference, mask, generator):  # type: ignore[no-untyped-def]
        if not self._schedule[i]:
            return self.ancestral(i, x, cond(x, t), plan, generator)
        renoised = self.renoise(i, self.implicit_prediction(i, x, t, plan, cond), plan, generator)
        return self.ancestral(i, renoised, prior(renoised, t), plan, generator)  # Eq. 8.11

    def __repr__(self) -> str:
        return f"BiNoisingSampler(binoise_steps={self.binoise_steps!r}, variance_type={self.variance_type!r})"


class ILVRSampler(RestorationSampler):
    """ILVR (Eqs. 8.7-8.8): unconditional step + low-pass residual replacement with factor ``N``."""

    name = "ilvr"
    needs_reference = True

    def __init__(self, factor: int = 4, variance_type: str = "fixed_large", clip_denoised: bool = True) -> None:
        super().__init__(variance_type, clip_denoised)
        if int(factor) < 1:
            raise ValueError(f"ILVR factor N must be >= 1, got {factor}")
        self.factor = int(factor)

    def _step(self, i, x, t, plan, cond, prior, reference, mask, generator):  # type: ignore[no-untyped-def]
        proposal = self.ancestral(i, x, prior(x, t), plan, generator)
        ref = self.noised_reference(i, reference, plan, generator)
        return proposal + low_pass(ref, self.factor) - low_pass(proposal, self.factor)


class ReplacementSampler(RestorationSampler):
    """RePaint-style known-part replacement (Eq. 8.8) after each unconditional step."""

    name = "replacement"
    needs_reference = True

    def __init__(self, known: str = "gray", variance_type: str = "fixed_large", clip_denoised: bool = True) -> None:
        super().__init__(variance_type, clip_denoised)
        if known not in ("gray", "mask"):
            raise ValueError(f"replacement known={known!r} is not one of ['gray', 'mask']")
        self.known = known

    def _step(self, i, x, t, plan, cond, prior, reference, mask, generator):  # type: ignore[no-untyped-def]
        proposal = self.ancestral(i, x, prior(x, t), plan, generator)
        ref = self.noised_reference(i, reference, plan, generator)
        if self.known == "gray":
            return proposal - proposal.mean(1, keepdim=True) + ref.mean(1, keepdim=True)
        if mask is None:
            raise ValueError("replacement known='mask' needs a mask (1 = known pixel) in the batch")
        return mask * ref + (1 - mask) * proposal


class CFGSampler(RestorationSampler):
    """Classifier-free guidance of the nonparametric model: ``eps_null + s (eps_cond - eps_null)``."""

    name = "cfg"

    def __init__(self, guidance_scale: float = 1.0, variance_type: str = "fixed_large", clip_denoised: bool = True) -> None:
        super().__init__(variance_type, clip_denoised)
        self.guidance_scale = float(guidance_scale)

    def evaluations_per_step(self, num_steps: int) -> list[int]:
        return [2] * num_steps

    def _step(self, i, x, t, plan, cond, prior, reference, mask, generator):  # type: ignore[no-untyped-def]
        e_null = prior(x, t)
        eps = torch.add(e_null, cond(x, t) - e_null, alpha=self.guidance_scale)
        return self.ancestral(i, x, eps, plan, generator)


RESTORATION_SAMPLERS: dict[str, type[RestorationSampler]] = {
    cls.name: cls for cls in (BiNoisingSampler, SR3Sampler, ILVRSampler, ReplacementSampler, CFGSampler)
}


def build_restoration_sampler(name: str, *, binoise_steps: Union[str, float] = "all", ilvr_factor: int = 4,
                              replacement_known: str = "gray", guidance_scale: float = 1.0,
                              variance_type: str = "fixed_large", clip_denoised: bool = True) -> RestorationSampler:
    """A sampler of :data:`RESTORATION_SAMPLERS` by name with the module's options."""
    common = {"variance_type": variance_type, "clip_denoised": clip_denoised}
    if name == "bi_noising":
        return BiNoisingSampler(binoise_steps, **common)
    if name == "sr3":
        return SR3Sampler(**common)
    if name == "ilvr":
        return ILVRSampler(ilvr_factor, **common)
    if name == "replacement":
        return ReplacementSampler(replacement_known, **common)
    if name == "cfg":
        return CFGSampler(guidance_scale, **common)
    raise ValueError(f"unknown restoration sampler {name!r}; valid names: {', '.join(RESTORATION_SAMPLERS)}")

"""Samplers over any affine path (thesis 000, Ch. 2: Eq. 2.3 Euler, Eq. 2.18 SDE; digest §1.7 [EXT]).

A *denoiser* is any callable ``denoiser(x_t, t) -> Tensor`` with ``t`` of shape ``[B]`` and an
attribute ``prediction_type`` (see :mod:`diffusion.predictions`). Every sampler has

    ``sample(denoiser, path, noise, grid, generator=None, progress=False) -> Tensor``

where ``grid`` is a 1-D tensor of times increasing from (near) 0 = noise to 1 = data
(:mod:`diffusion.grids`). The denoiser is evaluated at grid points before the last.

Implementation rule: every conversion of :mod:`diffusion.predictions` is linear in
``(x_t, prediction)`` at fixed ``t``, so each update folds into per-step constants
``x <- p x + q out (+ r z)`` computed once, in float64 on the host, before the loop.
Inside the loop there is no host synchronisation and no branching on tensor values:
one network call and two or three fused elementwise operations per evaluation.

Initial state (``init_noise``, [GAP]): ``'unit'`` starts from ``x = noise`` (diffusers'
DDPM/DDIM pipelines; on a VP path this has the marginal's variance for unit-variance
data); ``'noise_coef'`` starts from ``noise_coef(grid[0]) * noise`` (the noise part of the path
at ``grid[0]``; equals diffusers' Euler schedulers with ``linspace``/``trailing`` spacing and
EDM's ``sigma_max * noise``). On the straight path from ``t = 0`` both are ``noise``.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Callable, Iterable, Iterator, Protocol, Sequence

import torch
from torch import Tensor

from .paths import AffinePath
from .predictions import conversion_coefficients, validate_prediction_type

__all__ = [
    "Denoiser",
    "Sampler",
    "EulerSampler",
    "HeunSampler",
    "DDIMSampler",
    "DDPMSampler",
    "EulerAncestralSampler",
    "EulerMaruyamaSampler",
    "EDMSampler",
    "KarrasVESampler",
    "SAMPLERS",
    "build_sampler",
]

_INIT_NOISE = ("unit", "noise_coef")


class Denoiser(Protocol):
    """``(x_t, t[B]) -> Tensor`` with a declared ``prediction_type``."""

    prediction_type: str

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor: ...


#: Callables ``listener(sampler_name, step_index, num_steps)`` told after every sampler step
#: (``callbacks.sampler_progress`` uses this for a progress bar in sampler steps).
STEP_LISTENERS: list[Callable[[str, int, int], None]] = []


def _announce(iterable: Sequence[int], desc: str) -> Iterator[int]:
    total = len(iterable)
    for index in iterable:
        yield index
        for listener in list(STEP_LISTENERS):
            listener(desc, index, total)


def _progress(iterable: Sequence[int], enabled: bool, desc: str) -> Iterable[int]:
    total = len(iterable)
    if STEP_LISTENERS:
        iterable = _announce(iterable, desc)
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with the stack
        return iterable
    return tqdm(iterable, desc=desc, leave=False, total=total)


class _Coefs:
    """Path and conversion coefficients at a vector of times (float64, host)."""

    def __init__(self, path: AffinePath, prediction_type: str, t: Tensor) -> None:
        self.t = t
        self.a = path.data_coef(t)
        self.b = path.noise_coef(t)
        self.a_dot = path.data_coef_deriv(t)
        self.b_dot = path.noise_coef_deriv(t)
        self.log_snr = path.log_snr(t)
        # data_hat = A x + B out ; noise_hat = C x + D out
        self.A, self.B, self.C, self.D = conversion_coefficients(prediction_type, t, path)

    def velocity(self) -> tuple[Tensor, Tensor]:
        """``(Vx, Vo)`` with ODE velocity ``dx/dt = Vx x + Vo out`` (Eq. 2.11 drift)."""
        vx = self.a_dot * self.A + self.b_dot * self.C
        vo = self.a_dot * self.B + self.b_dot * self.D
        return vx, vo


def _posterior_fraction(lam_t: Tensor, lam_s: Tensor) -> Tensor:
    """``1 - SNR_t / SNR_s`` for ``t`` noisier than ``s``: the fresh-noise share of a Gaussian step."""
    return (-torch.expm1(lam_t - lam_s)).clamp(0.0, 1.0)


def _floats(x: Tensor) -> list[float]:
    return [float(v) for v in x.tolist()]


class Sampler(ABC):
    """Common driver: grid checks, initial state, grad mode, progress, step-constant planning.

    Args:
        init_noise: ``'unit'`` or ``'noise_coef'`` (module docstring).
        enable_grad: run under autograd (default off: sampling is inference).
    """

    name: str = "sampler"

    def __init__(self, init_noise: str = "unit", enable_grad: bool = False) -> None:
        if init_noise not in _INIT_NOISE:
            raise ValueError(f"unknown init_noise {init_noise!r}; valid names: {', '.join(_INIT_NOISE)}")
        self.init_noise = init_noise
        self.enable_grad = bool(enable_grad)

    # --- public ------------------------------------------------------------------------
    def sample(
        self,
        denoiser: Denoiser,
        path: AffinePath,
        noise: Tensor,
        grid: Tensor,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> Tensor:
        """Integrate from ``grid[0]`` to ``grid[-1]`` starting from ``noise`` (see module docstring)."""
        prediction_type = getattr(denoiser, "prediction_type", None)
        if prediction_type is None:
            raise ValueError("the denoiser has no 'prediction_type' attribute")
        validate_prediction_type(prediction_type)
        ts = self._check_grid(grid)
        t_dtype = torch.float64 if noise.dtype == torch.float64 else torch.float32
        ctx = torch.enable_grad() if self.enable_grad else torch.no_grad()
        with ctx:
            if self.init_noise == "unit":
                x = noise
            else:
                x = noise * float(path.noise_coef(ts[:1])[0])
            steps = self._plan(path, prediction_type, ts)
            return self._run(denoiser, x, steps, generator, progress, t_dtype)

    def num_evaluations(self, grid: Tensor) -> int:
        """Network evaluations one ``sample`` call makes on this grid."""
        return len(grid) - 1

    # --- to implement -----------------------------------------------------------------
    @abstractmethod
    def _plan(self, path: AffinePath, prediction_type: str, ts: Tensor) -> dict:
        """Per-step constants from the float64 host grid ``ts``."""

    @abstractmethod
    def _run(
        self,
        denoiser: Denoiser,
        x: Tensor,
        plan: dict,
        generator: torch.Generator | None,
        progress: bool,
        t_dtype: torch.dtype,
    ) -> Tensor:
        """The loop."""

    # --- helpers ------------------------------------------------------------------------
    @staticmethod
    def _check_grid(grid: Tensor) -> Tensor:
        ts = torch.as_tensor(grid).detach().to(device="cpu", dtype=torch.float64)
        if ts.ndim != 1 or ts.numel() < 2:
            raise ValueError(f"grid must be a 1-D tensor with at least 2 times, got shape {tuple(ts.shape)}")
        if not bool((ts[1:] > ts[:-1]).all()):
            raise ValueError("grid must be strictly increasing (t = 0 noise -> t = 1 data)")
        if float(ts[0]) < 0.0 or float(ts[-1]) > 1.0:
            raise ValueError(f"grid must lie in [0, 1], got [{float(ts[0])}, {float(ts[-1])}]")
        return ts

    @staticmethod
    def _times(t: Tensor, x: Tensor, t_dtype: torch.dtype) -> Tensor:
        """Evaluation times as a ``[M, B]`` device tensor (rows are the denoiser's ``t``)."""
        return t.to(device=x.device, dtype=t_dtype)[:, None].expand(-1, x.shape[0]).contiguous()

    @staticmethod
    def _randn(x: Tensor, generator: torch.Generator | None) -> Tensor:
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)

    @staticmethod
    def _lands_on_data(ts: Tensor) -> bool:
        return float(ts[-1]) >= 1.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(init_noise={self.init_noise!r})"


class _AffineStepSampler(Sampler):
    """Samplers whose step is ``x <- p x + q out + r z`` (Euler, DDIM, DDPM, ancestral, SDE)."""

    def _run(self, denoiser, x, plan, generator, progress, t_dtype):
        times = self._times(plan["t"], x, t_dtype)
        p, q, r = plan["p"], plan["q"], plan["r"]
        for i in _progress(range(len(p)), progress, self.name):
            out = denoiser(x, times[i])
            x = torch.add(x * p[i], out, alpha=q[i])
            if r[i] != 0.0:
                x = x.add_(self._randn(x, generator), alpha=r[i])
        return x


class EulerSampler(_AffineStepSampler):
    """Euler's method on the probability-flow ODE in ``t`` of the given path (Eq. 2.3).

    ``x_{t + dt} = x_t + v(x_t, t) dt`` with ``v = data_coef' data_hat + noise_coef' noise_hat``
    (the ODE velocity of Eq. 2.11; the network output itself for ``velocity`` models).
    Note that Euler is not invariant to the path: Euler in ``t`` on a DDPM path differs from
    diffusers' ``EulerDiscreteScheduler`` (Euler in sigma), which is :class:`EDMSampler` with
    ``second_order=False``. On the straight path it equals deterministic DDIM.
    """

    name = "euler"

    def _plan(self, path, prediction_type, ts):
        c = _Coefs(path, prediction_type, ts[:-1])
        dt = ts[1:] - ts[:-1]
        vx, vo = c.velocity()
        return {"t": ts[:-1], "p": _floats(1.0 + dt * vx), "q": _floats(dt * vo), "r": [0.0] * len(dt)}


class DDIMSampler(_AffineStepSampler):
    """DDIM (Song et al.) with ``eta`` on any affine path (digest §1.7).

    ``x_s = data_coef_s data_hat + sqrt(noise_coef_s^2 - sig^2) noise_hat + sig z`` with
    ``sig^2 = eta^2 noise_coef_s^2 (1 - SNR_t/SNR_s)`` (the DDPM posterior variance; equal to
    diffusers' ``alpha_bar`` formula on VP paths). ``eta = 0`` is the deterministic DDIM ODE,
    ``eta = 1`` ancestral sampling.
    """

    name = "ddim"

    def __init__(self, eta: float = 0.0, init_noise: str = "unit", enable_grad: bool = False) -> None:
        super().__init__(init_noise, enable_grad)
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        self.eta = float(eta)

    def _noise_std(self, b_next: Tensor, frac: Tensor) -> Tensor:
        return self.eta * b_next * torch.sqrt(frac)

    def _plan(self, path, prediction_type, ts):
        c = _Coefs(path, prediction_type, ts[:-1])
        a_n, b_n = path.data_coef(ts[1:]), path.noise_coef(ts[1:])
        frac = _posterior_fraction(c.log_snr, path.log_snr(ts[1:]))
        std = self._noise_std(b_n, frac)
        dir_coef = torch.sqrt((b_n * b_n - std * std).clamp_min(0.0))
        p = a_n * c.A + dir_coef * c.C
        q = a_n * c.B + dir_coef * c.D
        return {"t": ts[:-1], "p": _floats(p), "q": _floats(q), "r": _floats(std)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eta={self.eta}, init_noise={self.init_noise!r})"


class EulerAncestralSampler(DDIMSampler):
    """k-diffusion / diffusers Euler-ancestral, written on any affine path.

    In VE form: step to ``sigma_down`` with the Euler (sigma) update, then add ``sigma_up z`` with
    ``sigma_up = min(sigma_s, eta sigma_s sqrt(1 - sigma_s^2/sigma_t^2))``. Since Euler in sigma is
    exact DDIM, this equals :class:`DDIMSampler` with the same ``eta`` (``sigma_up`` clamped).
    """

    name = "euler_ancestral"

    def __init__(self, eta: float = 1.0, init_noise: str = "unit", enable_grad: bool = False) -> None:
        super().__init__(eta, init_noise, enable_grad)

    def _noise_std(self, b_next: Tensor, frac: Tensor) -> Tensor:
        return torch.minimum(b_next, self.eta * b_next * torch.sqrt(frac))


class DDPMSampler(_AffineStepSampler):
    """Ancestral sampling from the DDPM posterior ``q(x_s | x_t, data_hat)`` on any affine path.

    With ``frac = 1 - SNR_t/SNR_s``: mean ``= (data_coef_t noise_coef_s^2)/(data_coef_s noise_coef_t^2) x_t
    + data_coef_s frac data_hat``; variance ``'fixed_small'`` ``= noise_coef_s^2 frac`` (the posterior)
    or ``'fixed_large'`` ``= noise_coef_t^2 frac`` (the forward step's ``beta``), as diffusers'
    ``DDPMScheduler`` (digest §1.7 [EXT]).
    """

    name = "ddpm"
    _VARIANCES = ("fixed_small", "fixed_large")

    def __init__(
        self, variance_type: str = "fixed_small", init_noise: str = "unit", enable_grad: bool = False
    ) -> None:
        super().__init__(init_noise, enable_grad)
        if variance_type not in self._VARIANCES:
            raise ValueError(
                f"unknown variance_type {variance_type!r}; valid names: {', '.join(self._VARIANCES)}"
            )
        self.variance_type = variance_type

    def _plan(self, path, prediction_type, ts):
        c = _Coefs(path, prediction_type, ts[:-1])
        a_s, b_s = path.data_coef(ts[1:]), path.noise_coef(ts[1:])
        frac = _posterior_fraction(c.log_snr, path.log_snr(ts[1:]))
        x_coef = c.a * b_s * b_s / (a_s * c.b * c.b)
        d_coef = a_s * frac
        var = (b_s * b_s if self.variance_type == "fixed_small" else c.b * c.b) * frac
        var = torch.where(b_s > 0, var, torch.zeros_like(var))  # landing on data: no noise
        p = x_coef + d_coef * c.A
        q = d_coef * c.B
        return {"t": ts[:-1], "p": _floats(p), "q": _floats(q), "r": _floats(torch.sqrt(var))}


class EulerMaruyamaSampler(_AffineStepSampler):
    """Euler-Maruyama on the SDE of Eq. 2.18: ``dx = [v + g^2 score] dt + sqrt(2) g dW``.

    ``v`` is the ODE velocity and ``score = -noise_hat / noise_coef`` (digest §1.6), both from the
    denoiser, so any model (flow matching included) can be sampled with it.
    ``diffusion_scale`` is ``g``: a constant or a function of ``t`` (``[M] -> [M]``). [GAP] Ch. 2
    leaves ``g`` free; default 1. With ``deterministic_final_step`` (default) the last step is
    a plain Euler ODE step, so the output carries no fresh noise.
    """

    name = "euler_maruyama"

    def __init__(
        self,
        diffusion_scale: float | Callable[[Tensor], Tensor] = 1.0,
        deterministic_final_step: bool = True,
        init_noise: str = "unit",
        enable_grad: bool = False,
    ) -> None:
        super().__init__(init_noise, enable_grad)
        self.diffusion_scale = diffusion_scale
        self.deterministic_final_step = bool(deterministic_final_step)

    def _plan(self, path, prediction_type, ts):
        t = ts[:-1]
        c = _Coefs(path, prediction_type, t)
        dt = ts[1:] - t
        if callable(self.diffusion_scale):
            g = torch.as_tensor(self.diffusion_scale(t.clone()), dtype=torch.float64).expand_as(t).clone()
        else:
            g = torch.full_like(t, float(self.diffusion_scale))
        if self.deterministic_final_step:
            g[-1] = 0.0
        vx, vo = c.velocity()
        g2_over_b = g * g / c.b
        p = 1.0 + dt * (vx - g2_over_b * c.C)
        q = dt * (vo - g2_over_b * c.D)
        r = g * torch.sqrt(2.0 * dt)
        return {"t": t, "p": _floats(p), "q": _floats(q), "r": _floats(r)}


class HeunSampler(Sampler):
    """Heun's second-order method on the probability-flow ODE in ``t`` (the Runge-Kutta option of §2.1).

    A step to ``t = 1`` (data) is a plain Euler step (Karras' rule for the last step), so the
    network is never evaluated on clean data: ``2N - 1`` evaluations on such a grid.
    """

    name = "heun"

    def num_evaluations(self, grid: Tensor) -> int:
        n = len(grid) - 1
        return 2 * n - (1 if float(grid[-1]) >= 1.0 else 0)

    def _plan(self, path, prediction_type, ts):
        n = len(ts) - 1
        c = _Coefs(path, prediction_type, ts[:-1])
        cn = _Coefs(path, prediction_type, ts[1:])
        dt = ts[1:] - ts[:-1]
        vx, vo = c.velocity()
        vxn, von = cn.velocity()
        second = [True] * n
        if self._lands_on_data(ts):
            second[-1] = False
        return {
            "t": ts[:-1], "t_next": ts[1:], "dt": _floats(dt), "half": _floats(0.5 * dt),
            "vx": _floats(vx), "vo": _floats(vo), "vxn": _floats(vxn), "von": _floats(von), "second": second,
        }

    def _run(self, denoiser, x, plan, generator, progress, t_dtype):
        times = self._times(plan["t"], x, t_dtype)
        times_next = self._times(plan["t_next"], x, t_dtype)
        dt, half = plan["dt"], plan["half"]
        vx, vo, vxn, von = plan["vx"], plan["vo"], plan["vxn"], plan["von"]
        for i in _progress(range(len(dt)), progress, self.name):
            out = denoiser(x, times[i])
            v1 = torch.add(x * vx[i], out, alpha=vo[i])
            x_euler = torch.add(x, v1, alpha=dt[i])
            if not plan["second"][i]:
                x = x_euler
                continue
            out2 = denoiser(x_euler, times_next[i])
            v2 = torch.add(x_euler * vxn[i], out2, alpha=von[i])
            x = torch.add(x, v1.add_(v2), alpha=half[i])
        return x


class EDMSampler(Sampler):
    """Karras et al.'s EDM sampler (Algorithm 2): Heun in sigma with optional churn ([EXT], Ch. 4's sampler).

    Works on any path through its VE form ``x / data_coef`` with ``sigma = noise_coef/data_coef``;
    the churn window ``[s_tmin, s_tmax]`` is in the path's native sigma (EDM sigma on an
    ``EDMPath``). ``gamma_i = min(churn / N, sqrt(2) - 1)`` inside the window: the state is
    re-noised to ``sigma_hat = sigma (1 + gamma)`` (time ``t_hat``) before the step.
    ``second_order=False`` gives the Euler (sigma) variant, i.e. diffusers'
    ``EulerDiscreteScheduler``. The step to ``sigma = 0`` is first order. Needs a finite
    sigma at every evaluated time (no ``t = 0`` on the straight path). It starts from
    ``noise_coef(grid[0]) * noise`` by default (EDM's ``x = sigma_max * noise`` in VE form).
    Churn that would exceed the path's largest sigma (``EDMPath``: ``sigma_max``) is clamped.
    """

    name = "edm"

    def __init__(
        self,
        churn: float = 0.0,
        s_tmin: float = 0.0,
        s_tmax: float = float("inf"),
        s_noise: float = 1.0,
        second_order: bool = True,
        init_noise: str = "noise_coef",
        enable_grad: bool = False,
    ) -> None:
        super().__init__(init_noise, enable_grad)
        if churn < 0:
            raise ValueError(f"churn must be >= 0, got {churn}")
        self.churn, self.s_tmin, self.s_tmax, self.s_noise = float(churn), float(s_tmin), float(s_tmax), float(s_noise)
        self.second_order = bool(second_order)

    def num_evaluations(self, grid: Tensor) -> int:
        n = len(grid) - 1
        if not self.second_order:
            return n
        return 2 * n - (1 if float(grid[-1]) >= 1.0 else 0)

    def _plan(self, path, prediction_type, ts):
        n = len(ts) - 1
        t, t_next = ts[:-1], ts[1:]
        sigma = path.sigma(t)
        if not bool(torch.isfinite(sigma).all()):
            raise ValueError("EDMSampler needs a finite sigma at every evaluated time; start the grid above t = 0")
        native = path.sigma_from_t(t)
        in_window = (native >= self.s_tmin) & (native <= self.s_tmax)
        gamma = torch.where(in_window, torch.full_like(t, min(self.churn / n, math.sqrt(2.0) - 1.0)), torch.zeros_like(t))
        sigma_hat = sigma * (1.0 + gamma)
        t_hat = torch.where(gamma > 0, path.t_from_log_snr(-2.0 * torch.log(sigma_hat)), t)
        a, a_hat = path.data_coef(t), path.data_coef(t_hat)
        sigma_hat = torch.where(gamma > 0, path.sigma(t_hat), sigma)  # consistent with t_hat
        churn_x = a_hat / a
        churn_z = a_hat * torch.sqrt((sigma_hat**2 - sigma**2).clamp_min(0.0)) * self.s_noise
        c = _Coefs(path, prediction_type, t_hat)
        cn = _Coefs(path, prediction_type, t_next)
        a_n, b_n = path.data_coef(t_next), path.noise_coef(t_next)
        h = 0.5 * (b_n - a_n * sigma_hat)  # a_n (sigma_next - sigma_hat) / 2
        base = a_n / a_hat
        # Euler: x_e = (base + 2hC) x_hat + 2hD out1 ; Heun: x = x_e + h (C_n x_e + D_n out2 - C x_hat - D out1)
        second = [self.second_order] * n
        if self._lands_on_data(ts):
            second[-1] = False
        return {
            "t": t_hat, "t_next": t_next, "churn": [bool(g > 0) for g in gamma.tolist()],
            "churn_x": _floats(churn_x), "churn_z": _floats(churn_z),
            "ex": _floats(base + 2.0 * h * c.C), "eo": _floats(2.0 * h * c.D),
            "h": _floats(h), "C": _floats(c.C), "D": _floats(c.D), "Cn": _floats(cn.C), "Dn": _floats(cn.D),
            "second": second,
        }

    def _run(self, denoiser, x, plan, generator, progress, t_dtype):
        times = self._times(plan["t"], x, t_dtype)
        times_next = self._times(plan["t_next"], x, t_dtype)
        ex, eo, h = plan["ex"], plan["eo"], plan["h"]
        C, D, Cn, Dn = plan["C"], plan["D"], plan["Cn"], plan["Dn"]
        for i in _progress(range(len(ex)), progress, self.name):
            if plan["churn"][i]:
                x = torch.add(x * plan["churn_x"][i], self._randn(x, generator), alpha=plan["churn_z"][i])
            out = denoiser(x, times[i])
            x_euler = torch.add(x * ex[i], out, alpha=eo[i])
            if not plan["second"][i]:
                x = x_euler
                continue
            out2 = denoiser(x_euler, times_next[i])
            # h * (n2 - n1) with n = C x + D out
            corr = torch.add(x_euler * Cn[i], out2, alpha=Dn[i])
            corr.sub_(x * C[i]).sub_(out, alpha=D[i])
            x = torch.add(x_euler, corr, alpha=h[i])
        return x

    def __repr__(self) -> str:
        return (
            f"EDMSampler(churn={self.churn}, s_tmin={self.s_tmin}, s_tmax={self.s_tmax}, "
            f"s_noise={self.s_noise}, second_order={self.second_order}, init_noise={self.init_noise!r})"
        )


class KarrasVESampler(EDMSampler):
    """Stochastic Karras VE (Karras et al. 2022, Alg. 2 as diffusers' ``KarrasVeScheduler`` runs it).

    Thesis 000, Ch. 5, §5.5.1 generates the training pairs with "Stochastic Karras VE, T = 20".
    This is :class:`EDMSampler` (Heun with churn, first-order last step) with diffusers'
    ``KarrasVeScheduler`` defaults: ``s_churn = 80``, churn window ``[s_min, s_max] = [0.05, 50]``,
    ``s_noise = 1.007``; use it on :func:`diffusion.grids.geometric_grid` (that scheduler's sigma
    placement). Its pipeline draws the churn noise at every step even when ``gamma = 0``; here it
    is drawn only when churn applies, so the random streams agree while the window holds every
    step down to the first un-churned one (sigmas decrease, so that is the tail): tested against
    diffusers in ``tests/test_portrait_editing_samplers.py``.
    """

    name = "karras_ve"

    def __init__(
        self,
        churn: float = 80.0,
        s_tmin: float = 0.05,
        s_tmax: float = 50.0,
        s_noise: float = 1.007,
        second_order: bool = True,
        init_noise: str = "noise_coef",
        enable_grad: bool = False,
    ) -> None:
        super().__init__(churn, s_tmin, s_tmax, s_noise, second_order, init_noise, enable_grad)


SAMPLERS: dict[str, type[Sampler]] = {
    "euler": EulerSampler,
    "heun": HeunSampler,
    "ddim": DDIMSampler,
    "ddpm": DDPMSampler,
    "euler_ancestral": EulerAncestralSampler,
    "euler_maruyama": EulerMaruyamaSampler,
    "edm": EDMSampler,
    "karras_ve": KarrasVESampler,
}


def build_sampler(name: str, **kwargs) -> Sampler:
    """Instantiate a sampler by registry name (``SAMPLERS``); unknown names raise ``ValueError``."""
    try:
        cls = SAMPLERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown sampler {name!r}; valid names: {', '.join(SAMPLERS)}") from None
    return cls(**kwargs)

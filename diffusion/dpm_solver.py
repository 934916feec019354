"""DPM-Solver++ and DPM-Solver (Lu et al. 2022), multistep, first or second order, as core ``Sampler``s.

Needed by the LDM scaling study (thesis 001, Ch. 2, Fig. 2.11: DDIM vs DDPM vs DPM-Solver++ (2nd
order), at most 20 steps) and CoDi's fast-solver rows (Table 5.2). Works on any VP-like affine path
with the data prediction ``D = data_hat(x_t, t)`` and half-log-SNR ``lambda = log(data_coef / noise_coef)``:

    x_{i+1} = (noise_coef_{i+1} / noise_coef_i) x_i + data_coef_{i+1} (1 - exp(-h)) D_i,    h = lambda_{i+1} - lambda_i

with ``D_i = x0_i`` (first order) or ``x0_i + (x0_i - x0_{i-1}) / (2 r)``, ``r = h_{i-1} / h`` (the
2M "midpoint" form). As diffusers' ``DPMSolverMultistepScheduler`` (``algorithm_type='dpmsolver++'``,
``solver_order=2``, ``final_sigmas_type='zero'``, ``lower_order_final=True``), the first step is first
order and so is the final step when it lands on data (``noise_coef = 0``), where the update is
``x = D``. A test checks agreement with diffusers on a DDPM path.

:class:`DPMSolverSampler` is the original DPM-Solver in its noise-prediction form (diffusers'
``algorithm_type='dpmsolver'``; CoDi's "+ DPM Solver" row, Table 5.2) with ``E`` the implied noise:

    x_{i+1} = (data_coef_{i+1} / data_coef_i) x_i - noise_coef_{i+1} (exp(h) - 1) E_i

with ``E_i = eps_i`` (first order, = DDIM) or ``eps_i + (eps_i - eps_{i-1}) / (2 r)`` (2M). Written
as ``noise_coef_{i+1} exp(h) = data_coef_{i+1} noise_coef_i / data_coef_i`` the step stays finite
when it lands on data, where it is ``x = data_coef_{i+1} x0_i``.

:func:`build_any_sampler` is the one name lookup of the core samplers plus these two.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .paths import AffinePath
from .predictions import conversion_coefficients
from .samplers import Sampler, _floats, _progress


class DPMSolverPlusPlusSampler(Sampler):
    """DPM-Solver++ multistep of order 1 or 2 (module docstring).

    Args:
        order: 1 (equals DDIM) or 2 (2M, the thesis's setting).
        lower_order_final: use first order on the final step (always done when it lands on data).
        init_noise / enable_grad: as :class:`diffusion.samplers.Sampler`.
    """

    name = "dpm_solver++"

    def __init__(self, order: int = 2, lower_order_final: bool = True, init_noise: str = "unit",
                 enable_grad: bool = False) -> None:
        super().__init__(init_noise, enable_grad)
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order}")
        self.order = int(order)
        self.lower_order_final = bool(lower_order_final)

    def _plan(self, path: AffinePath, prediction_type: str, ts: Tensor) -> dict:
        t = ts[:-1]
        A, B, _, _ = conversion_coefficients(prediction_type, t, path)
        a, s = path.data_coef(ts), path.noise_coef(ts)
        n = len(t)
        p, q, c = [], [], []
        lam = [math.log(float(a[i]) / float(s[i])) if float(s[i]) > 0 else math.inf for i in range(n + 1)]
        for i in range(n):
            if float(s[i + 1]) == 0.0:
                p.append(0.0)
                q.append(float(a[i + 1]))
                exp_neg_h = 0.0
            else:
                exp_neg_h = math.exp(-(lam[i + 1] - lam[i]))
                p.append(float(s[i + 1]) / float(s[i]))
                q.append(float(a[i + 1]) * (1.0 - exp_neg_h))
            final = i == n - 1
            first_order = (self.order == 1 or i == 0 or float(s[i + 1]) == 0.0
                           or (final and self.lower_order_final and n < 15))
            if first_order:
                c.append(0.0)
            else:
                h, h_prev = lam[i + 1] - lam[i], lam[i] - lam[i - 1]
                c.append(0.5 * h / h_prev)
        return {"t": t, "A": _floats(A), "B": _floats(B), "p": p, "q": q, "c": c}

    def _run(self, denoiser, x, plan, generator, progress, t_dtype):
        times = self._times(plan["t"], x, t_dtype)
        prev = None
        for i in _progress(range(len(plan["p"])), progress, self.name):
            out = denoiser(x, times[i])
            x0 = torch.add(x * plan["A"][i], out, alpha=plan["B"][i])
            d = x0 if plan["c"][i] == 0.0 or prev is None else torch.add(x0, x0 - prev, alpha=plan["c"][i])
            x = torch.add(x * plan["p"][i], d, alpha=plan["q"][i])
            prev = x0
        return x

    def __repr__(self) -> str:
        return f"DPMSolverPlusPlusSampler(order={self.order}, lower_order_final={self.lower_order_final})"


class DPMSolverSampler(DPMSolverPlusPlusSampler):
    """DPM-Solver (noise-prediction form) multistep of order 1 or 2 (module docstring)."""

    name = "dpm_solver"

    def _plan(self, path: AffinePath, prediction_type: str, ts: Tensor) -> dict:
        plan = super()._plan(path, prediction_type, ts)  # the grid checks, x0 coefficients and orders
        a, s = path.data_coef(ts), path.noise_coef(ts)
        p, q = [], []
        for i in range(len(ts) - 1):
            a0, a1, s0, s1 = float(a[i]), float(a[i + 1]), float(s[i]), float(s[i + 1])
            p.append(a1 / a0)
            q.append(-(a1 * s0 / a0 - s1))  # -noise_coef_{i+1} (exp(h) - 1)
        plan.update(p=p, q=q, a=_floats(a[:-1]), s=_floats(s[:-1]))
        return plan

    def _run(self, denoiser, x, plan, generator, progress, t_dtype):
        times = self._times(plan["t"], x, t_dtype)
        prev = None
        for i in _progress(range(len(plan["p"])), progress, self.name):
            out = denoiser(x, times[i])
            x0 = torch.add(x * plan["A"][i], out, alpha=plan["B"][i])
            eps = (x - plan["a"][i] * x0) / plan["s"][i]
            d = eps if plan["c"][i] == 0.0 or prev is None else torch.add(eps, eps - prev, alpha=plan["c"][i])
            x = torch.add(x * plan["p"][i], d, alpha=plan["q"][i])
            prev = eps
        return x

    def __repr__(self) -> str:
        return f"DPMSolverSampler(order={self.order}, lower_order_final={self.lower_order_final})"


#: names of the two DPM-Solvers (with the aliases the sweeps accept)
DPM_SOLVERS = {"dpm_solver++": DPMSolverPlusPlusSampler, "dpmpp_2m": DPMSolverPlusPlusSampler,
               "dpm_solver_pp": DPMSolverPlusPlusSampler, "dpm_solver": DPMSolverSampler}


def build_any_sampler(name: str, **kwargs):
    """A core sampler of :data:`diffusion.samplers.SAMPLERS` or one of :data:`DPM_SOLVERS` by name."""
    if name in DPM_SOLVERS:
        return DPM_SOLVERS[name](**kwargs)
    from .samplers import SAMPLERS, build_sampler

    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid names: {', '.join([*SAMPLERS, *DPM_SOLVERS])}")
    return build_sampler(name, **kwargs)


__all__ = ["DPM_SOLVERS", "DPMSolverPlusPlusSampler", "DPMSolverSampler", "build_any_sampler"]

"""Consistency-model multistep sampling (Song et al. 2023, Alg. 1) as a core ``Sampler``.

Generic (used by CoDi, thesis 001 Ch. 5, and its consistency-distillation baseline; any
consistency/distilled model fits). At each grid time the denoiser's clean estimate
``x0 = data_hat(x_t, t)`` is taken; unless it is the last evaluation, the state is re-noised to
the next grid time with fresh noise: ``x <- data_coef(t') x0 + noise_coef(t') z``. The result is
the last clean estimate. ``grid`` follows the core convention (increasing, ``t = 0`` noise); the
denoiser is evaluated at ``grid[:-1]`` so a K-step run takes a grid of K + 1 points (the last
point is not evaluated, as for every sampler of ``diffusion.samplers``).
"""
from __future__ import annotations

import torch
from torch import Tensor

from diffusion.paths import AffinePath
from diffusion.predictions import conversion_coefficients
from diffusion.samplers import Sampler, _floats, _progress


class ConsistencyMultistepSampler(Sampler):
    """``x0 = f(x_t, t)``; ``x_{t'} = a(t') x0 + b(t') z``; return the final ``x0``."""

    name = "consistency"

    def _plan(self, path: AffinePath, prediction_type: str, ts: Tensor) -> dict:
        t = ts[:-1]
        A, B, _, _ = conversion_coefficients(prediction_type, t, path)
        a_next = path.data_coef(t[1:])
        b_next = path.noise_coef(t[1:])
        return {"t": t, "A": _floats(A), "B": _floats(B), "a": _floats(a_next), "b": _floats(b_next)}

    def _run(self, denoiser, x, plan, generator, progress, t_dtype):
        times = self._times(plan["t"], x, t_dtype)
        steps = len(plan["A"])
        x0 = x
        for i in _progress(range(steps), progress, self.name):
            out = denoiser(x, times[i])
            x0 = torch.add(x * plan["A"][i], out, alpha=plan["B"][i])
            if i < steps - 1:
                x = torch.add(x0 * plan["a"][i], self._randn(x, generator), alpha=plan["b"][i])
        return x0


__all__ = ["ConsistencyMultistepSampler"]

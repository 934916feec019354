"""Ch. 5 samplers against diffusers on the same inputs (code checks with constructed denoisers).

* Stochastic Karras VE (pair generation, §5.5.1) = the core ``KarrasVESampler`` on ``geometric_grid``
  versus diffusers' ``KarrasVeScheduler`` driven by hand the way its pipeline does (VE form).
* UniPC (MCDM inference, §5.5.3) = ``DiffusersSchedulerSampler`` versus diffusers' usual loop.
"""
from __future__ import annotations

import math

import pytest
import torch

from diffusion.grids import geometric_grid
from diffusion.paths import DiscreteDDPMPath
from diffusion.samplers import KarrasVESampler, build_sampler
from lightning_modules.components.diffusers_sampler import DiffusersSchedulerSampler


class _Eps:
    """A smooth epsilon 'network': depends on x and on t, so scheduler placement errors show."""

    prediction_type = "epsilon"

    def __init__(self, path: DiscreteDDPMPath) -> None:
        self.path = path
        self.calls = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        k = self.path.network_time(t.double()).float().reshape(-1, 1, 1, 1)
        return 0.4 * torch.tanh(x) + 0.1 * torch.sin(k / 150.0) * x.mean(dim=(1, 2, 3), keepdim=True)


def test_karras_ve_matches_diffusers_scheduler():
    from diffusers import KarrasVeScheduler

    path = DiscreteDDPMPath()
    steps, s_min, s_max = 8, 0.03, 8.0
    eps = _Eps(path)
    noise = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    ours = KarrasVESampler().sample(eps, path, noise, geometric_grid(path, steps, s_min, s_max),
                                    generator=torch.Generator().manual_seed(5))

    sched = KarrasVeScheduler(sigma_min=math.sqrt(s_min), sigma_max=math.sqrt(s_max), s_churn=80.0,
                              s_min=0.05, s_max=50.0, s_noise=1.007)
    sched.set_timesteps(steps)
    gen = torch.Generator().manual_seed(5)

    def model(y: torch.Tensor, sigma: float) -> torch.Tensor:  # diffusers' output: (x0 - y) / sigma = -eps
        t = path.t_from_sigma(torch.tensor([float(sigma)], dtype=torch.float64))
        a = float(path.data_coef(t))
        return -eps(a * y, t.float().expand(y.shape[0]))

    y = float(sched.schedule[steps - 1]) * noise
    for t in sched.timesteps.tolist():
        sigma = float(sched.schedule[t])
        sigma_prev = float(sched.schedule[t - 1]) if t > 0 else 0.0
        y_hat, sigma_hat = sched.add_noise_to_input(y, sigma, generator=gen)
        out = sched.step(model(y_hat, sigma_hat), sigma_hat, sigma_prev, y_hat)
        if sigma_prev != 0:
            out = sched.step_correct(model(out.prev_sample, sigma_prev), sigma_hat, sigma_prev, y_hat,
                                     out.prev_sample, out.derivative)
        y = out.prev_sample
    assert torch.allclose(ours, y, atol=2e-4, rtol=1e-4), float((ours - y).abs().max())
    assert build_sampler("karras_ve").num_evaluations(geometric_grid(path, steps)) == 2 * steps - 1


@pytest.mark.parametrize("steps", [20, 5])
def test_unipc_wrapper_matches_diffusers_loop(steps):
    from diffusers import UniPCMultistepScheduler

    path = DiscreteDDPMPath()
    eps = _Eps(path)
    noise = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(1))
    sampler = DiffusersSchedulerSampler("UniPCMultistepScheduler")
    ours = sampler.sample(eps, path, noise, steps)

    sched = UniPCMultistepScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    sched.set_timesteps(steps)
    x = noise * sched.init_noise_sigma
    for k in sched.timesteps:
        kk = k.float().reshape(1, 1, 1, 1)
        e = 0.4 * torch.tanh(x) + 0.1 * torch.sin(kk / 150.0) * x.mean(dim=(1, 2, 3), keepdim=True)
        x = sched.step(e, k, x).prev_sample
    assert torch.allclose(ours, x, atol=1e-4, rtol=1e-4), float((ours - x).abs().max())
    assert eps.calls == steps


def test_unipc_partial_run_starts_mid_schedule():
    path = DiscreteDDPMPath()
    eps = _Eps(path)
    sampler = DiffusersSchedulerSampler()
    x0 = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(2))
    ts = sampler.timesteps(path, 20)
    z = sampler.add_noise(path, x0, torch.randn_like(x0), int(ts[10]))
    out = sampler.run(eps, path, z, 20, start=10, stop=11)
    assert eps.calls == 1 and out.shape == z.shape and not torch.equal(out, z)
    with pytest.raises(ValueError, match="outside"):
        sampler.run(eps, path, z, 20, start=20)

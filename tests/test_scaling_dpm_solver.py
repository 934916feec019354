"""DPM-Solver++ (diffusion/dpm_solver.py, for the Ch. 2 sampler sweep) agrees with diffusers."""
from __future__ import annotations

import pytest
import torch

from diffusion.dpm_solver import DPMSolverPlusPlusSampler
from diffusion.paths import DiscreteDDPMPath


class _Toy:
    """A fixed nonlinear 'network' of (x, timestep) so both solvers see the same model."""

    def __init__(self, path: DiscreteDDPMPath) -> None:
        self.path = path
        self.prediction_type = "v_prediction"

    def net(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return torch.tanh(0.7 * x) + 0.001 * k.view(-1, 1, 1, 1) * x.mean(dim=(1, 2, 3), keepdim=True)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.path.network_time(t))


@pytest.mark.parametrize("steps", [5, 10, 20])
def test_dpm_solver_pp_2m_matches_diffusers(steps: int) -> None:
    from diffusers import DPMSolverMultistepScheduler

    path = DiscreteDDPMPath("scaled_linear", 0.00085, 0.012, 1000)
    toy = _Toy(path)
    noise = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    sched = DPMSolverMultistepScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                        prediction_type="v_prediction", solver_order=2, algorithm_type="dpmsolver++",
                                        timestep_spacing="linspace", final_sigmas_type="zero")
    sched.set_timesteps(steps)
    x = noise.clone()
    for k in sched.timesteps:
        out = toy.net(x, torch.full((2,), float(k), dtype=torch.float64))
        x = sched.step(out, k, x).prev_sample
    ks = sched.timesteps.to(torch.float64)
    grid = torch.cat([path.t_from_timestep(ks), torch.ones(1, dtype=torch.float64)])
    ours = DPMSolverPlusPlusSampler().sample(toy, path, noise.clone(), grid)
    assert torch.allclose(ours, x.to(ours.dtype), atol=1e-4, rtol=1e-4), (ours - x).abs().max()


def test_first_order_dpm_solver_equals_ddim() -> None:
    from diffusion.samplers import DDIMSampler

    path = DiscreteDDPMPath()
    toy = _Toy(path)
    noise = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    grid = torch.cat([path.t_from_timestep(torch.tensor([999.0, 666.0, 333.0, 0.0], dtype=torch.float64)),
                      torch.ones(1, dtype=torch.float64)])
    a = DPMSolverPlusPlusSampler(order=1).sample(toy, path, noise, grid)
    b = DDIMSampler().sample(toy, path, noise, grid)
    assert torch.allclose(a, b, atol=1e-8)


@pytest.mark.parametrize("steps", [4, 10])
def test_dpm_solver_2m_noise_form_matches_diffusers(steps: int) -> None:
    """DPM-Solver (noise form, CoDi's '+ DPM Solver' row) against diffusers' algorithm_type='dpmsolver'."""
    from diffusers import DPMSolverMultistepScheduler

    from diffusion.dpm_solver import DPMSolverSampler, build_any_sampler

    path = DiscreteDDPMPath("scaled_linear", 0.00085, 0.012, 1000)
    toy = _Toy(path)
    noise = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    sched = DPMSolverMultistepScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                        prediction_type="v_prediction", solver_order=2, algorithm_type="dpmsolver",
                                        timestep_spacing="linspace", final_sigmas_type="sigma_min")
    sched.set_timesteps(steps)
    x = noise.clone()
    for k in sched.timesteps:
        x = sched.step(toy.net(x, torch.full((2,), float(k), dtype=torch.float64)), k, x).prev_sample
    # diffusers' noise form ends at the smallest training sigma (DDPM step 0), not at the data
    ks = torch.cat([sched.timesteps.to(torch.float64), torch.zeros(1, dtype=torch.float64)])
    grid = path.t_from_timestep(ks)
    ours = build_any_sampler("dpm_solver").sample(toy, path, noise.clone(), grid)
    assert isinstance(build_any_sampler("dpm_solver"), DPMSolverSampler)
    assert torch.allclose(ours, x.to(ours.dtype), atol=1e-4, rtol=1e-4), (ours - x).abs().max()
    with pytest.raises(ValueError, match="dpm_solver"):
        build_any_sampler("dpm-solver")

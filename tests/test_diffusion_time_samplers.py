"""Training-time samplers over t and sampling grids (thesis 000, Ch. 2 §2.2.2; digest §1.7 [EXT])."""
from __future__ import annotations

import math

import pytest
import torch

from diffusion.grids import discrete_grid, flow_match_grid, karras_grid, shifted_grid, uniform_grid
from diffusion.paths import DiscreteDDPMPath, EDMPath, RectifiedFlowPath
from diffusion.time_samplers import (
    CubicTimeSampler,
    DiscreteTimeSampler,
    EDMLogNormalTimeSampler,
    LogitNormalTimeSampler,
    ShiftedTimeSampler,
    UniformTimeSampler,
)

DDPM = DiscreteDDPMPath()
EDM = EDMPath()
SAMPLERS = {
    "uniform": UniformTimeSampler(),
    "discrete": DiscreteTimeSampler(DDPM),
    "logit_normal": LogitNormalTimeSampler(),
    "shifted": ShiftedTimeSampler(UniformTimeSampler(), 3.0),
    "edm": EDMLogNormalTimeSampler(EDM),
    "cubic": CubicTimeSampler(),
    "cubic_discrete": CubicTimeSampler(DDPM),
}
N = 20000


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_shape_range_and_generator_determinism(name: str) -> None:
    sampler = SAMPLERS[name]
    t1 = sampler(N, "cpu", torch.Generator().manual_seed(1))
    t2 = sampler(N, "cpu", torch.Generator().manual_seed(1))
    assert t1.shape == (N,) and t1.dtype == torch.float32
    assert torch.equal(t1, t2)
    assert float(t1.min()) >= 0.0 and float(t1.max()) <= 1.0


def test_discrete_sampler_hits_integer_steps() -> None:
    t = SAMPLERS["discrete"](N, "cpu", torch.Generator().manual_seed(0))
    k = DDPM.timestep_from_t(t.double())
    assert torch.allclose(k, k.round(), atol=1e-3)
    assert int(k.round().min()) == 0 and int(k.round().max()) == 999


def test_logit_normal_and_shift_statistics() -> None:
    gen = torch.Generator().manual_seed(0)
    t = LogitNormalTimeSampler(mean=0.5, std=0.8)(N, "cpu", gen)
    logit = torch.log(t / (1 - t))
    assert abs(float(logit.mean()) - 0.5) < 0.03 and abs(float(logit.std()) - 0.8) < 0.03
    # shift > 1 moves mass to noise (small t): median of the shifted uniform is 1 - 3*0.5/(1+2*0.5) = 0.25
    ts = SAMPLERS["shifted"](N, "cpu", torch.Generator().manual_seed(0))
    assert abs(float(ts.median()) - 0.25) < 0.02


def test_edm_log_normal_matches_sigma_distribution() -> None:
    t = SAMPLERS["edm"](N, "cpu", torch.Generator().manual_seed(0))
    log_sigma = torch.log(EDM.sigma_from_t(t.double()))
    assert abs(float(log_sigma.mean()) + 1.2) < 0.05 and abs(float(log_sigma.std()) - 1.2) < 0.05


def test_cubic_is_biased_to_noise() -> None:
    t = SAMPLERS["cubic"](N, "cpu", torch.Generator().manual_seed(0))
    # P(t < 1/8) = P(u < 1/2) = 1/2
    assert abs(float((t < 0.125).float().mean()) - 0.5) < 0.02
    k = DDPM.timestep_from_t(SAMPLERS["cubic_discrete"](N, "cpu", torch.Generator().manual_seed(0)).double())
    assert float((k > 500).float().mean()) > 0.75


# --- grids -----------------------------------------------------------------------------------
def test_uniform_and_shifted_grids() -> None:
    g = uniform_grid(4)
    assert torch.allclose(g, torch.tensor([0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
    assert torch.allclose(shifted_grid(4, 1.0), g)
    s = 1 - shifted_grid(4, 3.0)
    base = 1 - g
    assert torch.allclose(s, 3 * base / (1 + 2 * base))


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_match_grid_reproduces_diffusers(shift: float) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(12)
    assert torch.allclose(1 - flow_match_grid(12, shift), sched.sigmas.double(), atol=1e-7)


@pytest.mark.parametrize(
    "scheduler,spacing,offset,n",
    [
        ("DDIMScheduler", "leading", 0, 10),
        ("DDIMScheduler", "leading", 1, 50),
        ("DDIMScheduler", "trailing", 0, 30),
        ("DDIMScheduler", "linspace", 0, 7),
        ("DDPMScheduler", "leading", 0, 20),
        ("DDPMScheduler", "trailing", 0, 12),
        ("EulerDiscreteScheduler", "linspace", 0, 9),
    ],
)
def test_discrete_grid_reproduces_diffusers_timesteps(scheduler: str, spacing: str, offset: int, n: int) -> None:
    import diffusers

    sched = getattr(diffusers, scheduler)(timestep_spacing=spacing, steps_offset=offset)
    sched.set_timesteps(n)
    round_ts = scheduler != "EulerDiscreteScheduler"
    grid = discrete_grid(DDPM, n, spacing, steps_offset=offset, round_timesteps=round_ts)
    assert torch.allclose(DDPM.timestep_from_t(grid[:-1]), sched.timesteps.double(), atol=1e-3)
    assert float(grid[-1]) == 1.0
    assert float(discrete_grid(DDPM, n, spacing, steps_offset=offset, final="first")[-1]) == pytest.approx(0.999)


def test_karras_grid() -> None:
    g = karras_grid(EDM, 5)
    sig = EDM.sigma_from_t(g)
    rho = 7
    ramp = torch.linspace(0, 1, 5, dtype=torch.float64)
    expected = (700 ** (1 / rho) + ramp * (0.002 ** (1 / rho) - 700 ** (1 / rho))) ** rho
    assert torch.allclose(sig[:-1], expected, rtol=1e-10) and float(sig[-1]) == 0.0
    assert bool((g[1:] > g[:-1]).all())
    # on a non-EDM path sigma means noise_coef / data_coef
    rf = RectifiedFlowPath()
    g2 = karras_grid(rf, 4, 0.01, 50.0)
    assert math.isclose(float(rf.sigma(g2[:1])[0]), 50.0, rel_tol=1e-9)


def test_bad_grid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="'quadratic'"):
        discrete_grid(DDPM, 10, "quadratic")
    with pytest.raises(ValueError, match="'last'"):
        discrete_grid(DDPM, 10, "leading", final="last")
    with pytest.raises(ValueError):
        uniform_grid(0)

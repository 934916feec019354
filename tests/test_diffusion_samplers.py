"""Samplers: agreement with diffusers' schedulers, special cases and exact Gaussian checks.

Thesis 000, Ch. 2: Euler (Eq. 2.3), SDE (Eq. 2.18), scheduler swapping (§2.2.1); DDIM/DDPM/EDM
update rules from digest §1.7 [EXT], checked here against diffusers on one fixed random UNet.
"""
from __future__ import annotations

import math

import pytest
import torch

from diffusion.denoisers import NetworkDenoiser
from diffusion.grids import discrete_grid, flow_match_grid, karras_grid, uniform_grid
from diffusion.paths import AffinePath, CosinePath, DiscreteDDPMPath, EDMPath, RectifiedFlowPath
from diffusion.predictions import from_data_and_noise
from diffusion.samplers import (
    SAMPLERS,
    DDIMSampler,
    DDPMSampler,
    EDMSampler,
    EulerAncestralSampler,
    EulerMaruyamaSampler,
    EulerSampler,
    build_sampler,
)
from diffusion.time_warp import PathSwappedDenoiser, time_warp

SCHEDULE = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
DDPM_PATH = DiscreteDDPMPath("scaled_linear", 0.00085, 0.012)
STEPS = 10
TOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP spin contention on shared 2-core machines."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def unet():
    from diffusers import UNet2DModel

    torch.manual_seed(1234)
    net = UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    ).eval()
    return net


@pytest.fixture(scope="module")
def noise() -> torch.Tensor:
    return torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(7))


def _run_diffusers(sched, unet, x, generator=None, step_kwargs=None, scale_input=False) -> torch.Tensor:
    with torch.no_grad():
        for k in sched.timesteps:
            inp = sched.scale_model_input(x, k) if scale_input else x
            x = sched.step(unet(inp, k).sample, k, x, generator=generator, **(step_kwargs or {})).prev_sample
    return x


# --- agreement with diffusers ----------------------------------------------------------------
@pytest.mark.parametrize(
    "eta,prediction_type,spacing,offset,set_alpha_to_one",
    [
        (0.0, "epsilon", "leading", 0, True),
        (1.0, "epsilon", "leading", 0, True),
        (0.0, "v_prediction", "trailing", 0, True),
        (0.0, "sample", "leading", 1, False),
        (0.5, "epsilon", "leading", 0, True),
    ],
)
def test_ddim_matches_diffusers(unet, noise, eta, prediction_type, spacing, offset, set_alpha_to_one) -> None:
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(
        clip_sample=False, prediction_type=prediction_type, timestep_spacing=spacing,
        steps_offset=offset, set_alpha_to_one=set_alpha_to_one, **SCHEDULE,
    )
    sched.set_timesteps(STEPS)
    ref = _run_diffusers(sched, unet, noise.clone(), torch.Generator().manual_seed(3), {"eta": eta})
    grid = discrete_grid(DDPM_PATH, STEPS, spacing, steps_offset=offset, final="one" if set_alpha_to_one else "first")
    ours = DDIMSampler(eta=eta).sample(
        NetworkDenoiser(unet, DDPM_PATH, prediction_type), DDPM_PATH, noise, grid, torch.Generator().manual_seed(3)
    )
    assert (ours - ref).abs().max() <= TOL


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
def test_ddpm_matches_diffusers(unet, noise, variance_type) -> None:
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(clip_sample=False, variance_type=variance_type, **SCHEDULE)
    sched.set_timesteps(STEPS)
    ref = _run_diffusers(sched, unet, noise.clone(), torch.Generator().manual_seed(5))
    ours = DDPMSampler(variance_type).sample(
        NetworkDenoiser(unet, DDPM_PATH, "epsilon"), DDPM_PATH, noise,
        discrete_grid(DDPM_PATH, STEPS, "leading"), torch.Generator().manual_seed(5),
    )
    assert (ours - ref).abs().max() <= TOL


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
@pytest.mark.parametrize("ancestral", [False, True])
def test_euler_discrete_and_ancestral_match_diffusers(unet, noise, spacing, ancestral) -> None:
    from diffusers import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler

    cls = EulerAncestralDiscreteScheduler if ancestral else EulerDiscreteScheduler
    sched = cls(timestep_spacing=spacing, **SCHEDULE)
    sched.set_timesteps(STEPS)
    ref = _run_diffusers(
        sched, unet, noise * sched.init_noise_sigma, torch.Generator().manual_seed(11), scale_input=True
    )
    # diffusers starts from init_noise_sigma * noise in VE form: VP 'unit' for leading, 'noise_coef' otherwise
    init = "unit" if spacing == "leading" else "noise_coef"
    sampler = EulerAncestralSampler(init_noise=init) if ancestral else EDMSampler(second_order=False, init_noise=init)
    grid = discrete_grid(DDPM_PATH, STEPS, spacing, round_timesteps=False)
    ours = sampler.sample(
        NetworkDenoiser(unet, DDPM_PATH, "epsilon"), DDPM_PATH, noise, grid, torch.Generator().manual_seed(11)
    )
    assert (ours - ref).abs().max() <= TOL


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_match_euler_matches_diffusers(unet, noise, shift) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(STEPS)
    ref = _run_diffusers(sched, unet, noise.clone())
    path = RectifiedFlowPath(network_time_scale=1000.0, reverse_network_time=True)  # SD3 timestep input
    ours = EulerSampler().sample(NetworkDenoiser(unet, path, "sd3_velocity"), path, noise, flow_match_grid(STEPS, shift))
    assert (ours - ref).abs().max() <= TOL


# --- special cases -----------------------------------------------------------------------------
class GaussianDenoiser:
    """The exact denoiser for data ~ N(0, std^2 I) on ``path``, reporting ``prediction_type``."""

    def __init__(self, path: AffinePath, std: float, prediction_type: str = "sample") -> None:
        self.path, self.std, self.prediction_type = path, std, prediction_type

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t[:1].to(torch.float64)  # samplers pass one time per call: compute scalars once
        a = float(self.path.data_coef(t)[0])
        b = float(self.path.noise_coef(t)[0])
        data = a * self.std**2 / (a * a * self.std**2 + b * b) * x
        noise = (x - a * data) / b
        return from_data_and_noise(data, noise, x, t, self.path, self.prediction_type)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction", "velocity"])
def test_deterministic_ddim_equals_euler_on_straight_path(unet, noise, prediction_type) -> None:
    path = RectifiedFlowPath()
    den = NetworkDenoiser(unet, path, prediction_type)
    grid = uniform_grid(STEPS, t_start=0.05)  # epsilon models cannot give data at exactly t = 0
    a = DDIMSampler(0.0).sample(den, path, noise, grid)
    b = EulerSampler().sample(den, path, noise, grid)
    assert torch.allclose(a, b, atol=1e-5)


class NonlinearDenoiser:
    """A cheap nonlinear stand-in network (the property under test does not depend on the network)."""

    prediction_type = "v_prediction"

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) * (1 + t.reshape(-1, *([1] * (x.ndim - 1)))) - 0.3 * x


@pytest.mark.parametrize("sampler_name", ["euler", "heun", "ddim", "edm"])
def test_swapped_path_with_identical_paths_equals_plain(noise, sampler_name) -> None:
    path = CosinePath()
    den = NonlinearDenoiser()
    grid = uniform_grid(STEPS, 0.05, 1.0)
    sampler = build_sampler(sampler_name)
    plain = sampler.sample(den, path, noise, grid)
    swapped = sampler.sample(PathSwappedDenoiser(den, path, path), path, noise, grid)
    assert torch.allclose(plain, swapped, atol=1e-5)


def test_ddim_is_invariant_to_scheduler_swapping() -> None:
    """§2.2.1: DDIM on path B with the swapped model = DDIM on path A at the warped times."""
    trained, sampling = RectifiedFlowPath(), CosinePath()
    den = GaussianDenoiser(trained, 0.7, "velocity")
    x0 = torch.randn(256, 1, dtype=torch.float64)
    grid_b = uniform_grid(8, 0.02, 1.0)
    tau, omega = time_warp(trained, sampling, grid_b)
    out_b = DDIMSampler().sample(PathSwappedDenoiser(den, trained, sampling), sampling, x0, grid_b)
    # same start state seen on path A: x_A = omega * x_B
    out_a = DDIMSampler().sample(den, trained, x0 * float(omega[0]), tau)
    assert torch.allclose(out_a, out_b, atol=1e-9)


@pytest.mark.parametrize("sampler_name", ["euler", "heun"])
def test_ode_samplers_converge_to_exact_gaussian_flow(sampler_name) -> None:
    """For N(0, s^2) data the probability-flow ODE from t = 0 maps z to s z; Heun beats Euler."""
    path = RectifiedFlowPath()
    z = torch.randn(512, 1, dtype=torch.float64)
    errors = []
    for n in (8, 16):
        out = build_sampler(sampler_name).sample(GaussianDenoiser(path, 0.5), path, z, uniform_grid(n))
        errors.append(float((out - 0.5 * z).abs().max()))
    order = math.log2(errors[0] / errors[1])
    assert order > (1.7 if sampler_name == "heun" else 0.8), errors


@pytest.mark.parametrize(
    "sampler,path,grid_fn",
    [
        (DDPMSampler(), DDPM_PATH, lambda p: discrete_grid(p, 500, "leading")),
        (DDIMSampler(eta=1.0), CosinePath(), lambda p: uniform_grid(500)),
        (EulerAncestralSampler(), DDPM_PATH, lambda p: discrete_grid(p, 500, "trailing")),
        (EulerMaruyamaSampler(1.0), RectifiedFlowPath(), lambda p: uniform_grid(200)),
        (EDMSampler(churn=40.0, s_tmin=0.05, s_tmax=50.0), EDMPath(), lambda p: karras_grid(p, 200)),
    ],
    ids=["ddpm", "ddim_eta1", "euler_ancestral", "euler_maruyama", "edm_churn"],
)
def test_stochastic_samplers_reach_the_data_distribution(sampler, path, grid_fn) -> None:
    """With the exact denoiser of N(0, 0.5^2) data and fine steps the output has the data's statistics.

    (Ancestral samplers plug in the posterior *mean* of the data, so with coarse steps they
    under-disperse; the bias vanishes as the steps shrink.)
    """
    z = torch.randn(20000, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = sampler.sample(GaussianDenoiser(path, 0.5), path, z, grid_fn(path), torch.Generator().manual_seed(1))
    assert abs(float(out.std()) - 0.5) < 0.015 and abs(float(out.mean())) < 0.015


def test_edm_sampler_matches_literal_karras_algorithm() -> None:
    """Karras et al. Algorithm 2 (Heun + churn) written literally in VE form."""
    path = EDMPath()
    s, N, churn, tmin, tmax = 0.5, 12, 30.0, 0.05, 50.0
    grid = karras_grid(path, N)
    sigmas = path.sigma_from_t(grid)
    z = torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def D(x, sigma):
        return s**2 / (s**2 + sigma**2) * x

    gen = torch.Generator().manual_seed(2)
    x = sigmas[0] * z
    for i in range(N):
        sig, sig_n = float(sigmas[i]), float(sigmas[i + 1])
        gamma = min(churn / N, math.sqrt(2) - 1) if tmin <= sig <= tmax else 0.0
        sig_hat = sig * (1 + gamma)
        if gamma > 0:
            x = x + math.sqrt(sig_hat**2 - sig**2) * torch.randn(x.shape, generator=gen, dtype=x.dtype)
        d = (x - D(x, sig_hat)) / sig_hat
        x_next = x + (sig_n - sig_hat) * d
        if sig_n != 0:
            d2 = (x_next - D(x_next, sig_n)) / sig_n
            x_next = x + (sig_n - sig_hat) * (d + d2) / 2
        x = x_next
    ours = EDMSampler(churn=churn, s_tmin=tmin, s_tmax=tmax).sample(
        GaussianDenoiser(path, s, "v_prediction"), path, z, grid, torch.Generator().manual_seed(2)
    )
    assert torch.allclose(ours, x, atol=1e-8)


def test_num_evaluations_counts_network_calls(noise) -> None:
    path = RectifiedFlowPath()
    grid = uniform_grid(5, 0.05)
    for name in SAMPLERS:
        calls = []
        den = NonlinearDenoiser()

        class Counting:
            prediction_type = den.prediction_type

            def __call__(self, x, t):
                calls.append(1)
                return den(x, t)

        sampler = build_sampler(name)
        sampler.sample(Counting(), path, noise, grid, progress=(name == "euler"))
        assert len(calls) == sampler.num_evaluations(grid), name


# --- bad input --------------------------------------------------------------------------------------
def test_unknown_sampler_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"'dpmpp'.*euler.*edm"):
        build_sampler("dpmpp")


def test_bad_denoiser_and_grid(noise) -> None:
    path = RectifiedFlowPath()

    class Bad:
        prediction_type = "noise"

        def __call__(self, x, t):
            return x

    with pytest.raises(ValueError, match="'noise'"):
        EulerSampler().sample(Bad(), path, noise, uniform_grid(3))
    with pytest.raises(ValueError, match="increasing"):
        EulerSampler().sample(GaussianDenoiser(path, 1.0), path, noise.flatten(1), torch.tensor([0.5, 0.2, 1.0]))
    with pytest.raises(ValueError, match="finite sigma"):
        EDMSampler().sample(GaussianDenoiser(path, 1.0), path, noise.flatten(1), uniform_grid(3))
    with pytest.raises(ValueError, match="'white'"):
        EulerSampler(init_noise="white")


def test_euler_maruyama_without_diffusion_is_euler(noise) -> None:
    path = CosinePath()
    den = NonlinearDenoiser()
    grid = uniform_grid(STEPS, 0.05)
    zero_scale = EulerMaruyamaSampler(lambda t: torch.zeros_like(t))
    assert torch.allclose(zero_scale.sample(den, path, noise, grid), EulerSampler().sample(den, path, noise, grid), atol=1e-6)


def test_network_denoiser_feeds_network_time_and_unwraps(unet, noise) -> None:
    path = DDPM_PATH
    den = NetworkDenoiser(unet, path, "epsilon")
    t = torch.tensor([0.25, 0.75])
    with torch.no_grad():
        expected = unet(noise, path.timestep_from_t(t)).sample
        assert torch.allclose(den(noise, t), expected)
    with pytest.raises(ValueError, match="'eps'"):
        NetworkDenoiser(unet, path, "eps")


def test_karras_grid_needs_sigma_range_on_paths_without_one() -> None:
    with pytest.raises(ValueError, match="sigma_min"):
        karras_grid(RectifiedFlowPath(), 5)

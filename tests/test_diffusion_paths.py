"""Affine paths: coefficients, adapters and their round trips (thesis 000, Ch. 2, Eqs. 2.4, 2.9, 2.12)."""
from __future__ import annotations

import math

import pytest
import torch

from diffusion.paths import CosinePath, DiscreteDDPMPath, EDMPath, RectifiedFlowPath

PATHS = {
    "rectified_flow": RectifiedFlowPath(),
    "ddpm_scaled_linear": DiscreteDDPMPath("scaled_linear", 0.00085, 0.012),
    "ddpm_linear": DiscreteDDPMPath("linear", 0.0001, 0.02),
    "cosine": CosinePath(),
    "edm": EDMPath(),
    "edm_sd05": EDMPath(sigma_data=0.5),
}
T_INNER = torch.linspace(0.013, 0.987, 97, dtype=torch.float64)


@pytest.mark.parametrize("name", list(PATHS))
def test_log_snr_inverse_round_trip(name: str) -> None:
    path = PATHS[name]
    t = T_INNER
    assert torch.allclose(path.t_from_log_snr(path.log_snr(t)), t, atol=1e-9, rtol=0)


@pytest.mark.parametrize("name", ["rectified_flow", "cosine", "edm", "edm_sd05"])
def test_derivatives_match_finite_differences(name: str) -> None:
    path = PATHS[name]
    t, h = T_INNER, 1e-6
    for coef, deriv in ((path.data_coef, path.data_coef_deriv), (path.noise_coef, path.noise_coef_deriv)):
        fd = (coef(t + h) - coef(t - h)) / (2 * h)
        assert torch.allclose(deriv(t), fd, rtol=1e-5, atol=1e-7)


def test_ddpm_derivative_is_the_data_side_segment() -> None:
    path = PATHS["ddpm_scaled_linear"]
    # strictly between knots the path is smooth in t, so central differences apply
    t = path.t_from_timestep(torch.arange(3, 990, 37, dtype=torch.float64) + 0.5)
    h = 1e-7
    for coef, deriv in ((path.data_coef, path.data_coef_deriv), (path.noise_coef, path.noise_coef_deriv)):
        fd = (coef(t + h) - coef(t - h)) / (2 * h)
        assert torch.allclose(deriv(t), fd, rtol=1e-5, atol=1e-8)
    # at a knot k: the segment towards data, i.e. [k - 1, k]
    k = torch.tensor([500.0], dtype=torch.float64)
    t_knot = path.t_from_timestep(k)
    one_sided = (path.noise_coef(t_knot + 1e-7) - path.noise_coef(t_knot)) / 1e-7
    assert torch.allclose(path.noise_coef_deriv(t_knot), one_sided, rtol=1e-4)


@pytest.mark.parametrize("name", list(PATHS))
def test_endpoints_and_monotone_snr(name: str) -> None:
    path = PATHS[name]
    one = torch.ones(1, dtype=torch.float64)
    assert torch.allclose(path.data_coef(one), one) and float(path.noise_coef(one)) == pytest.approx(0.0, abs=1e-12)
    lam = path.log_snr(T_INNER)
    assert bool((lam[1:] > lam[:-1]).all())


def test_ddpm_alphas_cumprod_match_diffusers() -> None:
    from diffusers import DDPMScheduler

    for schedule, start, end in (("scaled_linear", 0.00085, 0.012), ("linear", 0.0001, 0.02)):
        ours = DiscreteDDPMPath(schedule, start, end)
        ref = DDPMScheduler(beta_schedule=schedule, beta_start=start, beta_end=end).alphas_cumprod
        assert torch.equal(ours.alphas_cumprod, ref.to(torch.float64))
        k = torch.arange(1000, dtype=torch.float64)
        t = ours.t_from_timestep(k)
        assert torch.allclose(ours.data_coef(t) ** 2, ours.alphas_cumprod, rtol=1e-12, atol=0)
        assert torch.allclose(ours.noise_coef(t) ** 2, 1 - ours.alphas_cumprod, rtol=1e-12, atol=1e-15)


def test_ddpm_timestep_adapters_round_trip() -> None:
    path = PATHS["ddpm_scaled_linear"]
    k = torch.linspace(-1, 999, 301, dtype=torch.float64)
    assert torch.allclose(path.timestep_from_t(path.t_from_timestep(k)), k, atol=1e-9)
    assert float(path.t_from_timestep(torch.tensor(999.0))) == 0.0
    assert float(path.t_from_timestep(torch.tensor(-1.0))) == 1.0
    assert torch.allclose(path.network_time(path.t_from_timestep(k)), k, atol=1e-9)


def test_ddpm_sigma_is_linear_in_k_like_diffusers_euler() -> None:
    from diffusers import EulerDiscreteScheduler

    path = PATHS["ddpm_scaled_linear"]
    sched = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    sched.set_timesteps(7)  # 'linspace' spacing: fractional timesteps
    ks = sched.timesteps.to(torch.float64)
    ours = path.sigma(path.t_from_timestep(ks))
    assert torch.allclose(ours, sched.sigmas[:-1].to(torch.float64), rtol=1e-6)


def test_edm_sigma_adapters() -> None:
    path = EDMPath(sigma_min=0.002, sigma_max=700.0, sigma_data=0.5)
    sigma = torch.logspace(-3, math.log10(700.0), 50, dtype=torch.float64)
    assert torch.allclose(path.sigma_from_t(path.t_from_sigma(sigma)), sigma, rtol=1e-10)
    assert float(path.sigma_from_t(torch.tensor(0.0, dtype=torch.float64))) == pytest.approx(700.0)
    assert float(path.sigma_from_t(torch.tensor(1.0, dtype=torch.float64))) == 0.0
    assert float(path.t_from_sigma(torch.tensor(5000.0))) == 0.0  # clamped
    t = T_INNER
    # generic sigma is noise/data coefficient ratio = EDM sigma / sigma_data, and the path is VP
    assert torch.allclose(path.sigma(t), path.sigma_from_t(t) / 0.5)
    assert torch.allclose(path.data_coef(t) ** 2 + path.noise_coef(t) ** 2, torch.ones_like(t))
    assert torch.allclose(path.network_time(t), 0.25 * torch.log(path.sigma_from_t(t)))


@pytest.mark.parametrize("sigma_data", [1.0, 0.5])
def test_svd_edm_v_preconditioning_is_salimans_v(sigma_data: float) -> None:
    """Digest §1.7: EDM's v-preconditioning = Salimans v on the VP EDM path with c_noise time input."""
    from diffusion.predictions import to_data_and_noise

    path = EDMPath(sigma_data=sigma_data)
    gen = torch.Generator().manual_seed(3)
    B = 6
    y = sigma_data * torch.randn(B, 2, 4, 4, generator=gen, dtype=torch.float64)  # EDM data, std sigma_data
    n = torch.randn(B, 2, 4, 4, generator=gen, dtype=torch.float64)
    sigma = torch.exp(torch.randn(B, generator=gen, dtype=torch.float64) * 1.2 - 1.2)
    weight = torch.randn(2, 2, dtype=torch.float64, generator=gen)

    def F(x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:  # any "network"
        return torch.einsum("oc,bchw->bohw", weight, x_in) * torch.cos(c_noise)[:, None, None, None] + x_in**2

    # literal EDM preconditioning, SVD's sign convention for sigma_data = 1 (c_out = -sigma/sqrt(sigma^2+1))
    s = sigma[:, None, None, None]
    c_skip = sigma_data**2 / (s**2 + sigma_data**2)
    c_out = -s * sigma_data / torch.sqrt(s**2 + sigma_data**2)
    c_in = 1 / torch.sqrt(s**2 + sigma_data**2)
    x_ve = y + s * n
    D = c_skip * x_ve + c_out * F(c_in * x_ve, 0.25 * torch.log(sigma))

    t = path.t_from_sigma(sigma)
    x_t = path.add_noise(y / sigma_data, n, t)
    assert torch.allclose(x_t, c_in * x_ve, atol=1e-12)
    v = F(x_t, path.network_time(t))
    data_hat, _ = to_data_and_noise(v, "v_prediction", x_t, t, path)
    assert torch.allclose(sigma_data * data_hat, D, atol=1e-10)


def test_cosine_matches_nichol_dhariwal_alpha_bar() -> None:
    path = CosinePath()
    u = torch.linspace(0, 0.99, 50, dtype=torch.float64)  # noise-direction time
    f = torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
    assert torch.allclose(path.data_coef(1 - u) ** 2, f / f[0], atol=1e-12)


def test_rectified_flow_network_time_directions() -> None:
    t = torch.tensor([0.0, 0.25, 1.0])
    assert torch.allclose(RectifiedFlowPath().network_time(t), t * 1000)
    assert torch.allclose(RectifiedFlowPath(network_time_scale=1.0, reverse_network_time=True).network_time(t), 1 - t)


def test_add_noise_broadcasts_per_sample() -> None:
    path = PATHS["cosine"]
    x = torch.randn(3, 2, 5)
    n = torch.randn(3, 2, 5)
    t = torch.tensor([0.1, 0.5, 0.9])
    out = path.add_noise(x, n, t)
    for i in range(3):
        assert torch.allclose(out[i], path.data_coef(t[i]) * x[i] + path.noise_coef(t[i]) * n[i], atol=1e-6)


def test_unknown_beta_schedule() -> None:
    with pytest.raises(ValueError, match="'cosine_wrong'"):
        DiscreteDDPMPath("cosine_wrong")

"""Loss weights, Ch. 2 epsilon-equivalence identities (Eq. 2.17) and the time warp (Eqs. 2.12-2.16)."""
from __future__ import annotations

import pytest
import torch

from diffusion.paths import CosinePath, DiscreteDDPMPath, EDMPath, RectifiedFlowPath
from diffusion.predictions import PREDICTION_TYPES, from_data_and_noise, to_data_and_noise, training_target
from diffusion.time_warp import PathSwappedDenoiser, time_warp, time_warp_speed, warped_loss_weight
from diffusion.weighting import (
    ConstantWeighting,
    EDMWeighting,
    MinSNRWeighting,
    SNRWeighting,
    epsilon_equivalent_weight,
)

PATHS = {
    "rectified_flow": RectifiedFlowPath(),
    "ddpm": DiscreteDDPMPath(),
    "cosine": CosinePath(),
    "edm": EDMPath(),
}
B = 32


def _setup(path, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    data = torch.randn(B, 2, 3, 3, generator=gen, dtype=torch.float64)
    noise = torch.randn(B, 2, 3, 3, generator=gen, dtype=torch.float64)
    t = path.t_from_log_snr(-7.0 + 14.0 * torch.rand(B, generator=gen, dtype=torch.float64))
    x_t = path.add_noise(data, noise, t)
    noise_hat = noise + 0.3 * torch.randn(B, 2, 3, 3, generator=gen, dtype=torch.float64)  # an imperfect network
    data_hat = (x_t - path.noise_coef(t)[:, None, None, None] * noise_hat) / path.data_coef(t)[:, None, None, None]
    return data, noise, t, x_t, data_hat, noise_hat


def _sq(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).sum(dim=(1, 2, 3))


@pytest.mark.parametrize("path_name", list(PATHS))
@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_epsilon_equivalent_weight_holds_numerically(path_name: str, prediction_type: str) -> None:
    path = PATHS[path_name]
    data, noise, t, x_t, data_hat, noise_hat = _setup(path)
    pred_hat = from_data_and_noise(data_hat, noise_hat, x_t, t, path, prediction_type)
    pred = training_target(prediction_type, data, noise, t, path)
    w = epsilon_equivalent_weight(prediction_type, t, path)
    assert torch.allclose(_sq(pred_hat - pred), w * _sq(noise_hat - noise), rtol=1e-9)


@pytest.mark.parametrize("path_name", list(PATHS))
def test_thesis_closed_forms(path_name: str) -> None:
    path = PATHS[path_name]
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    lam = path.log_snr(t)
    a, b = path.data_coef(t), path.noise_coef(t)
    a_dot, b_dot = path.data_coef_deriv(t), path.noise_coef_deriv(t)
    # x-prediction: e^{-lambda}
    assert torch.allclose(epsilon_equivalent_weight("sample", t, path), torch.exp(-lam))
    # Salimans v: alpha^2 (e^{-lambda} + 1)^2
    assert torch.allclose(epsilon_equivalent_weight("v_prediction", t, path), a**2 * (torch.exp(-lam) + 1) ** 2)
    # ODE velocity: (beta' - alpha' beta / alpha)^2
    assert torch.allclose(epsilon_equivalent_weight("velocity", t, path), (b_dot - a_dot * b / a) ** 2)
    assert torch.allclose(epsilon_equivalent_weight("epsilon", t, path), torch.ones_like(t))


def test_straight_path_velocity_weight_is_one_over_t_squared() -> None:
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    path = RectifiedFlowPath()
    assert torch.allclose(epsilon_equivalent_weight("velocity", t, path), 1 / t**2)
    # ... and it differs from the Salimans-v identity there (digest §0.4)
    assert not torch.allclose(epsilon_equivalent_weight("v_prediction", t, path), 1 / t**2)


def test_vp_paths_velocity_and_salimans_reduce_to_same_weight() -> None:
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    for path in (CosinePath(), EDMPath()):
        expected = torch.exp(-path.log_snr(t)) + 1
        assert torch.allclose(epsilon_equivalent_weight("v_prediction", t, path), expected)


def test_weighting_objects() -> None:
    path = DiscreteDDPMPath()
    t = torch.linspace(0.05, 0.95, 11, dtype=torch.float64)
    snr = torch.exp(path.log_snr(t))
    assert torch.equal(ConstantWeighting()(t, path), torch.ones_like(t))
    assert torch.allclose(SNRWeighting()(t, path), snr)
    # diffusers' train_text_to_image: min(snr, gamma)/snr (epsilon), min(snr, gamma)/(snr + 1) (v_prediction)
    assert torch.allclose(MinSNRWeighting(5.0)(t, path), torch.clamp(snr, max=5.0) / snr)
    assert torch.allclose(MinSNRWeighting(5.0, "v_prediction")(t, path), torch.clamp(snr, max=5.0) / (snr + 1))
    edm = EDMPath(sigma_data=0.5)
    sigma = edm.sigma_from_t(t)
    assert torch.allclose(EDMWeighting()(t, edm), (sigma**2 + 0.25) / (sigma * 0.5) ** 2)
    with pytest.raises(ValueError, match="'eps'"):
        MinSNRWeighting(5.0, "eps")


PAIRS = [
    (RectifiedFlowPath(), CosinePath()),
    (CosinePath(), RectifiedFlowPath()),
    (RectifiedFlowPath(), EDMPath(sigma_max=1e8)),
]


@pytest.mark.parametrize("source,target", PAIRS)
def test_time_warp_boundary_conditions(source, target) -> None:
    ends = torch.tensor([0.0, 1.0], dtype=torch.float64)
    tau, omega = time_warp(source, target, ends)
    assert torch.allclose(tau, ends, atol=1e-6)
    assert torch.allclose(omega, torch.ones(2, dtype=torch.float64), atol=1e-6)


@pytest.mark.parametrize("source,target", PAIRS)
def test_time_warp_maps_paths_pointwise(source, target) -> None:
    """Eq. 2.13: target.x_t = source.x_tau / omega for the same (data, noise)."""
    data, noise, t, *_ = _setup(target, seed=3)
    tau, omega = time_warp(source, target, t)
    lhs = target.add_noise(data, noise, t)
    rhs = source.add_noise(data, noise, tau) / omega[:, None, None, None]
    assert torch.allclose(lhs, rhs, atol=1e-9)
    # Eq. 2.14: both ratios define omega
    assert torch.allclose(omega, source.data_coef(tau) / target.data_coef(t))
    assert torch.allclose(omega, source.noise_coef(tau) / target.noise_coef(t))


def test_identical_paths_warp_to_identity() -> None:
    path = DiscreteDDPMPath()
    t = torch.linspace(0.0, 1.0, 51, dtype=torch.float64)
    tau, omega = time_warp(path, path, t)
    assert torch.allclose(tau, t, atol=1e-9) and torch.allclose(omega, torch.ones_like(t))


@pytest.mark.parametrize("source,target", PAIRS[:2])
def test_loss_reweighting_makes_velocity_losses_equivalent(source, target) -> None:
    """§1.4 [D]: w'(t) ||dX'/dt - v'||^2 = tau' w(tau) ||dX/dtau - v||^2 with v' the swapped model."""
    data, noise, t, *_ = _setup(target, seed=4)
    tau, omega = time_warp(source, target, t)
    gen = torch.Generator().manual_seed(9)
    net_noise = noise + 0.2 * torch.randn(noise.shape, generator=gen, dtype=torch.float64)

    class SourceModel:  # an imperfect velocity model on the source path
        prediction_type = "velocity"

        def __call__(self, x, s):
            d, _ = to_data_and_noise(net_noise, "epsilon", x, s, source)
            return from_data_and_noise(d, net_noise, x, s, source, "velocity")

    x_target = target.add_noise(data, noise, t)
    v_prime = PathSwappedDenoiser(SourceModel(), source, target)(x_target, t)
    x_source = source.add_noise(data, noise, tau)
    v_src = SourceModel()(x_source, tau)
    err_target = _sq(v_prime - training_target("velocity", data, noise, t, target))
    err_source = _sq(v_src - training_target("velocity", data, noise, tau, source))
    w = SNRWeighting()
    w_prime = warped_loss_weight(w, source, target, t)
    speed = time_warp_speed(source, target, t)
    assert torch.allclose(w_prime * err_target, speed * w(tau, source) * err_source, rtol=1e-6)
    # tau' matches finite differences
    h = 1e-6
    fd = (time_warp(source, target, t + h)[0] - time_warp(source, target, t - h)[0]) / (2 * h)
    assert torch.allclose(speed, fd, rtol=1e-5)

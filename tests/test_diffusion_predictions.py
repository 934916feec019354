"""Prediction types: every conversion round-trips exactly (thesis 000, Ch. 2 §2.2.2; digest §1.7)."""
from __future__ import annotations

import itertools

import pytest
import torch

from diffusion.paths import CosinePath, DiscreteDDPMPath, EDMPath, RectifiedFlowPath
from diffusion.predictions import (
    PREDICTION_TYPES,
    SD3DirectionAdapter,
    convert_prediction,
    from_data_and_noise,
    to_data_and_noise,
    training_target,
)

PATHS = {
    "rectified_flow": RectifiedFlowPath(),
    "ddpm": DiscreteDDPMPath(),
    "cosine": CosinePath(),
    "edm": EDMPath(),
    "edm_sd05": EDMPath(sigma_data=0.5),
}
B = 64


def _batch(path, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random data/noise and many t: log-SNR uniform in [-8, 8] (away from the singular ends)."""
    gen = torch.Generator().manual_seed(seed)
    data = torch.randn(B, 3, 4, 4, generator=gen, dtype=torch.float64)
    noise = torch.randn(B, 3, 4, 4, generator=gen, dtype=torch.float64)
    lam = -8.0 + 16.0 * torch.rand(B, generator=gen, dtype=torch.float64)
    return data, noise, path.t_from_log_snr(lam)


@pytest.mark.parametrize("path_name", list(PATHS))
@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_to_data_and_noise_inverts_the_target(path_name: str, prediction_type: str) -> None:
    path = PATHS[path_name]
    data, noise, t = _batch(path)
    x_t = path.add_noise(data, noise, t)
    target = training_target(prediction_type, data, noise, t, path)
    data_hat, noise_hat = to_data_and_noise(target, prediction_type, x_t, t, path)
    scale = 1.0 + target.abs().amax(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(data_hat / scale, data / scale, atol=1e-10, rtol=0)
    assert torch.allclose(noise_hat / scale, noise / scale, atol=1e-10, rtol=0)


@pytest.mark.parametrize("path_name", list(PATHS))
def test_every_pairwise_conversion_round_trips(path_name: str) -> None:
    path = PATHS[path_name]
    _, _, t = _batch(path, 1)
    gen = torch.Generator().manual_seed(2)
    x_t = torch.randn(B, 3, 4, 4, generator=gen, dtype=torch.float64)
    for src, dst in itertools.permutations(PREDICTION_TYPES, 2):
        pred = torch.randn(B, 3, 4, 4, generator=gen, dtype=torch.float64)  # arbitrary network output
        there = convert_prediction(pred, src, dst, x_t, t, path)
        back = convert_prediction(there, dst, src, x_t, t, path)
        err = ((back - pred).abs() / (1.0 + pred.abs() + there.abs())).max()
        assert float(err) < 1e-10, (src, dst, float(err))


@pytest.mark.parametrize("path_name", list(PATHS))
def test_estimates_reproduce_x_t(path_name: str) -> None:
    path = PATHS[path_name]
    _, _, t = _batch(path, 4)
    x_t = torch.randn(B, 3, 4, 4, dtype=torch.float64)
    pred = torch.randn(B, 3, 4, 4, dtype=torch.float64)
    for prediction_type in PREDICTION_TYPES:
        d, n = to_data_and_noise(pred, prediction_type, x_t, t, path)
        assert torch.allclose(path.add_noise(d, n, t), x_t, atol=1e-9)


def test_named_targets_on_the_straight_path() -> None:
    path = RectifiedFlowPath()
    data, noise, t = _batch(path, 5)
    tt = t[:, None, None, None]
    assert torch.allclose(training_target("velocity", data, noise, t, path), data - noise)  # Eq. 2.5
    assert torch.allclose(training_target("sd3_velocity", data, noise, t, path), noise - data)
    assert torch.allclose(training_target("v_prediction", data, noise, t, path), tt * noise - (1 - tt) * data)
    assert torch.allclose(training_target("score", data, noise, t, path), -noise / (1 - tt))
    assert torch.equal(training_target("epsilon", data, noise, t, path), noise)
    assert torch.equal(training_target("sample", data, noise, t, path), data)


def test_from_data_and_noise_matches_training_target() -> None:
    path = CosinePath()
    data, noise, t = _batch(path, 6)
    for prediction_type in PREDICTION_TYPES:
        a = from_data_and_noise(data, noise, None, t, path, prediction_type)
        assert torch.equal(a, training_target(prediction_type, data, noise, t, path))


def test_sd3_direction_adapter_round_trip() -> None:
    path = RectifiedFlowPath()
    data, noise, t = _batch(path, 7)
    x_t = path.add_noise(data, noise, t)
    # a "perfect" SD3-direction model for this single pair: u(z, s) = noise - data
    calls: list[torch.Tensor] = []

    def sd3_model(z: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        calls.append(s)
        return noise - data + 0 * z

    adapter = SD3DirectionAdapter(sd3_model)
    assert adapter.prediction_type == "velocity"
    v = adapter(x_t, t)
    assert torch.allclose(calls[-1], 1 - t)
    assert torch.allclose(v, training_target("velocity", data, noise, t, path))
    d, n = to_data_and_noise(v, adapter.prediction_type, x_t, t, path)
    assert torch.allclose(d, data, atol=1e-12) and torch.allclose(n, noise, atol=1e-12)
    # Ch. 2 model -> SD3 model -> Ch. 2 model is the identity
    back = SD3DirectionAdapter(SD3DirectionAdapter.to_sd3(adapter))
    assert torch.allclose(back(x_t, t), v)
    # the prediction-type alias says the same thing
    assert torch.allclose(convert_prediction(noise - data, "sd3_velocity", "velocity", x_t, t, path), v)


def test_unknown_prediction_type_names_value_and_valid_names() -> None:
    path = RectifiedFlowPath()
    x = torch.zeros(2, 1)
    t = torch.full((2,), 0.5)
    with pytest.raises(ValueError, match=r"'x0'.*epsilon.*velocity"):
        to_data_and_noise(x, "x0", x, t, path)
    with pytest.raises(ValueError, match="'flow'"):
        training_target("flow", x, x, t, path)

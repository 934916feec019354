"""CoDi's pretrained loading from a tiny Stable Diffusion folder written with ``save_pretrained``.

Thesis 001, Ch. 5: the prediction type comes from the loaded scheduler config and a mismatch is
refused (issue 19). The weights are random stand-ins in the real diffusers layout.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from codi_helpers import TINY_UNET, TINY_VAE


def _sd_folder(root: Path, prediction_type: str) -> Path:
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    torch.manual_seed(0)
    UNet2DConditionModel.from_config(TINY_UNET).save_pretrained(root / "unet")
    AutoencoderKL.from_config(TINY_VAE).save_pretrained(root / "vae")
    DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                  prediction_type=prediction_type).save_pretrained(root / "scheduler")
    return root


@pytest.fixture(scope="module")
def sd_epsilon(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _sd_folder(tmp_path_factory.mktemp("sd_eps"), "epsilon")


@pytest.fixture(scope="module")
def sd_v(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _sd_folder(tmp_path_factory.mktemp("sd_v"), "v_prediction")


def _codi(sd_path: Path, **kwargs):
    from lightning_modules.codi import CoDi

    return CoDi(sd_path=str(sd_path), text_encoder="stand_in", image_size=16, task="sr", **kwargs)


def test_prediction_type_mismatch_with_the_scheduler_config_is_refused(sd_epsilon: Path) -> None:
    with pytest.raises(ValueError, match=r"scheduler_config\.json: prediction_type is 'epsilon'.*'v_prediction'"):
        _codi(sd_epsilon)  # the default (the thesis's v-prediction) against an epsilon checkpoint


def test_prediction_type_is_read_from_the_scheduler_config(sd_epsilon: Path, sd_v: Path) -> None:
    from diffusion.predictions import to_data_and_noise

    eps_model = _codi(sd_epsilon, prediction_type=None)
    assert eps_model.prediction_type == "epsilon"
    assert _codi(sd_epsilon, prediction_type="epsilon").prediction_type == "epsilon"
    v_model = _codi(sd_v)
    assert v_model.prediction_type == "v_prediction"
    # the data estimate uses the loaded parametrisation
    z = torch.randn(1, 4, 8, 8)
    out = torch.randn(1, 4, 8, 8)
    t = eps_model.path.t_from_timestep(torch.tensor([500.0])).float()
    x_eps, _ = eps_model.data_and_noise(out, z, t)
    assert torch.allclose(x_eps, to_data_and_noise(out, "epsilon", z, t, eps_model.path)[0])
    assert not torch.allclose(x_eps, v_model.data_and_noise(out, z, t)[0], atol=1e-3)
    assert eps_model.sampling_denoiser(None, torch.zeros(1, 8, 32)).prediction_type == "sample"  # F is a data prediction


def test_unknown_prediction_type_is_refused() -> None:
    from codi_helpers import tiny_codi

    with pytest.raises(ValueError, match="prediction_type='sample'"):
        tiny_codi(prediction_type="sample")

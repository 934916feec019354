"""LTT-GAN's released prior: GFPGAN's StyleGAN2 from its BasicSR file or from GFPGANv1.pth's ``stylegan_decoder.``.

Random tiny generators (code tests, not the paper's numbers); the file layouts follow BasicSR's stylegan2_arch /
GFPGAN's gfpganv1_arch names (the suite's StyleGAN2 uses BasicSR's names, so the source is written with them).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightning_modules.components.released_weights import ReleasedWeightsError
from lightning_modules.ltt_gan.stylegan2 import StyleGAN2Generator, load_stylegan2_generator


def test_prior_is_taken_from_a_gfpgan_v1_model_file(tmp_path: Path) -> None:
    torch.manual_seed(4)
    source = StyleGAN2Generator(32, 16, 2, narrow=1 / 32)
    params = {f"stylegan_decoder.{k}": v for k, v in source.state_dict().items()}
    params["stylegan_decoder.style_convs.0.modulated_conv.smooth.kernel"] = torch.ones(4, 4)
    params.update({"conv_body_first.0.weight": torch.zeros(8, 3, 1, 1), "final_linear.weight": torch.zeros(16, 64),
                   "condition_scale.0.0.weight": torch.zeros(8, 8, 3, 3)})  # GFPGANv1's encoder / SFT heads: not the prior
    torch.save({"params_ema": params}, tmp_path / "GFPGANv1.pth")
    target = StyleGAN2Generator(32, 16, 2, narrow=1 / 32)
    load_stylegan2_generator(target, str(tmp_path / "GFPGANv1.pth"))
    latent = torch.randn(1, target.num_latent, 16)
    assert torch.allclose(target(latent, False), source(latent, False))


def test_clean_gfpgan_layout_is_refused_with_one_message(tmp_path: Path) -> None:
    source = StyleGAN2Generator(32, 16, 2, narrow=1 / 32).state_dict()
    clean = {(k.replace(".activate.bias", ".bias")): v for k, v in source.items()}  # StyleGAN2GeneratorClean's StyleConv
    torch.save({"params_ema": {f"stylegan_decoder.{k}": v for k, v in clean.items()}}, tmp_path / "GFPGANv1.4.pth")
    with pytest.raises(ReleasedWeightsError, match=r"GFPGANv1.4.pth.*missing.*activate.bias.*unexpected.*clean") as info:
        load_stylegan2_generator(StyleGAN2Generator(32, 16, 2, narrow=1 / 32), str(tmp_path / "GFPGANv1.4.pth"))
    assert "\n" not in str(info.value)

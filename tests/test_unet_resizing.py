"""Explicit resizing of pretrained layers (issue 17): every pretrained-loading path whose UNet changes shape.

Each path loads a tiny random-weight UNet written with ``save_pretrained`` (the real diffusers
layout, stand-in weights) and checks: outputs finite, copied weights equal, new weights as the
shared rule of :mod:`lightning_modules.components.unet_inputs` says (zero).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from inverse_painting_helpers import UNET as IP_UNET
from inverse_painting_helpers import VAE as IP_VAE


def test_resize_conv2d_copies_what_fits_and_zeroes_the_rest() -> None:
    from lightning_modules.components.unet_inputs import resize_conv2d

    torch.manual_seed(0)
    old = nn.Conv2d(4, 6, 3, padding=1)
    wide = resize_conv2d(old, in_channels=9, out_channels=8)
    assert torch.equal(wide.weight[:6, :4], old.weight) and torch.equal(wide.bias[:6], old.bias)
    assert torch.count_nonzero(wide.weight[:, 4:]) == 0 and torch.count_nonzero(wide.weight[6:]) == 0
    assert torch.count_nonzero(wide.bias[6:]) == 0
    x = torch.randn(2, 4, 5, 5)
    padded = torch.cat([x, torch.randn(2, 5, 5, 5)], 1)
    assert torch.allclose(wide(padded)[:, :6], old(x), atol=1e-6), "a widened input computes what the original did"
    narrow = resize_conv2d(old, out_channels=1)
    assert torch.equal(narrow.weight, old.weight[:1]) and torch.equal(narrow.bias, old.bias[:1])
    default = resize_conv2d(old, in_channels=5, out_channels=8, new_outputs="default")
    assert torch.count_nonzero(default.weight[6:, :5]) > 0 and torch.count_nonzero(default.weight[:, 4:]) == 0
    with pytest.raises(ValueError, match="new_outputs"):
        resize_conv2d(old, new_outputs="random")


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    root = tmp_path_factory.mktemp("sd_tiny")
    torch.manual_seed(1)
    unet = UNet2DConditionModel.from_config(IP_UNET)
    with torch.no_grad():  # non-zero biases so "copied" is checked on informative values
        unet.conv_in.bias.normal_()
        unet.conv_out.bias.normal_()
    unet.save_pretrained(root / "unet")
    AutoencoderKL.from_config(IP_VAE).save_pretrained(root / "vae")
    return root


def _saved_unet(root: Path):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(str(root), subfolder="unet", local_files_only=True)


def _forward(unet, channels: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, channels, 8, 8, generator=g)
    ctx = torch.randn(1, 3, int(unet.config.cross_attention_dim), generator=g)
    with torch.no_grad():
        return unet(x, torch.tensor([10.0]), encoder_hidden_states=ctx).sample


def test_inverse_painting_mask_generator_loads_a_pretrained_unet_with_9_inputs_and_1_output(sd_folder: Path) -> None:
    from inverse_painting_helpers import mask_generator

    ref = _saved_unet(sd_folder)
    model = mask_generator(sd_path=str(sd_folder), unet_config=None, vae_config=None, use_text=False)
    unet = model.unet
    assert unet.conv_in.in_channels == 9 and unet.conv_out.out_channels == 1
    assert unet.config.in_channels == 9 and unet.config.out_channels == 1
    assert torch.equal(unet.conv_in.weight[:, :4], ref.conv_in.weight) and torch.equal(unet.conv_in.bias, ref.conv_in.bias)
    assert torch.count_nonzero(unet.conv_in.weight[:, 4:]) == 0
    assert torch.equal(unet.conv_out.weight, ref.conv_out.weight[:1]) and torch.equal(unet.conv_out.bias, ref.conv_out.bias[:1])
    out = _forward(unet, 9)
    assert out.shape == (1, 1, 8, 8) and bool(torch.isfinite(out).all())
    assert float(out.abs().max()) < 1e3, "no uninitialised memory in the resized layers"
    # the rest of the network is the pretrained one
    ref_state, state = ref.state_dict(), unet.state_dict()
    assert all(torch.equal(state[k], v) for k, v in ref_state.items() if not k.startswith(("conv_in", "conv_out")))


def test_inverse_painting_build_unet_refuses_other_overrides_of_a_pretrained_unet(sd_folder: Path) -> None:
    from lightning_modules.inverse_painting.pretrained import build_unet

    with pytest.raises(ValueError, match="only in_channels / out_channels"):
        build_unet(str(sd_folder), None, "model.init_args.sd_path", cross_attention_dim=8)


def test_renderer_and_fitcheck_widening_on_a_loaded_unet(sd_folder: Path) -> None:
    from lightning_modules.fitcheck.network import widen_conv_in as fitcheck_widen
    from lightning_modules.inverse_painting.encoders import widen_conv_in as renderer_widen

    ref = _saved_unet(sd_folder)
    for widen, channels in ((lambda u: renderer_widen(u, 4), 8), (lambda u: fitcheck_widen(u, 16), 16)):
        unet = _saved_unet(sd_folder)
        widen(unet)
        assert unet.conv_in.in_channels == channels == unet.config.in_channels
        assert torch.equal(unet.conv_in.weight[:, :4], ref.conv_in.weight)
        assert torch.count_nonzero(unet.conv_in.weight[:, 4:]) == 0
        g = torch.Generator().manual_seed(3)
        x = torch.randn(1, 4, 8, 8, generator=g)
        ctx = torch.randn(1, 3, 16, generator=g)
        with torch.no_grad():
            wide = unet(torch.cat([x, torch.randn(1, channels - 4, 8, 8, generator=g)], 1), torch.tensor([10.0]),
                        encoder_hidden_states=ctx).sample
            base = ref(x, torch.tensor([10.0]), encoder_hidden_states=ctx).sample
        assert bool(torch.isfinite(wide).all()) and torch.allclose(wide, base, atol=1e-5)


def test_ldm_scaling_sr_widens_a_pretrained_unet(tmp_path: Path) -> None:
    from diffusers import UNet2DConditionModel

    from codi_helpers import TINY_UNET, TINY_VAE
    from lightning_modules.ldm_scaling import ScaledLDMSuperResolution

    torch.manual_seed(4)
    UNet2DConditionModel.from_config(TINY_UNET).save_pretrained(tmp_path / "unet")
    ref = UNet2DConditionModel.from_pretrained(str(tmp_path / "unet"), local_files_only=True)
    model = ScaledLDMSuperResolution(unet_path=str(tmp_path / "unet"), vae_config=TINY_VAE, text_encoder="stand_in",
                                     context_dim=32, latent_size=8, image_size=16)
    conv = model.network.conv_in
    assert conv.in_channels == 8 and torch.equal(conv.weight[:, :4], ref.conv_in.weight)
    assert torch.count_nonzero(conv.weight[:, 4:]) == 0
    out = _forward(model.network, 8)
    assert bool(torch.isfinite(out).all())


def test_codi_encoder_copy_conv_in_from_the_backbone() -> None:
    from codi_helpers import tiny_codi

    model = tiny_codi(task="inpaint")  # 5 condition channels: 4 copied from the backbone, 1 zero
    base, copy = model.network.backbone.conv_in, model.network.encoder.conv_in
    assert copy.in_channels == 5
    assert torch.equal(copy.weight[:, :4], base.weight) and torch.equal(copy.bias, base.bias)
    assert torch.count_nonzero(copy.weight[:, 4:]) == 0

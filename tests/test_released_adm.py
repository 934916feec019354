"""guided-diffusion priors (ADM, ILVR, P2) in the suite's ADMUNet, for Bi-Noising, LFG-Diffusion and VIDM.

The files are written with guided-diffusion's UNetModel names (tests/released_helpers.py, enumerated from its code,
not from ADMUNet), random values: these test the importer, not any paper's numbers.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightning_modules.bi_noising.networks import load_prior_weights
from lightning_modules.bi_noising.released import PRIORS, prior_kwargs
from lightning_modules.components.adm_unet import ADMUNet, load_adm_weights, timestep_embedding
from lightning_modules.components.released_weights import ReleasedWeightsError
from released_helpers import guided_diffusion_unet_state

TINY = dict(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_ds=(2,), num_head_channels=8,
            norm_num_groups=8, learn_sigma=True, resblock_updown=True, use_scale_shift_norm=True)


def test_guided_diffusion_layout_loads_with_no_missing_or_unexpected_keys(tmp_path: Path) -> None:
    state = guided_diffusion_unet_state()
    torch.save(state, tmp_path / "256x256_diffusion_uncond.pt")
    net = load_adm_weights(ADMUNet(3, 3, **TINY), tmp_path / "256x256_diffusion_uncond.pt")
    assert set(net.state_dict()) == set(state)
    prior = load_prior_weights(ADMUNet(3, 3, **TINY), tmp_path / "256x256_diffusion_uncond.pt")
    x, t = torch.randn(1, 3, 8, 8), torch.tensor([7])
    torch.testing.assert_close(prior(x, t), net(x, t))
    # guided-diffusion's time MLP on its sinusoid, written out: time_embed.2(SiLU(time_embed.0(emb)))
    emb = timestep_embedding(t, 16)
    expected = torch.nn.functional.linear(torch.nn.functional.silu(torch.nn.functional.linear(
        emb, state["time_embed.0.weight"], state["time_embed.0.bias"])), state["time_embed.2.weight"], state["time_embed.2.bias"])
    torch.testing.assert_close(net.embedding(t, 1), expected)


def test_another_layout_is_refused_with_one_message(tmp_path: Path) -> None:
    torch.save({"state_dict": guided_diffusion_unet_state(num_res_blocks=2)}, tmp_path / "ffhq_p2.pt")
    with pytest.raises(ReleasedWeightsError, match=r"ffhq_p2.pt.*guided-diffusion ADM UNet.*missing.*unexpected.*num_res_blocks"):
        load_adm_weights(ADMUNet(3, 3, **TINY), tmp_path / "ffhq_p2.pt")
    with pytest.raises(ReleasedWeightsError, match="another resolution's layout"):
        load_prior_weights(ADMUNet(3, 3, **TINY), tmp_path / "ffhq_p2.pt")


def test_published_prior_flags_build_the_published_sizes() -> None:
    assert set(PRIORS) >= {"256x256_diffusion_uncond.pt", "ffhq_10m.pt", "ffhq_p2.pt"}
    with torch.device("meta"):
        faces = ADMUNet(3, 3, **prior_kwargs("pretrained/ffhq_p2.pt"))
    assert 93.0e6 < sum(p.numel() for p in faces.parameters()) < 94.0e6, "Table 8.4's 93.6M (P2 / ILVR FFHQ-256)"
    with pytest.raises(KeyError, match="known"):
        prior_kwargs("mystery.pt")


def test_the_published_p2_and_imagenet_layouts_match_their_flags_at_full_size() -> None:
    """guided-diffusion's UNetModel names at 256 px (meta tensors) against ADMUNet(**prior_kwargs(file))."""
    from lightning_modules.components.released_weights import mismatch_report
    from released_helpers import meta_tensors

    for name, mc, blocks, attention in (("ffhq_p2.pt", 128, 1, (16,)), ("256x256_diffusion_uncond.pt", 256, 2, (8, 16, 32))):
        with meta_tensors():
            theirs = guided_diffusion_unet_state(model_channels=mc, channel_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=blocks,
                                                 attention_ds=attention)
        with torch.device("meta"):
            ours = ADMUNet(3, 3, **prior_kwargs(name))
        assert mismatch_report(ours.state_dict(), theirs) == [], name

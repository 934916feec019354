"""The tiny AlignTok stage-2 overlay exercises L_sp (thesis 000, Ch. 7 §7.2, the adaptive lambda_sp).

lambda_sp = ||grad L_rec|| / (||grad L_sp|| + eps) at the encoder's last layer, so that
lambda_sp * L_sp pulls on the encoder as hard as L_rec does. With DINOv2's random LayerScale
(1e-5) and VQGAN's eps (1e-4) the epsilon sets lambda_sp and L_sp is silent; the tiny overlay's
``init_values`` and ``sp_adaptive_eps`` restore the gradient-norm match (random-weight stand-ins).
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml

from lightning_modules.aligntok import AlignTokModule, AlignTokenizer
from lightning_modules.aligntok.losses import PatchDiscriminator

OVERLAY = Path(__file__).resolve().parents[1] / "configs" / "tiny" / "aligntok_stage2.yaml"


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def overlay_module(**override) -> AlignTokModule:
    """Stage 2 built from the tiny overlay's tokenizer and module arguments (``override`` replaces some)."""
    args = yaml.safe_load(OVERLAY.read_text())["model"]["init_args"]
    tok = copy.deepcopy(args["tokenizer"]["init_args"])
    encoder_kwargs = override.pop("encoder_kwargs", None)
    if encoder_kwargs is not None:
        tok["encoder"]["model_kwargs"] = encoder_kwargs
    torch.manual_seed(0)
    kwargs = {"sp_adaptive_eps": args.get("sp_adaptive_eps", 1e-4), **override}
    return AlignTokModule(AlignTokenizer(**tok), stage=2, discriminator=PatchDiscriminator(3, 8, 2),
                          lpips_net="alex", **kwargs)


def weighted_sp_pull(module: AlignTokModule) -> float:
    """||grad (lambda_sp L_sp)|| / ||grad L_rec|| at the encoder's last layer after one encoder step."""
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    opt = torch.optim.Adam(module.tokenizer.encoder.parameters(), lr=1e-3)
    opt.zero_grad()
    module.generator_losses(x, False)["nll"].backward()
    opt.step()  # the encoder moves away from its frozen stage-1 copy: L_sp > 0
    out = module.generator_losses(x, False)
    layer = module.tokenizer.encoder.last_layer()
    g_rec = torch.autograd.grad(out["nll"], layer, retain_graph=True)[0].norm()
    g_sp = torch.autograd.grad(out["sp_adaptive_weight"] * out["sp_loss"], layer)[0].norm()
    assert out["sp_loss"] > 0
    return float(g_sp / g_rec)


def test_tiny_overlay_lambda_sp_matches_the_gradient_norms():
    assert weighted_sp_pull(overlay_module()) == pytest.approx(1.0, rel=0.02)


def test_random_layerscale_with_vqgan_eps_silences_l_sp():
    """The failure the overlay avoids: DINOv2's LayerScale 1e-5 and eps 1e-4 leave L_sp almost no pull."""
    args = yaml.safe_load(OVERLAY.read_text())["model"]["init_args"]["tokenizer"]["init_args"]["encoder"]
    kwargs = {k: v for k, v in args["model_kwargs"].items() if k != "init_values"}
    assert weighted_sp_pull(overlay_module(encoder_kwargs=kwargs, sp_adaptive_eps=1e-4)) < 0.05

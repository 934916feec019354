"""Released weights for LTT-GAN: GFPGAN's published StyleGAN2 prior, as key maps onto the suite's StyleGAN2.

What was published:

* **LTT-GAN itself** ([code] github.com/MKFMIKU/LTT-GAN, a GFPGAN/BasicSR fork): no README, no
  release and no checkpoint link; the options files point at locally trained experiments. Nothing
  to import, so ``LTTGAN`` has no ``released_checkpoint``; a user trains it (``configs/ltt_gan.yaml``).
* **Its frozen prior** (thesis 001 Ch. 6 §6.3.2, "StyleGAN2 pretrained on FFHQ 512"): GFPGAN's
  release v0.1.0 asset ``StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth`` (BasicSR
  ``StyleGAN2Generator`` names, ``params_ema``) and the matching discriminator
  ``StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k_D.pth`` (``params``), plus ``arcface_resnet18.pth``
  for the identity loss. These go into ``model.stylegan_path`` / ``model.discriminator_path`` /
  ``model.arcface_path`` (the key names are the suite's own: :data:`BASICSR_MAP`).
* A rosinality/stylegan2-pytorch file (``g_ema`` / ``d``) holds the same tensors under other names:
  :data:`ROSINALITY_GENERATOR_MAP` / :data:`ROSINALITY_DISCRIMINATOR_MAP`.
* GFPGAN's own paper model ``GFPGANv1.pth`` carries the same StyleGAN2 under ``stylegan_decoder.``
  (its SFT generator adds no parameters to the decoder): :data:`GFPGAN_DECODER_MAP` takes the prior
  from it. The later "clean" models (GFPGANv1.3 / v1.4, ``StyleGAN2GeneratorClean``: no equalised
  learning rate: ``style_convs.<i>.bias`` where BasicSR has ``activate.bias``) are another layout: the
  strict check refuses them, naming those keys (:data:`CLEAN_HINT`).

Every map drops the FIR blur buffers (``*.kernel``): they are rebuilt from ``resample_kernel``.
"""
from __future__ import annotations

from typing import Mapping

from torch import Tensor

from lightning_modules.components.released_weights import KeyMap

_DROP_KERNELS = (r"\.kernel$",)

BASICSR_MAP = KeyMap(drop=_DROP_KERNELS, strip_prefixes=("module.",))

ROSINALITY_GENERATOR_MAP = KeyMap(drop=_DROP_KERNELS, strip_prefixes=("module.",), rules=(
    (r"^style\.", "style_mlp."),
    (r"^input\.input$", "constant_input.weight"),
    (r"^noises\.noise_(\d+)$", r"noises.noise\1"),
    (r"^conv1\.", "style_conv1."),
    (r"^convs\.", "style_convs."),
    (r"\.conv\.(weight|modulation)", r".modulated_conv.\1"),
    (r"\.noise\.weight$", ".weight"),
))

ROSINALITY_DISCRIMINATOR_MAP = KeyMap(drop=_DROP_KERNELS, strip_prefixes=("module.",), rules=((r"^convs\.", "conv_body."),))

GFPGAN_DECODER_MAP = KeyMap(drop=(*_DROP_KERNELS, r"^(?!stylegan_decoder\.)"), rules=((r"^stylegan_decoder\.", ""),))


CLEAN_HINT = ("GFPGAN's own StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth (BasicSR names, params_ema) or GFPGANv1.pth "
              "fit; GFPGANv1.3 / v1.4 'clean' models are another architecture. Another out_size or layout?")


def stylegan2_key_map(state: Mapping[str, Tensor], part: str = "generator") -> KeyMap:
    """The map for a file's layout, recognised from its names (``part``: ``generator`` or ``discriminator``)."""
    names = [k[len("module."):] if k.startswith("module.") else k for k in state]
    if any(k.startswith("stylegan_decoder.") for k in names):
        return GFPGAN_DECODER_MAP
    if part == "generator" and "input.input" in names:
        return ROSINALITY_GENERATOR_MAP
    if part == "discriminator" and any(k.startswith("convs.0.0.") for k in names):
        return ROSINALITY_DISCRIMINATOR_MAP
    return BASICSR_MAP


__all__ = ["BASICSR_MAP", "GFPGAN_DECODER_MAP", "ROSINALITY_DISCRIMINATOR_MAP", "ROSINALITY_GENERATOR_MAP",
           "CLEAN_HINT", "stylegan2_key_map"]

"""Pretrained parts of Inverse Painting: built at module construction, never at config parsing.

External weights a full run needs (docs/inverse_painting.md):

* ``sd_path``: Realistic Vision V5.1 in diffusers layout (``unet/``, ``vae/``, ``text_encoder/``,
  ``tokenizer/``), e.g. the hub repo ``SG161222/Realistic_Vision_V5.1_noVAE`` plus an SD-1.5
  VAE (``stabilityai/sd-vae-ft-mse``), or any SD-1.5-family folder (thesis §6.2).
* ``clip_path``: a CLIP image encoder; the official code uses ``openai/clip-vit-base-patch32``.
* ``lpips_backbone``: torchvision AlexNet weights for the difference-mask operator
  (``alexnet-owt-7be5be79.pth``) -- the linear heads ship with the ``lpips`` package.

With a path set to ``null`` the part is built with random weights from its config dict (tests and
tiny configs); the text tokenizer then falls back to :class:`HashWordTokenizer`, a documented
stand-in (no vocabulary files are needed). The parts themselves live in
``lightning_modules/components/sd_parts.py`` (shared with the portrait-editing paper); this file
keeps Inverse Painting's sources of the weights in the error messages.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Mapping, Optional

from torch import nn

from lightning_modules.components import sd_parts
from lightning_modules.components.sd_parts import HashWordTokenizer, vae_factor  # noqa: F401 (re-exported)

SD_SOURCE = (
    "Realistic Vision V5.1 (thesis §6.2) in diffusers layout, e.g. huggingface.co/SG161222/Realistic_Vision_V5.1_noVAE "
    "with the SD-1.5 VAE huggingface.co/stabilityai/sd-vae-ft-mse in vae/; any SD-1.5 folder works"
)
CLIP_SOURCE = "a CLIP image encoder; the official code uses huggingface.co/openai/clip-vit-base-patch32"


def build_unet(path: Optional[str], config: Optional[Mapping[str, Any]], key: str, **overrides: Any) -> nn.Module:
    """:func:`lightning_modules.components.sd_parts.build_unet` naming Realistic Vision V5.1 as the source."""
    return sd_parts.build_unet(path, config, key, source=SD_SOURCE, **overrides)


def build_vae(path: Optional[str], config: Optional[Mapping[str, Any]], key: str) -> nn.Module:
    return sd_parts.build_vae(path, config, key, source=SD_SOURCE)


TextEncoder = partial(sd_parts.TextEncoder, source=SD_SOURCE)
ClipImageEncoder = partial(sd_parts.ClipImageEncoder, source=CLIP_SOURCE)

"""Widening a diffusers UNet's input convolution with zero weights (generic component).

Used by the LDM scaling study's SR downstream (thesis 001, Ch. 2, Fig. 2.2: the low-resolution
latent is concatenated with the noisy latent) and usable by any concat-conditioned fine-tune
(InstructPix2Pix-style editing, inpainting UNets): the new input channels get zero weights, so the
widened UNet computes exactly what the original did at the start of fine-tuning.
"""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def expand_conv_in(unet: nn.Module, in_channels: int) -> nn.Module:
    """Replace ``unet.conv_in`` by one with ``in_channels`` inputs; the extra weights are zero.

    The original weights and bias are kept for the first channels; ``unet.config.in_channels`` is
    updated (``register_to_config``) so saved configs and sample shapes follow.
    """
    old = unet.conv_in
    if in_channels < old.in_channels:
        raise ValueError(f"cannot shrink conv_in from {old.in_channels} to {in_channels} channels")
    if in_channels == old.in_channels:
        return unet
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, stride=old.stride, padding=old.padding,
                    device=old.weight.device, dtype=old.weight.dtype)
    if old.weight.device.type != "meta":
        new.weight.zero_()
        new.weight[:, : old.in_channels] = old.weight
        new.bias.copy_(old.bias)
    unet.conv_in = new
    if hasattr(unet, "register_to_config"):
        unet.register_to_config(in_channels=in_channels)
    return unet


__all__ = ["expand_conv_in"]

"""Changing the channel count of a pretrained convolution explicitly (generic component).

Every module whose pretrained UNet gets a different number of input or output channels goes
through :func:`resize_conv2d` (issue 17): the LDM scaling study's SR downstream (thesis 001,
Ch. 2, Fig. 2.2: the low-resolution latent concatenated with the noisy latent), CoDi's encoder
copy (Ch. 5, Eq. 5.3: its ``conv_in`` reads the condition), Fit Check's 16-channel ``conv_in``
(thesis 000, Ch. 4) and Inverse Painting's renderer and mask generator (Ch. 6: ``in_channels = 9``,
``out_channels = 1``).

Why not ``from_pretrained(..., in_channels=...)`` with ``ignore_mismatched_sizes``: under diffusers
0.42 the skipped layers are left as uninitialised memory (values ~1e34, NaN losses at step 0).
Here the rule is explicit and deterministic in what it keeps:

* the overlapping block ``weight[:min(out), :min(in)]`` and ``bias[:min(out)]`` are copied;
* new *input* channels get zero weights, so a widened input computes exactly what the original
  did on the old channels when training starts;
* new *output* channels get zero weights and bias when ``new_outputs="zero"`` (the default: the
  new output starts at 0) or PyTorch's default ``Conv2d`` initialisation (``"default"``);
* dropping output channels keeps the first ones (e.g. the mask generator's one output channel is
  the pretrained noise prediction's first latent channel: [GAP] the chapter does not say how its
  1-channel ``conv_out`` is initialised; copying what fits is the issue's rule).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

NEW_OUTPUTS = ("zero", "default")


@torch.no_grad()
def resize_conv2d(old: nn.Conv2d, in_channels: Optional[int] = None, out_channels: Optional[int] = None,
                  new_outputs: str = "zero") -> nn.Conv2d:
    """A copy of ``old`` with ``in_channels`` inputs and ``out_channels`` outputs (module docstring rules)."""
    if new_outputs not in NEW_OUTPUTS:
        raise ValueError(f"new_outputs must be one of {list(NEW_OUTPUTS)}, got {new_outputs!r}")
    cin = old.in_channels if in_channels is None else int(in_channels)
    cout = old.out_channels if out_channels is None else int(out_channels)
    if cin < 1 or cout < 1:
        raise ValueError(f"channel counts must be >= 1, got in={cin} out={cout}")
    if old.groups != 1:
        raise ValueError("resize_conv2d handles ungrouped convolutions only")
    new = nn.Conv2d(cin, cout, old.kernel_size, stride=old.stride, padding=old.padding, dilation=old.dilation,
                    bias=old.bias is not None, padding_mode=old.padding_mode,
                    device=old.weight.device, dtype=old.weight.dtype)
    if old.weight.device.type == "meta":
        return new
    n_in, n_out = min(cin, old.in_channels), min(cout, old.out_channels)
    if new_outputs == "zero":
        new.weight.zero_()
        if new.bias is not None:
            new.bias.zero_()
    else:
        new.weight[:, n_in:].zero_()  # new inputs are always zero
    new.weight[:n_out, :n_in] = old.weight[:n_out, :n_in]
    if new.bias is not None:
        new.bias[:n_out] = old.bias[:n_out]
    return new


def resize_unet_channels(unet: nn.Module, in_channels: Optional[int] = None, out_channels: Optional[int] = None,
                         new_outputs: str = "zero") -> nn.Module:
    """Resize ``unet.conv_in`` / ``unet.conv_out`` in place and update ``unet.config`` to match."""
    changes = {}
    if in_channels is not None and int(in_channels) != unet.conv_in.in_channels:
        unet.conv_in = resize_conv2d(unet.conv_in, in_channels=in_channels)
        changes["in_channels"] = int(in_channels)
    if out_channels is not None and int(out_channels) != unet.conv_out.out_channels:
        unet.conv_out = resize_conv2d(unet.conv_out, out_channels=out_channels, new_outputs=new_outputs)
        changes["out_channels"] = int(out_channels)
    if changes and hasattr(unet, "register_to_config"):
        unet.register_to_config(**changes)
    return unet


def expand_conv_in(unet: nn.Module, in_channels: int) -> nn.Module:
    """Widen ``unet.conv_in`` to ``in_channels`` inputs (extra weights zero); shrinking is refused."""
    if in_channels < unet.conv_in.in_channels:
        raise ValueError(f"cannot shrink conv_in from {unet.conv_in.in_channels} to {in_channels} channels")
    return resize_unet_channels(unet, in_channels=in_channels)


__all__ = ["NEW_OUTPUTS", "expand_conv_in", "resize_conv2d", "resize_unet_channels"]

"""Restoration backbones that take the D2SM loss (thesis 001, Ch. 9, §9.4.1 / §9.4.3).

* :class:`FFDNet` (Zhang et al., TIP 2018), the denoising backbone of Table 9.1, at its
  published colour size: the image is pixel-unshuffled by 2 (12 channels), a noise-level map
  (sigma / 255; 3 channels as FFDNet's colour model, ``noise_map_channels=1`` as the d2sm code) is appended, 12
  3x3 conv layers with 96 features and ReLU run at half resolution (the d2sm code has no batch
  norm; ``batch_norm=True`` gives the original FFDNet's BN in the middle layers), and the 12
  output channels are pixel-shuffled back. It predicts the clean image (not a residual).
  Odd sizes are replicate-padded to even and cropped back, so any image size works.
* :class:`PlainRestorer`: the generic slot's built-in example, a plain conv net with an
  optional pixel-shuffle upscale; CBDNet, SADNet, DICNet or MSBDN-DFF (not available in any
  installed library) plug in as any ``nn.Module`` mapping ``[B, 3, h, w]`` in [-1, 1] to the
  restored ``[B, 3, H, W]`` (set ``takes_noise_level = True`` to receive sigma as FFDNet does).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FFDNet(nn.Module):
    """FFDNet with the noise-level map input; defaults = the published colour model (12 layers, 96 features)."""

    takes_noise_level = True

    def __init__(self, channels: int = 3, features: int = 96, num_layers: int = 12, batch_norm: bool = False,
                 noise_map_channels: Optional[int] = None) -> None:
        super().__init__()
        if num_layers < 2:
            raise ValueError(f"FFDNet needs num_layers >= 2, received {num_layers}")
        self.channels = int(channels)
        self.noise_map_channels = int(noise_map_channels or channels)
        down = self.channels * 4
        layers: list[nn.Module] = [nn.Conv2d(down + self.noise_map_channels, features, 3, padding=1),
                                   nn.ReLU(inplace=True)]
        for _ in range(num_layers - 2):
            layers.append(nn.Conv2d(features, features, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(features))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Conv2d(features, down, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, noisy: Tensor, sigma: Tensor) -> Tensor:
        """``noisy [B, C, H, W]`` in [-1, 1]; ``sigma [B]`` on the 0..255 scale (noise std of the [0, 255] image)."""
        height, width = noisy.shape[-2:]
        pad = (0, width % 2, 0, height % 2)
        x = F.pad(noisy, pad, mode="replicate") if any(pad) else noisy
        x = (x + 1.0) * 0.5  # FFDNet works on [0, 1]
        sub = F.pixel_unshuffle(x, 2)
        level = (sigma.to(sub).view(-1, 1, 1, 1) / 255.0).expand(sub.shape[0], self.noise_map_channels, *sub.shape[-2:])
        out = F.pixel_shuffle(self.body(torch.cat([sub, level], 1)), 2)
        return (out * 2.0 - 1.0)[..., :height, :width]


class PlainRestorer(nn.Module):
    """Generic slot example: conv-ReLU stack with a global residual and an optional x``scale`` upsampler."""

    takes_noise_level = False

    def __init__(self, channels: int = 3, features: int = 64, num_layers: int = 8, scale: int = 1) -> None:
        super().__init__()
        self.scale = int(scale)
        layers: list[nn.Module] = [nn.Conv2d(channels, features, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(max(num_layers - 2, 0)):
            layers += [nn.Conv2d(features, features, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(features, channels * self.scale**2, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, image: Tensor, sigma: Optional[Tensor] = None) -> Tensor:
        base = image if self.scale == 1 else F.interpolate(image, scale_factor=self.scale, mode="bicubic",
                                                             align_corners=False)
        out = self.body(image)
        return base + (F.pixel_shuffle(out, self.scale) if self.scale > 1 else out)


def run_restorer(restorer: nn.Module, inputs: Tensor, sigma: Optional[Tensor]) -> Tensor:
    """Call a slot restorer, passing sigma only to those that take a noise level."""
    if getattr(restorer, "takes_noise_level", False):
        if sigma is None:
            raise ValueError(f"{type(restorer).__name__} needs the noise level sigma (batch key 'sigma')")
        return restorer(inputs, sigma)
    return restorer(inputs)


__all__ = ["FFDNet", "PlainRestorer", "run_restorer"]

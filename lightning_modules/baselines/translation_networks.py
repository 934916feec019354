"""Generators of the lecture's image-to-image translation models.

* :class:`UNetGenerator` (pix2pix, Isola et al. 2017; digest 002-003 B2 [X] "U-Net generator"):
  an encoder of ``num_downs`` 4x4 stride-2 convs (C64-C128-C256-C512-C512...; 8 downs take 256 px
  to 1x1), a mirrored decoder of 4x4 stride-2 transposed convs, skip connections concatenating
  encoder layer i with decoder layer n - i, BatchNorm, LeakyReLU 0.2 in the encoder, ReLU in the
  decoder, dropout 0.5 on the three decoder layers above the innermost (pix2pix's noise z), tanh output.
* :class:`ResnetGenerator` (CycleGAN, Zhu et al. 2017, after Johnson et al. 2016): c7s1-64, d128,
  d256, ``n_blocks`` residual blocks (9 at 256 px, 6 at 128 px), u128, u64, c7s1-C, instance
  norm, reflection padding, tanh output.

Both work at any input size that is a multiple of their stride (``UNetGenerator.multiple`` =
2^num_downs, ``ResnetGenerator.multiple`` = 4); predict pads the user's images to it.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn


class _UNetLevel(nn.Module):
    """One encoder/decoder level around an inner module (``None`` = the innermost)."""

    def __init__(self, outer: int, inner: int, in_channels: Optional[int], submodule: Optional[nn.Module],
                 outermost: bool, dropout: bool, out_channels: Optional[int] = None) -> None:
        super().__init__()
        cin = in_channels if in_channels is not None else outer
        innermost = submodule is None
        down: list[nn.Module] = [] if outermost else [nn.LeakyReLU(0.2, True)]
        down.append(nn.Conv2d(cin, inner, 4, 2, 1, bias=False))  # BatchNorm follows or the level is outer/innermost: pix2pix uses no bias
        if not (outermost or innermost):
            down.append(nn.BatchNorm2d(inner))
        up_in = inner if innermost else 2 * inner
        up: list[nn.Module] = [nn.ReLU(True), nn.ConvTranspose2d(up_in, out_channels or outer, 4, 2, 1, bias=outermost)]
        if outermost:
            up.append(nn.Tanh())
        else:
            up.append(nn.BatchNorm2d(outer))
            if dropout:
                up.append(nn.Dropout(0.5))
        self.down, self.up = nn.Sequential(*down), nn.Sequential(*up)
        self.submodule = submodule if submodule is not None else nn.Identity()
        self.outermost = outermost

    def forward(self, x: Tensor) -> Tensor:
        y = self.up(self.submodule(self.down(x)))
        return y if self.outermost else torch.cat([x, y], dim=1)


class UNetGenerator(nn.Module):
    """pix2pix's U-Net (module docstring); ``num_downs = 8`` for 256x256 images."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, num_downs: int = 8, base_channels: int = 64,
                 dropout: bool = True) -> None:
        super().__init__()
        if num_downs < 2:
            raise ValueError(f"model.generator.num_downs must be >= 2, got {num_downs}")
        widths = [base_channels * min(2 ** i, 8) for i in range(num_downs)]  # 64,128,256,512,512,...
        level: Optional[nn.Module] = None
        for i in reversed(range(1, num_downs)):
            use_dropout = dropout and level is not None and i >= num_downs - 4  # the 3 levels above the innermost
            level = _UNetLevel(widths[i - 1], widths[i], None, level, outermost=False, dropout=use_dropout)
        self.model = _UNetLevel(out_channels, widths[0], in_channels, level, outermost=True, dropout=False,
                                out_channels=out_channels)
        self.multiple = 2 ** num_downs
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2] % self.multiple or x.shape[-1] % self.multiple:
            raise ValueError(f"UNetGenerator with {self.multiple.bit_length() - 1} downsamplings needs sides that are "
                             f"multiples of {self.multiple}, got {tuple(x.shape[-2:])}")
        return self.model(x)


class _ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's ResNet generator (module docstring)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, base_channels: int = 64, n_blocks: int = 9) -> None:
        super().__init__()
        w = base_channels
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, w, 7), nn.InstanceNorm2d(w), nn.ReLU(True)]
        for mult in (1, 2):
            layers += [nn.Conv2d(w * mult, w * mult * 2, 3, 2, 1), nn.InstanceNorm2d(w * mult * 2), nn.ReLU(True)]
        layers += [_ResBlock(4 * w) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += [nn.ConvTranspose2d(w * mult, w * mult // 2, 3, 2, 1, output_padding=1),
                       nn.InstanceNorm2d(w * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(w, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.multiple = 4
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2] % 4 or x.shape[-1] % 4:
            raise ValueError(f"ResnetGenerator needs sides that are multiples of 4, got {tuple(x.shape[-2:])}")
        return self.model(x)


__all__ = ["ResnetGenerator", "UNetGenerator"]

"""Generator and discriminator networks of the lecture's unconditional and class-conditional GANs.

* :class:`MLP`: the fully-connected nets of the toy GAN (Goodfellow et al. 2014's 1-D point
  demo, seed 002 "1-D toy point generation"; the 2-D 8-Gaussians ring of Metz et al. 2017).
* :class:`DCGANGenerator` / :class:`DCGANDiscriminator`: Radford et al. (2015) as the lecture lists
  them (seed 002 lines 749-764): no fully connected layers (the generator starts with a 4x4
  transposed conv from z as a 1x1 map, the discriminator ends with a 4x4 conv to one logit),
  BatchNorm in both (not on G's output nor D's input layer, as in the paper), ReLU in G with a
  tanh output, LeakyReLU 0.2 in D. Widths halve/double per 2x resolution step from ``8 *
  base_channels`` at 4x4 (the paper's 1024..128 for 64x64 with base 128; PyTorch's DCGAN example
  uses base 64; with it the parameter counts equal that example's, 3,576,704 and 2,765,568, as all
  convolutions are bias-free when BatchNorm is on). ``batch_norm=False`` is the lecture's ablation
  (biases then on every convolution).
* Class conditioning (Mirza & Osindero 2014; "conditional GAN: D sees the input too", line 1190):
  G receives ``[z, embed(y)]``; D receives the image with ``num_classes`` one-hot label planes.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn


class MLP(nn.Module):
    """``in -> [Linear, act] x depth -> out`` (the toy GAN's G and D)."""

    def __init__(self, in_features: int, out_features: int, hidden: int = 128, depth: int = 3,
                 activation: str = "relu") -> None:
        super().__init__()
        act = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "tanh": nn.Tanh}.get(activation)
        if act is None:
            raise ValueError(f"MLP activation={activation!r} is not relu, leaky_relu or tanh")
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), act()]
            width = hidden
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)
        self.in_features = in_features

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _num_up(image_size: int) -> int:
    steps = math.log2(image_size) - 2
    if image_size < 8 or steps != int(steps):
        raise ValueError(f"DCGAN image_size must be a power of two >= 8, got {image_size}")
    return int(steps)


class DCGANGenerator(nn.Module):
    """z [B, latent_dim] (+ labels) -> image [B, C, S, S] in [-1, 1]."""

    def __init__(self, latent_dim: int = 100, image_size: int = 64, channels: int = 3, base_channels: int = 64,
                 batch_norm: bool = True, num_classes: Optional[int] = None, label_dim: int = 50) -> None:
        super().__init__()
        n = _num_up(image_size)
        self.latent_dim, self.num_classes, self.image_size, self.channels = latent_dim, num_classes, image_size, channels
        self.label_embedding = nn.Embedding(num_classes, label_dim) if num_classes else None
        cin = latent_dim + (label_dim if num_classes else 0)
        width = base_channels * 2 ** (n - 1)  # at 4x4: 8 * base for 64x64

        def norm(c: int) -> nn.Module:
            return nn.BatchNorm2d(c) if batch_norm else nn.Identity()

        layers: list[nn.Module] = [nn.ConvTranspose2d(cin, width, 4, 1, 0, bias=not batch_norm), norm(width), nn.ReLU(True)]
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=not batch_norm), norm(width // 2), nn.ReLU(True)]
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=not batch_norm), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        if self.label_embedding is not None:
            if labels is None:
                raise ValueError("a class-conditional generator needs labels")
            z = torch.cat([z, self.label_embedding(labels)], dim=1)
        return self.net(z[:, :, None, None])


class DCGANDiscriminator(nn.Module):
    """image [B, C, S, S] (+ labels) -> one logit per image [B]."""

    def __init__(self, image_size: int = 64, channels: int = 3, base_channels: int = 64, batch_norm: bool = True,
                 num_classes: Optional[int] = None) -> None:
        super().__init__()
        n = _num_up(image_size)
        self.num_classes, self.image_size = num_classes, image_size
        cin = channels + (num_classes or 0)
        width = base_channels
        layers: list[nn.Module] = [nn.Conv2d(cin, width, 4, 2, 1, bias=not batch_norm), nn.LeakyReLU(0.2, True)]
        for _ in range(n - 1):
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=not batch_norm),
                       nn.BatchNorm2d(width * 2) if batch_norm else nn.Identity(), nn.LeakyReLU(0.2, True)]
            width *= 2
        layers.append(nn.Conv2d(width, 1, 4, 1, 0, bias=not batch_norm))
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, x: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            raise ValueError(f"DCGAN discriminator expects {self.image_size}x{self.image_size} images, got {tuple(x.shape)}")
        if self.num_classes:
            if labels is None:
                raise ValueError("a class-conditional discriminator needs labels")
            planes = nn.functional.one_hot(labels, self.num_classes).to(x.dtype)[:, :, None, None]
            x = torch.cat([x, planes.expand(-1, -1, *x.shape[-2:])], dim=1)
        return self.net(x).flatten()


def dcgan_init(module: nn.Module) -> None:
    """Radford et al.: weights from N(0, 0.02); BatchNorm scale from N(1, 0.02), bias 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


__all__ = ["DCGANDiscriminator", "DCGANGenerator", "MLP", "dcgan_init"]

"""``PixelCNN`` on binarised images (lecture seed 002, "autoregressive models"; van den Oord et al. 2016).

p(x) = prod_i p(x_i | x_1 .. x_{i-1}) in raster order, each factor "a next-token classifier"
(digest B2); the classic setup is binarised MNIST with the NLL in bits/dim (digest B2 [X]). Network
(van den Oord et al. 2016, Table 1 / Sec. 3.4): a 7x7 convolution with mask A (a pixel does not see
itself), ``num_blocks`` residual blocks of 1x1 -> 3x3 mask-B -> 1x1 convolutions (mask B: a pixel
sees itself in the layers after the first), two 1x1 ReLU layers and one Bernoulli logit per pixel.
Widths: 2h = 2 x ``hidden_channels`` as in the paper's residual block (h = 64 for MNIST; the lecture is
silent). Inputs in [-1, 1] are binarised at 0 (``x > 0``), the usual "binarised digits" (a fixed
threshold, not stochastic binarisation: a documented choice).

Logged: ``train/loss`` (NLL in nats per image), ``val/bits_per_dim``, ``test/bits_per_dim``.
``sample`` draws pixel by pixel (H x W network calls); predict writes samples with a manifest.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from lightning_modules.baselines.lecture_predict import WritesPredictions, request_seeds, seeded_normal
from lightning_modules.components.predict_outputs import variant_tag
from lightning_modules.components.frozen_parts import FrozenPartsModule


class MaskedConv2d(nn.Conv2d):
    """A convolution that sees only the pixels above and to the left (``mask="A"``: not the centre)."""

    def __init__(self, mask: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if mask not in ("A", "B"):
            raise ValueError(f"mask must be 'A' or 'B', got {mask!r}")
        kh, kw = self.kernel_size
        weight_mask = torch.ones_like(self.weight)
        weight_mask[:, :, kh // 2, kw // 2 + (1 if mask == "B" else 0):] = 0
        weight_mask[:, :, kh // 2 + 1:] = 0
        self.register_buffer("mask", weight_mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, self.stride, self.padding, self.dilation, self.groups)


class _ResidualBlock(nn.Module):
    def __init__(self, h: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(2 * h, h, 1), nn.ReLU(), MaskedConv2d("B", h, h, 3, padding=1),
                                  nn.ReLU(), nn.Conv2d(h, 2 * h, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class PixelCNN(WritesPredictions, FrozenPartsModule):
    """Binarised-image PixelCNN (module docstring).

    Args:
        image_size: side of the (square, single-channel) images.
        hidden_channels: h of the residual blocks (2h channels between them).
        num_blocks: residual blocks (the paper uses 15 for MNIST-size data).
        optimizer: optimizer factory.
        num_predict_samples: images ``predict`` draws per predict batch (``None``: one per item).
    """

    def __init__(self, image_size: int = 16, hidden_channels: int = 64, num_blocks: int = 15,
                 optimizer: OptimizerCallable = torch.optim.Adam, num_predict_samples: Optional[int] = None,
                 predict_seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer"])
        h = hidden_channels
        self.network = nn.Sequential(
            MaskedConv2d("A", 1, 2 * h, 7, padding=3),
            *[_ResidualBlock(h) for _ in range(num_blocks)],
            nn.ReLU(), nn.Conv2d(2 * h, 2 * h, 1), nn.ReLU(), nn.Conv2d(2 * h, 1, 1),
        )
        self.image_size, self.optimizer_factory = image_size, optimizer
        self.num_predict_samples, self.predict_seed = num_predict_samples, predict_seed

    def configure_optimizers(self):
        return self.optimizer_factory(self.trainable_parameters())

    @staticmethod
    def binarise(images: Tensor) -> Tensor:
        """[-1, 1] grey images (1 or 3 channels) -> {0, 1} ``[B, 1, H, W]``."""
        return (images.mean(1, keepdim=True) > 0).float()

    def nll(self, images: Tensor) -> Tensor:
        """-log p(x) in nats per image of the binarised ``images``."""
        x = self.binarise(images)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            raise ValueError(f"PixelCNN expects {self.image_size}x{self.image_size} images (model.image_size), got {tuple(x.shape[-2:])}")
        return F.binary_cross_entropy_with_logits(self.network(x), x, reduction="none").flatten(1).sum(1)

    def bits_per_dim(self, images: Tensor) -> Tensor:
        return self.nll(images).mean() / (self.image_size ** 2 * math.log(2))

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.nll(batch["image"]).mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        self.log("val/bits_per_dim", self.bits_per_dim(batch["image"]), batch_size=len(batch["image"]), sync_dist=True)

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        self.log("test/bits_per_dim", self.bits_per_dim(batch["image"]), batch_size=len(batch["image"]), sync_dist=True)

    @torch.no_grad()
    def sample(self, num_samples: int, generator: Optional[torch.Generator] = None, uniforms: Optional[Tensor] = None,
               **_: Any) -> Tensor:
        """Raster-order ancestral sampling; images in {-1, 1} ``[N, 1, S, S]``. ``uniforms [N, S, S]``
        (U[0, 1)) fixes the Bernoulli draws (one seed per sample in ``predict``)."""
        s = self.image_size
        x = torch.zeros(num_samples, 1, s, s, device=self.device)
        for i in range(s):
            for j in range(s):
                p = torch.sigmoid(self.network(x)[:, 0, i, j])
                u = uniforms[:, i, j] if uniforms is not None else torch.rand(p.shape, generator=generator, device=p.device)
                x[:, 0, i, j] = (u < p).float()
        return x * 2 - 1

    def predict_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        writer = self.writer("samples")
        requests = request_seeds(batch, self.predict_seed)
        if requests is not None:  # --data.num_samples N: one seed per sample
            indices, seeds = requests
            uniforms = seeded_normal(seeds, (self.image_size, self.image_size), self.device, uniform=True)
            for index, seed, image in zip(indices, seeds, self.sample(len(seeds), uniforms=uniforms)):
                writer.save(f"sample{index:05d}", image, source=index, variant=variant_tag(seed=seed), seed=seed)
            return
        count = self.num_predict_samples or len(batch["image"])
        generator = torch.Generator(device=self.device).manual_seed(self.predict_seed + batch_idx)
        for i, image in enumerate(self.sample(count, generator=generator)):
            writer.save(f"sample_{batch_idx * count + i:05d}", image)


__all__ = ["MaskedConv2d", "PixelCNN"]

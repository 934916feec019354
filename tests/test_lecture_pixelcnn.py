"""PixelCNN: each output depends only on earlier pixels in raster order; a tiny fit lowers bits/dim."""
from __future__ import annotations

import functools
import math

import lightning as L
import torch

from datamodules.embedded import DigitsDataModule
from lightning_modules.baselines import PixelCNN


def test_output_at_each_pixel_depends_only_on_the_pixels_before_it() -> None:
    model = PixelCNN(image_size=6, hidden_channels=4, num_blocks=2)
    x = torch.rand(1, 1, 6, 6, requires_grad=True)
    out = model.network(x)
    for i in range(6):
        for j in range(6):
            (grad,) = torch.autograd.grad(out[0, 0, i, j], x, retain_graph=True)
            order = torch.arange(36).view(6, 6)
            later = order >= i * 6 + j
            assert grad[0, 0][later].abs().max() == 0, f"pixel ({i},{j}) sees itself or a later pixel"
            if i * 6 + j > 0:
                assert grad[0, 0][~later].abs().sum() > 0


def test_tiny_fit_lowers_bits_per_dim_and_sampling_is_binary() -> None:
    L.seed_everything(0)
    data = DigitsDataModule(size=8, batch_size=64)
    data.setup()
    batch = next(iter(data.val_dataloader()))["image"]
    model = PixelCNN(image_size=8, hidden_channels=8, num_blocks=1, optimizer=functools.partial(torch.optim.Adam, lr=3e-3))
    with torch.no_grad():
        before = float(model.bits_per_dim(batch))
    assert abs(before - 1.0) < 0.2  # a random net predicts ~1/2 everywhere: ~1 bit per pixel
    L.Trainer(max_steps=60, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, limit_val_batches=0).fit(model, data)
    with torch.no_grad():
        after = float(model.bits_per_dim(batch))
    assert after < before - 0.2
    samples = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (3, 1, 8, 8) and set(samples.unique().tolist()) <= {-1.0, 1.0}
    assert math.isfinite(after)

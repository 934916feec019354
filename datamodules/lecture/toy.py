"""Toy distributions of the lecture's GAN and density-fitting demos (seed 002, "1-D toy point
generation"; digest 002-003 B3: "1-D bimodal or 2-D 8-Gaussians ring").

* ``"ring8"``: eight isotropic Gaussians of standard deviation ``std`` whose means lie evenly on a
  circle of radius ``radius`` (Metz et al. 2017's unrolled-GAN benchmark; VEEGAN's mode-coverage
  protocol, Srivastava et al. 2017, uses radius 2 and std 0.02; the default 0.05 keeps the tiny
  CPU runs meaningful: a documented choice).
* ``"bimodal1d"``: an equal mixture of N(-radius, std^2) and N(+radius, std^2).

Batches: ``{"sample": float32 [B, D]}`` (D = 2 or 1). Samples depend only on (seed, split, index).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from datamodules._common import EmbeddedDataModule, TensorDictDataset

TOY_KINDS = ("ring8", "bimodal1d")


def toy_modes(kind: str, radius: float = 2.0) -> Tensor:
    """The mixture's means ``[M, D]``."""
    if kind == "ring8":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        return (radius * torch.stack([angles.cos(), angles.sin()], dim=1)).float()
    if kind == "bimodal1d":
        return torch.tensor([[-radius], [radius]], dtype=torch.float32)
    raise ValueError(f"data.kind={kind!r} is not one of {list(TOY_KINDS)}")


def toy_samples(kind: str, count: int, std: float, radius: float, seed: int) -> Tensor:
    """``count`` samples of the mixture, equal weights."""
    modes = toy_modes(kind, radius).double().numpy()
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(modes), size=count)
    points = modes[which] + std * rng.standard_normal((count, modes.shape[1]))
    return torch.from_numpy(points).float()


class ToyDataModule(EmbeddedDataModule):
    """Samples of a toy mixture (module docstring).

    Args:
        kind: ``"ring8"`` or ``"bimodal1d"``.
        num_train / num_val: samples per split (disjoint seeded streams).
        std / radius: mixture parameters.
    """

    def __init__(self, kind: str = "ring8", num_train: int = 10000, num_val: int = 2000, std: float = 0.05,
                 radius: float = 2.0, batch_size: int = 256, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__(batch_size, num_workers, 0.1, seed, False)
        toy_modes(kind)
        if std <= 0 or radius <= 0:
            raise ValueError(f"data.std and data.radius must be > 0, got {std}, {radius}")
        if num_train < 1 or num_val < 1:
            raise ValueError(f"data.num_train and data.num_val must be >= 1, got {num_train}, {num_val}")
        self.kind, self.num_train, self.num_val, self.std, self.radius = kind, int(num_train), int(num_val), float(std), float(radius)
        self.dim = 2 if kind == "ring8" else 1
        self.save_hyperparameters()

    def modes(self) -> Tensor:
        return toy_modes(self.kind, self.radius)

    def build_datasets(self):
        train = toy_samples(self.kind, self.num_train, self.std, self.radius, self.seed * 2)
        val = toy_samples(self.kind, self.num_val, self.std, self.radius, self.seed * 2 + 1)
        return TensorDictDataset({"sample": train}), TensorDictDataset({"sample": val})


__all__ = ["TOY_KINDS", "ToyDataModule", "toy_modes", "toy_samples"]

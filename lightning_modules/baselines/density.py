"""Density fitting by maximum likelihood (lecture seed 002, "density fitting / max likelihood").

max_theta E_{x ~ p_data}[log p_theta(x)]. The lecture's Gaussian case has a closed form (mu = the
sample mean, sigma^2 = (1/N) sum (x - mu)^2: :func:`gaussian_closed_form`); its mixture of Gaussians
p(x) = sum_i w_i N(x; mu_i, Sigma_i) (diagonal Sigma_i here) has none and is fitted by SGD on the
NLL (tests compare it with scikit-learn's EM ``GaussianMixture``). Both are LightningModules on
``{"sample": [B, D]}`` batches (:class:`datamodules.lecture.ToyDataModule`), logging ``train/loss``
and ``val/nll`` (nats per sample).
"""
from __future__ import annotations

import math
from typing import Mapping

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn


def gaussian_closed_form(samples: Tensor) -> tuple[Tensor, Tensor]:
    """Maximum-likelihood mean and (biased, 1/N) variance per dimension."""
    mean = samples.mean(0)
    return mean, (samples - mean).pow(2).mean(0)


class _Density(LightningModule):
    def __init__(self, lr: float) -> None:
        super().__init__()
        self.lr = lr

    def log_prob(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        loss = -self.log_prob(batch["sample"]).mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["sample"]))
        return loss

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        self.log("val/nll", -self.log_prob(batch["sample"]).mean(), batch_size=len(batch["sample"]), sync_dist=True)


class GaussianMLE(_Density):
    """A diagonal Gaussian fitted by SGD; compare with :func:`gaussian_closed_form`."""

    def __init__(self, dim: int = 1, lr: float = 0.05) -> None:
        super().__init__(lr)
        self.save_hyperparameters()
        self.mean = nn.Parameter(torch.zeros(dim))
        self.log_std = nn.Parameter(torch.zeros(dim))

    def log_prob(self, x: Tensor) -> Tensor:
        var = (2 * self.log_std).exp()
        return (-0.5 * ((x - self.mean).pow(2) / var + 2 * self.log_std + math.log(2 * math.pi))).sum(1)


class GMMDensity(_Density):
    """A K-component diagonal Gaussian mixture fitted by SGD on the NLL.

    Means start at ``init_scale`` x N(0, I) draws (seeded), log-stds at 0, weights uniform.
    """

    def __init__(self, dim: int = 1, num_components: int = 2, lr: float = 0.05, init_scale: float = 1.0,
                 seed: int = 0) -> None:
        super().__init__(lr)
        self.save_hyperparameters()
        if num_components < 1:
            raise ValueError(f"model.num_components must be >= 1, got {num_components}")
        g = torch.Generator().manual_seed(seed)
        self.logits = nn.Parameter(torch.zeros(num_components))
        self.means = nn.Parameter(init_scale * torch.randn(num_components, dim, generator=g))
        self.log_stds = nn.Parameter(torch.zeros(num_components, dim))

    def log_prob(self, x: Tensor) -> Tensor:
        diff = x[:, None, :] - self.means[None]
        var = (2 * self.log_stds).exp()[None]
        per_component = (-0.5 * (diff.pow(2) / var + 2 * self.log_stds[None] + math.log(2 * math.pi))).sum(2)
        return torch.logsumexp(per_component + self.logits.log_softmax(0)[None], dim=1)


__all__ = ["GMMDensity", "GaussianMLE", "gaussian_closed_form"]

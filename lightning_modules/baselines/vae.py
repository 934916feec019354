"""``VAE`` (Kingma & Welling 2014; Rezende et al. 2014; lecture seed 002 lines 907-1053).

The lecture's density model p(x) = integral p(x|z) p(z) dz with a decoder N(G^mu(z), G^sigma(z))
and an encoder that infers z (lines 924-984); the objective implemented is the ELBO (digest B2 [X]):

    log p(x) >= E_{q(z|x)}[log p(x|z)] - KL(q(z|x) || N(0, I)),
    z = mu + sigma * eps (reparameterisation),  KL = -1/2 sum(1 + log sigma^2 - mu^2 - sigma^2).

Networks: Kingma & Welling's MLPs (one hidden layer of 500 tanh units for MNIST in their Sec. 5;
here ``hidden`` layers of ReLU units, default (500,)), a diagonal-Gaussian encoder, and a
``"bernoulli"`` decoder (logits; targets are the grey levels (x + 1) / 2 in [0, 1], the usual
continuous-Bernoulli-free practice on non-binarised digits: a documented choice) or a
``"gaussian"`` decoder with per-pixel mean and log-variance (the lecture's G^mu, G^sigma; the
log-variance is clamped to [-8, 4] for stability, a documented choice).

Evaluation: ``val/elbo`` (nats per image, higher is better) every validation; ``test/nll`` is the
importance-weighted bound (Burda et al. 2016) log p(x) ~ log (1/K) sum_k p(x, z_k) / q(z_k | x) with
``num_importance_samples`` K, also as ``test/bits_per_dim``. With a 2-D latent, predict writes the
latent manifold figure (Kingma & Welling Fig. 4: decoder means on a grid of Gaussian quantiles)
besides samples, reconstructions and an interpolation strip.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from lightning_modules.baselines.lecture_predict import WritesPredictions, request_seeds, seeded_normal
from lightning_modules.components.predict_outputs import variant_tag
from lightning_modules.components.frozen_parts import FrozenPartsModule


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """Closed-form KL(N(mu, diag exp(logvar)) || N(0, I)) per sample: -1/2 sum(1 + logvar - mu^2 - exp(logvar))."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).flatten(1).sum(1)


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class VAE(WritesPredictions, FrozenPartsModule):
    """MLP VAE on images in [-1, 1] (module docstring).

    Args:
        image_size / channels: the data's shape.
        latent_dim: dimension of z (2 gives the manifold figure).
        hidden: hidden layer widths of the encoder (the decoder mirrors them).
        decoder: ``"bernoulli"`` or ``"gaussian"``.
        num_importance_samples: K of the importance-weighted test NLL.
        optimizer: optimizer factory (Kingma & Welling used Adagrad; Adam 1e-3 is the common choice).
        val_seed: seed of the validation noise (comparable values across validations).
        predict_seed: seed of the predict noise.
        num_predict_samples: if set, ``predict`` writes exactly this many samples (else one per predict item).
    """

    def __init__(self, image_size: int = 32, channels: int = 1, latent_dim: int = 2, hidden: Sequence[int] = (500,),
                 decoder: str = "bernoulli", num_importance_samples: int = 64,
                 optimizer: OptimizerCallable = torch.optim.Adam, val_seed: int = 1234,
                 predict_seed: int = 0, num_predict_samples: Optional[int] = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer"])
        if decoder not in ("bernoulli", "gaussian"):
            raise ValueError(f"model.decoder={decoder!r} is not 'bernoulli' or 'gaussian'")
        if latent_dim < 1 or num_importance_samples < 1:
            raise ValueError("model.latent_dim and model.num_importance_samples must be >= 1")
        self.shape = (channels, image_size, image_size)
        pixels = channels * image_size * image_size
        hidden = list(hidden)
        self.encoder = _mlp([pixels, *hidden, 2 * latent_dim])
        self.decoder = _mlp([latent_dim, *reversed(hidden), pixels * (2 if decoder == "gaussian" else 1)])
        self.latent_dim, self.decoder_kind, self.pixels = latent_dim, decoder, pixels
        self.num_importance_samples, self.optimizer_factory = num_importance_samples, optimizer
        self.val_seed, self.predict_seed = val_seed, predict_seed
        if num_predict_samples is not None and num_predict_samples < 1:
            raise ValueError(f"model.num_predict_samples must be >= 1, got {num_predict_samples}")
        self.num_predict_samples = num_predict_samples

    def configure_optimizers(self):
        return self.optimizer_factory(self.trainable_parameters())

    # ------------------------------------------------------------------ model
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"VAE expects images {self.shape}, got {tuple(x.shape[1:])} (model.image_size / model.channels)")
        mu, logvar = self.encoder(x.flatten(1)).chunk(2, dim=1)
        return mu, logvar

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) per sample (nats), x [B, ...] in [-1, 1], z [B, latent]."""
        out = self.decoder(z)
        target = x.flatten(1)
        if self.decoder_kind == "bernoulli":
            return -F.binary_cross_entropy_with_logits(out, (target + 1) / 2, reduction="none").sum(1)
        mean, logvar = out.chunk(2, dim=1)
        logvar = logvar.clamp(-8, 4)
        return -0.5 * (math.log(2 * math.pi) + logvar + (target - mean).pow(2) / logvar.exp()).sum(1)

    def decode_mean(self, z: Tensor) -> Tensor:
        out = self.decoder(z)
        mean = out.sigmoid() * 2 - 1 if self.decoder_kind == "bernoulli" else out.chunk(2, dim=1)[0].clamp(-1, 1)
        return mean.view(-1, *self.shape)

    def elbo(self, x: Tensor, generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        """Per-sample ``elbo``, ``reconstruction`` (E_q log p(x|z), one sample) and ``kl`` (nats)."""
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + (0.5 * logvar).exp() * eps
        reconstruction = self.log_likelihood(x, z)
        kl = gaussian_kl(mu, logvar)
        return {"elbo": reconstruction - kl, "reconstruction": reconstruction, "kl": kl}

    @torch.no_grad()
    def importance_weighted_nll(self, x: Tensor, num_samples: Optional[int] = None,
                                generator: Optional[torch.Generator] = None) -> Tensor:
        """-log p(x) estimated with K importance samples from q(z|x) (Burda et al. 2016), per sample."""
        k = num_samples or self.num_importance_samples
        mu, logvar = self.encode(x)
        std = (0.5 * logvar).exp()
        weights = []
        for _ in range(k):
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            z = mu + std * eps
            log_prior = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(1)
            log_q = -0.5 * (eps.pow(2) + math.log(2 * math.pi) + logvar).sum(1)
            weights.append(self.log_likelihood(x, z) + log_prior - log_q)
        return -(torch.logsumexp(torch.stack(weights), dim=0) - math.log(k))

    # ------------------------------------------------------------------ loops
    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        terms = self.elbo(batch["image"])
        loss = -terms["elbo"].mean()
        size = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/elbo", terms["elbo"].mean(), batch_size=size)
        self.log("train/kl", terms["kl"].mean(), batch_size=size)
        return loss

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        generator = torch.Generator(device=self.device).manual_seed(self.val_seed + batch_idx)
        with torch.no_grad():
            terms = self.elbo(batch["image"], generator)
        size = batch["image"].shape[0]
        for key in ("elbo", "kl", "reconstruction"):
            self.log(f"val/{key}", terms[key].mean(), batch_size=size, sync_dist=True)

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        generator = torch.Generator(device=self.device).manual_seed(self.val_seed + batch_idx)
        x = batch["image"]
        nll = self.importance_weighted_nll(x, generator=generator).mean()
        self.log("test/nll", nll, batch_size=x.shape[0], sync_dist=True)
        self.log("test/bits_per_dim", nll / (self.pixels * math.log(2)), batch_size=x.shape[0], sync_dist=True)
        with torch.no_grad():
            self.log("test/elbo", self.elbo(x, generator)["elbo"].mean(), batch_size=x.shape[0], sync_dist=True)

    @torch.no_grad()
    def sample(self, num_samples: int, generator: Optional[torch.Generator] = None, **_: Any) -> Tensor:
        """Decoder means at z ~ N(0, I): images in [-1, 1] (the evaluation callback's contract)."""
        z = torch.randn(num_samples, self.latent_dim, generator=generator, device=self.device)
        return self.decode_mean(z)

    @torch.no_grad()
    def predict_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        writer = self.writer("samples")
        generator = torch.Generator(device=self.device).manual_seed(self.predict_seed + batch_idx)
        requests = request_seeds(batch, self.predict_seed)
        if requests is not None:  # --data.num_samples N: decoder means at one z per seed
            for index, seed, image in zip(*requests, self.decode_mean(seeded_normal(requests[1], (self.latent_dim,), self.device))):
                writer.save(f"sample{index:05d}", image, source=index, variant=variant_tag(seed=seed), seed=seed)
            return
        x = batch["image"]
        if self.num_predict_samples is None:
            for i, image in enumerate(self.sample(len(x), generator=generator)):
                writer.save(f"sample_{batch_idx * len(x) + i:05d}", image)
        elif batch_idx == 0:
            for i, image in enumerate(self.sample(self.num_predict_samples, generator=generator)):
                writer.save(f"sample_{i:05d}", image)
        if batch_idx != 0:
            return
        mu, _ = self.encode(x)
        writer.save_grid("reconstructions", torch.cat([x, self.decode_mean(mu)]), nrow=len(x))
        if len(mu) >= 2:
            t = torch.linspace(0, 1, 8, device=self.device)[:, None]
            writer.save_grid("interpolation", self.decode_mean((1 - t) * mu[0] + t * mu[1]), nrow=8)
        if self.latent_dim == 2:
            quantiles = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, 12)).to(self.device)
            grid = torch.stack(torch.meshgrid(quantiles, quantiles.flip(0), indexing="xy"), dim=-1).reshape(-1, 2)
            writer.save_grid("latent_manifold", self.decode_mean(grid), nrow=12)


__all__ = ["VAE", "gaussian_kl"]

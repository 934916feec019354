"""``ToyGAN``: the lecture's GAN on toy point data (seed 002 lines 630-663, "1-D toy point generation").

MLP generator and discriminator trained with :class:`AdversarialModule` (minimax with the
non-saturating J^(G) by default, ``generator_form: saturating`` for the slide's contrast) on
:class:`datamodules.lecture.ToyDataModule` (2-D ring of 8 Gaussians or a 1-D bimodal mixture).

Metrics (Srivastava et al. 2017, VEEGAN, the protocol the 8-Gaussians benchmark is reported with):
a sample is *high quality* when it lies within ``3 std`` of its nearest mode; a mode is *covered*
when at least ``min_mode_fraction`` of its fair share (N / modes) of the samples are high-quality
samples of that mode (VEEGAN counts a single sample; a share is a documented, stricter choice that
noise cannot satisfy). Validation logs ``val/modes_covered`` and ``val/high_quality`` from
``num_eval_samples`` samples of fixed noise. Sizes: 3 hidden layers of 128 units and a 2-D latent
(the unrolled-GAN setup of Metz et al. 2017 uses 2 x 128, 256-d noise; the lecture gives none).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from torch import Tensor

from datamodules.lecture.toy import toy_modes
from lightning_modules.baselines.gan_networks import MLP
from lightning_modules.baselines.lecture_predict import WritesPredictions
from lightning_modules.components.adversarial import AdversarialModule


def mode_metrics(samples: Tensor, modes: Tensor, std: float, min_mode_fraction: float = 0.05) -> dict[str, float]:
    """``modes_covered`` (count) and ``high_quality`` (fraction) of ``samples`` [N, D] (module docstring)."""
    distances = torch.cdist(samples.float(), modes.float().to(samples.device))
    nearest, which = distances.min(dim=1)
    good = nearest < 3 * std
    counts = torch.bincount(which[good], minlength=len(modes))
    needed = max(1.0, min_mode_fraction * len(samples) / len(modes))
    return {"modes_covered": float((counts >= needed).sum()), "high_quality": float(good.float().mean())}


class ToyGAN(WritesPredictions, AdversarialModule):
    """GAN on toy points (module docstring).

    Args:
        data_dim: 2 for the ring, 1 for the bimodal line.
        latent_dim: dimension of z ~ N(0, I).
        hidden / depth: MLP width and number of hidden layers (G and D alike).
        kind, std, radius: the toy mixture the metrics refer to (match the DataModule's).
        num_eval_samples: samples drawn for the validation metrics.
        min_mode_fraction: share of a mode's fair sample count that makes it covered.
        **kwargs: :class:`AdversarialModule` (loss, generator_form, optimisers, ...).
    """

    def __init__(self, data_dim: int = 2, latent_dim: int = 2, hidden: int = 128, depth: int = 3, kind: str = "ring8",
                 std: float = 0.05, radius: float = 2.0, num_eval_samples: int = 2500, min_mode_fraction: float = 0.05,
                 eval_seed: int = 1234, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.generator = MLP(latent_dim, data_dim, hidden, depth, "relu")
        self.discriminator = MLP(data_dim, 1, hidden, depth, "leaky_relu")
        self.latent_dim, self.data_dim = latent_dim, data_dim
        self.register_buffer("modes", toy_modes(kind, radius), persistent=False)
        if self.modes.shape[1] != data_dim:
            raise ValueError(f"model.data_dim={data_dim} does not match kind={kind!r} ({self.modes.shape[1]}-D)")
        self.std, self.num_eval_samples, self.min_mode_fraction, self.eval_seed = std, num_eval_samples, min_mode_fraction, eval_seed
        self.last_metrics: dict[str, float] = {}

    def generator_parameters(self):
        return list(self.generator.parameters())

    def discriminator_parameters(self):
        return list(self.discriminator.parameters())

    def generate(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        real = batch["sample"]
        z = torch.randn(real.shape[0], self.latent_dim, device=real.device)
        return {"fake": self.generator(z)}

    def discriminator_terms(self, batch, generated):
        real, fake = batch["sample"], generated["fake"].detach()
        terms = {"adv": self.d_adversarial(self.discriminator(real), self.discriminator(fake))}
        terms.update(self.penalties(self.discriminator, real, fake))
        terms["loss"] = sum(terms.values())
        return terms

    def generator_terms(self, batch, generated):
        return {"loss": self.g_adversarial(self.discriminator(generated["fake"]))}

    @torch.no_grad()
    def sample(self, num_samples: int, generator: Optional[torch.Generator] = None, noise: Optional[Tensor] = None,
               **_: Any) -> Tensor:
        """``num_samples`` points ``[N, data_dim]``."""
        if noise is None:
            noise = torch.randn(num_samples, self.latent_dim, generator=generator, device=self.device)
        return self.generator(noise)

    def evaluate_modes(self) -> dict[str, float]:
        generator = torch.Generator(device=self.device).manual_seed(self.eval_seed)
        self.last_metrics = mode_metrics(self.sample(self.num_eval_samples, generator=generator), self.modes,
                                         self.std, self.min_mode_fraction)
        return self.last_metrics

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        self._log_modes("val", batch_idx)

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        self._log_modes("test", batch_idx)

    def _log_modes(self, stage: str, batch_idx: int) -> None:
        if batch_idx == 0:  # the metrics come from fixed noise, not from the batch: once per epoch
            for key, value in self.evaluate_modes().items():
                self.log(f"{stage}/{key}", value, batch_size=1)

    def predict_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        """Write ``samples_<batch>.csv`` and a scatter plot of samples over the modes."""
        writer = self.writer("samples")
        generator = torch.Generator(device=self.device).manual_seed(self.eval_seed + batch_idx)
        points = self.sample(len(batch["sample"]), generator=generator).cpu()
        metrics = mode_metrics(points, self.modes.cpu(), self.std, self.min_mode_fraction)

        def csv(path):
            path.write_text("\n".join(",".join(f"{v:.6f}" for v in row) for row in points.tolist()) + "\n")

        writer.save_file(f"samples_{batch_idx:04d}.csv", csv, count=len(points), **metrics)

        def scatter(path):
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(4, 4))
            ys = points[:, 1] if points.shape[1] > 1 else torch.zeros(len(points))
            ax.scatter(points[:, 0], ys, s=2, alpha=0.5, label="samples")
            modes = self.modes.cpu()
            ax.scatter(modes[:, 0], modes[:, 1] if modes.shape[1] > 1 else torch.zeros(len(modes)), c="r", marker="x", label="modes")
            ax.legend(loc="upper right")
            fig.savefig(path, dpi=80)
            plt.close(fig)

        writer.save_file(f"scatter_{batch_idx:04d}.png", scatter)


__all__ = ["ToyGAN", "mode_metrics"]

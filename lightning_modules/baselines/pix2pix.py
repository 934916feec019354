"""``Pix2Pix`` (Isola et al. 2017; lecture seed 002 lines 1190-1229 and 1903-1960).

G* = argmin_G max_D L_cGAN(G, D) + lambda L_L1(G) (line 1209), with
L_cGAN = E[log D(x, y)] + E[log(1 - D(x, G(x)))] (line 1190: D sees the input x too) and
L_L1 = E ||y - G(x)||_1; lambda = 100, a U-Net generator and a 70x70 PatchGAN (digest B2 [X];
the defaults here). The generator uses the non-saturating J^(G) (pix2pix's code does), the
discriminator the lecture's halved cross-entropy J^(D) (pix2pix also halves D's objective).

Ablations of the lecture (line 1229 "L1 alone: blurry; cGAN: sharp; both: stable training and
fast convergence"): ``l1_weight: 0`` (cGAN only), ``gan_weight: 0`` (L1 only: D still trains but G
ignores it, so the run costs the same), both (default); and the PatchGAN receptive field 1 / 16 /
70 / full (``configs/lecture_pix2pix/``).

Evaluation: ``sample_for_batch`` translates ``batch["source"]``, so the evaluation callback's paired
metrics (L1, PSNR, SSIM, LPIPS) compare it with ``batch["image"]``; validation logs ``val/l1``.
Predict translates every user image (``data.predict_root``) at its own size (reflection-padded to the
U-Net's stride, output cropped back) into ``predictions/translations/<input name>.png`` with a
manifest; without ``predict_root`` it translates the validation sources.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from lightning_modules.baselines.lecture_predict import WritesPredictions, translate_any_size
from lightning_modules.components.adversarial import AdversarialModule


class Pix2Pix(WritesPredictions, AdversarialModule):
    """U-Net + conditional PatchGAN trained on L1 + cGAN (module docstring).

    Args:
        generator: a :class:`translation_networks.UNetGenerator` (or any source -> target net).
        discriminator: a :class:`components.patchgan.PatchGANDiscriminator` on ``[source, image]``.
        l1_weight: lambda (100).
        gan_weight: weight of G's adversarial term (1; 0 = the L1-only ablation).
        **kwargs: :class:`AdversarialModule`.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, l1_weight: float = 100.0,
                 gan_weight: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters(ignore=["generator", "discriminator"])
        if l1_weight < 0 or gan_weight < 0 or l1_weight + gan_weight == 0:
            raise ValueError(f"model.l1_weight ({l1_weight}) and model.gan_weight ({gan_weight}) must be >= 0, not both 0")
        self.generator, self.discriminator = generator, discriminator
        self.l1_weight, self.gan_weight = float(l1_weight), float(gan_weight)
        self.multiple = int(getattr(generator, "multiple", 1))

    def generator_parameters(self):
        return list(self.generator.parameters())

    def discriminator_parameters(self):
        return list(self.discriminator.parameters())

    def generate(self, batch):
        return {"fake": self.generator(batch["source"])}

    def discriminator_terms(self, batch, generated):
        source, real, fake = batch["source"], batch["image"], generated["fake"].detach()
        critic = lambda y: self.discriminator(torch.cat([source, y], dim=1))  # noqa: E731
        terms = {"adv": self.d_adversarial(critic(real), critic(fake))}
        terms.update(self.penalties(critic, real, fake))
        terms["loss"] = sum(terms.values())
        return terms

    def generator_terms(self, batch, generated):
        fake = generated["fake"]
        terms = {"l1": (fake - batch["image"]).abs().mean()}
        if self.gan_weight > 0:
            terms["adv"] = self.g_adversarial(self.discriminator(torch.cat([batch["source"], fake], dim=1)))
        terms["loss"] = self.l1_weight * terms["l1"] + self.gan_weight * terms.get("adv", 0.0)
        return terms

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        with torch.no_grad():
            fake = self.generator(batch["source"])
        self.log("val/l1", (fake - batch["image"]).abs().mean(), batch_size=fake.shape[0], sync_dist=True)

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        with torch.no_grad():
            fake = self.generator(batch["source"])
        self.log("test/l1", (fake - batch["image"]).abs().mean(), batch_size=fake.shape[0], sync_dist=True)

    @torch.no_grad()
    def sample_for_batch(self, batch: Mapping[str, Tensor], **_: Any) -> Tensor:
        """One translation per item of ``batch["source"]`` (the evaluation callback's paired metrics)."""
        return self.generator(batch["source"].to(self.device))

    def sample(self, num_samples: int, **_: Any) -> Tensor:
        raise TypeError("Pix2Pix translates inputs: evaluate it with sample_for_batch (per_batch_generation: true)")

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        writer = self.writer("translations")
        if "name" in batch:  # the user's own files, batch size 1, any size
            for image, name, path in zip(batch["image"], batch["name"], batch["path"]):
                out = translate_any_size(self.generator, image[None].to(self.device), self.multiple)[0]
                writer.save(name, out, source=path)
            return
        with torch.no_grad():
            outputs = self.generator(batch["source"])
        for i, out in enumerate(outputs):
            writer.save(f"val_{batch_idx * len(outputs) + i:05d}", out)


__all__ = ["Pix2Pix"]

"""``CycleGAN`` (Zhu et al. 2017; lecture seed 002 lines 1307-1379, "Pix2Pix w/o input-output pairs").

L = L_GAN(G, D_Y) + L_GAN(F, D_X) + lambda (E||F(G(x)) - x||_1 + E||G(F(y)) - y||_1), lambda = 10,
LSGAN losses, ResNet generators (digest B2 [X]; the lecture shows the cycle loss as diagrams,
lines 1371-1379). Here G = ``generator_ab`` (A -> B), F = ``generator_ba``, D_Y = ``discriminator_b``,
D_X = ``discriminator_a`` (70x70 PatchGANs with instance norm). Optional identity loss
``identity_weight * lambda * (E||G(y) - y||_1 + E||F(x) - x||_1)``: the paper uses it (0.5) for
painting <-> photo only, so the default here is 0 (off); the authors' code defaults to 0.5. Each discriminator sees a 50-image history of fakes
(:class:`components.adversarial.ImagePool`).

Loss scaling (documented choice): :mod:`gan_losses`' LSGAN follows Mao et al. with 1/2 on both
players; the authors' code uses an unhalved MSE for G, so ``adversarial_weight = 2`` (default)
reproduces their balance between the adversarial and the cycle terms.

Evaluation: validation logs the cycle-reconstruction L1 (``val/cycle_l1_a``, ``val/cycle_l1_b``)
and, when a ``label_classifier`` is given and the batch carries labels (the embedded digit
domains), label preservation: the digits classifier's accuracy on F(y) against y's label
(``val/label_preservation``; domain A is the classifier's own domain). ``sample_for_batch``
returns G(x) so FID/KID of domain B come from the evaluation callback (``per_batch_generation``).
Predict translates every user file in ``predict_direction`` at its own size.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from torch import Tensor, nn

from lightning_modules.baselines.lecture_predict import WritesPredictions, translate_any_size
from lightning_modules.components.adversarial import AdversarialModule, ImagePool


def cycle_consistency_loss(real: Tensor, reconstructed: Tensor) -> Tensor:
    """``E ||F(G(x)) - x||_1`` (mean absolute error)."""
    return (reconstructed - real).abs().mean()


class CycleGAN(WritesPredictions, AdversarialModule):
    """Two generators, two PatchGANs, LSGAN + cycle (+ identity) losses (module docstring).

    Args:
        generator_ab / generator_ba: :class:`translation_networks.ResnetGenerator` A->B and B->A.
        discriminator_a / discriminator_b: PatchGANs on domain A and B images.
        cycle_weight: lambda (10).
        identity_weight: identity loss weight relative to lambda (0 = off; the paper uses 0.5).
        adversarial_weight: weight of G's adversarial terms (2 = the authors' unhalved MSE).
        pool_size: image history per discriminator (50; 0 = off).
        label_classifier: optional classifier of domain-A images (``logits``) for label preservation.
        predict_direction: ``"AtoB"`` or ``"BtoA"`` for ``predict``.
        **kwargs: :class:`AdversarialModule` (``loss`` defaults to ``"lsgan"`` here).
    """

    def __init__(self, generator_ab: nn.Module, generator_ba: nn.Module, discriminator_a: nn.Module,
                 discriminator_b: nn.Module, cycle_weight: float = 10.0, identity_weight: float = 0.0,
                 adversarial_weight: float = 2.0, pool_size: int = 50, label_classifier: Optional[nn.Module] = None,
                 predict_direction: str = "AtoB", loss: str = "lsgan", **kwargs: Any) -> None:
        super().__init__(loss=loss, **kwargs)
        self.save_hyperparameters(ignore=["generator_ab", "generator_ba", "discriminator_a", "discriminator_b",
                                          "label_classifier"])
        if predict_direction not in ("AtoB", "BtoA"):
            raise ValueError(f"model.predict_direction={predict_direction!r} is not 'AtoB' or 'BtoA'")
        if cycle_weight < 0 or identity_weight < 0 or adversarial_weight < 0:
            raise ValueError("model.cycle_weight, identity_weight and adversarial_weight must be >= 0")
        self.generator_ab, self.generator_ba = generator_ab, generator_ba
        self.discriminator_a, self.discriminator_b = discriminator_a, discriminator_b
        self.cycle_weight, self.identity_weight, self.adversarial_weight = cycle_weight, identity_weight, adversarial_weight
        self.pool_a, self.pool_b = ImagePool(pool_size), ImagePool(pool_size)
        if label_classifier is not None:
            self.register_frozen("label_classifier", label_classifier)
        else:
            self.label_classifier = None
        self.predict_direction = predict_direction
        self.multiple = int(getattr(generator_ab, "multiple", 1))

    def generator_parameters(self):
        return list(self.generator_ab.parameters()) + list(self.generator_ba.parameters())

    def discriminator_parameters(self):
        return list(self.discriminator_a.parameters()) + list(self.discriminator_b.parameters())

    def generate(self, batch):
        a, b = batch["image_a"], batch["image_b"]
        fake_b, fake_a = self.generator_ab(a), self.generator_ba(b)
        out = {"fake_b": fake_b, "fake_a": fake_a}
        if torch.is_grad_enabled():  # reconstructions and identities only feed G's step
            out["rec_a"], out["rec_b"] = self.generator_ba(fake_b), self.generator_ab(fake_a)
            if self.identity_weight > 0:
                out["idt_b"], out["idt_a"] = self.generator_ab(b), self.generator_ba(a)
        return out

    def discriminator_terms(self, batch, generated):
        a, b = batch["image_a"], batch["image_b"]
        fake_b, fake_a = self.pool_b.query(generated["fake_b"]), self.pool_a.query(generated["fake_a"])
        terms = {"adv_b": self.d_adversarial(self.discriminator_b(b), self.discriminator_b(fake_b)),
                 "adv_a": self.d_adversarial(self.discriminator_a(a), self.discriminator_a(fake_a))}
        for key, value in self.penalties(self.discriminator_b, b, fake_b).items():
            terms[f"{key}_b"] = value
        for key, value in self.penalties(self.discriminator_a, a, fake_a).items():
            terms[f"{key}_a"] = value
        terms["loss"] = sum(terms.values())
        return terms

    def generator_terms(self, batch, generated):
        a, b = batch["image_a"], batch["image_b"]
        terms = {
            "adv_ab": self.g_adversarial(self.discriminator_b(generated["fake_b"])),
            "adv_ba": self.g_adversarial(self.discriminator_a(generated["fake_a"])),
            "cycle_a": cycle_consistency_loss(a, generated["rec_a"]),
            "cycle_b": cycle_consistency_loss(b, generated["rec_b"]),
        }
        loss = self.adversarial_weight * (terms["adv_ab"] + terms["adv_ba"])
        loss = loss + self.cycle_weight * (terms["cycle_a"] + terms["cycle_b"])
        if self.identity_weight > 0:
            terms["identity"] = (generated["idt_b"] - b).abs().mean() + (generated["idt_a"] - a).abs().mean()
            loss = loss + self.identity_weight * self.cycle_weight * terms["identity"]
        terms["loss"] = loss
        return terms

    @torch.no_grad()
    def evaluate_batch(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Cycle L1 per domain and (with labels and a classifier) label preservation of F(y)."""
        a, b = batch["image_a"], batch["image_b"]
        fake_b, fake_a = self.generator_ab(a), self.generator_ba(b)
        out = {"cycle_l1_a": cycle_consistency_loss(a, self.generator_ba(fake_b)),
               "cycle_l1_b": cycle_consistency_loss(b, self.generator_ab(fake_a))}
        if self.label_classifier is not None and "label_b" in batch:
            predicted = self.label_classifier.logits(fake_a).argmax(1)
            out["label_preservation"] = (predicted == batch["label_b"]).float().mean()
        return out

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        for key, value in self.evaluate_batch(batch).items():
            self.log(f"val/{key}", value, batch_size=batch["image_a"].shape[0], sync_dist=True)

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        for key, value in self.evaluate_batch(batch).items():
            self.log(f"test/{key}", value, batch_size=batch["image_a"].shape[0], sync_dist=True)

    @torch.no_grad()
    def sample_for_batch(self, batch: Mapping[str, Tensor], **_: Any) -> Tensor:
        """G(x) for each domain-A item (FID/KID against domain B through the evaluation callback)."""
        return self.generator_ab(batch["image_a"].to(self.device))

    def sample(self, num_samples: int, **_: Any) -> Tensor:
        raise TypeError("CycleGAN translates inputs: evaluate it with sample_for_batch (per_batch_generation: true)")

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        generator = self.generator_ab if self.predict_direction == "AtoB" else self.generator_ba
        writer = self.writer(f"translations_{self.predict_direction}")
        if "name" in batch:
            for image, name, path in zip(batch["image"], batch["name"], batch["path"]):
                out = translate_any_size(generator, image[None].to(self.device), self.multiple)[0]
                writer.save(name, out, source=path, direction=self.predict_direction)
            return
        key = "image_a" if self.predict_direction == "AtoB" else "image_b"
        with torch.no_grad():
            outputs = generator(batch[key])
        for i, out in enumerate(outputs):
            writer.save(f"val_{batch_idx * len(outputs) + i:05d}", out, direction=self.predict_direction)


__all__ = ["CycleGAN", "cycle_consistency_loss"]

"""``DCGAN`` and ``ConditionalGAN`` (lecture seed 002 lines 749-767 and 1190; Radford et al. 2015,
Mirza & Osindero 2014).

The lecture's DCGAN recipe (line 760-764): no fully connected layers, BatchNorm, LeakyReLU in D,
Adam with lr 2e-4 and beta1 0.5 (the :class:`AdversarialModule` default); LSUN bedrooms at 64x64
is the classic setting (``configs/lecture_dcgan.yaml`` keeps 64x64 and the paper's widths; the
embedded digits stand in for LSUN, which is not available offline). The networks are in
:mod:`gan_networks`; losses are the lecture's minimax with the non-saturating J^(G).

``ConditionalGAN`` feeds the class label to both players (G: ``[z, embed(y)]``; D: one-hot label
planes) and adds, on ``test``, the accuracy of the suite's digits classifier on generated samples
of each requested class (``test/class_accuracy``), the lecture's check that the condition is obeyed,
and the per-class FID (``test/fid_class_<c>``) in the same classifier's feature space between the
test images of class c and as many generated samples of class c (digest B3; classes with fewer than
two test images are skipped; with ~18 held-out digits per class the values are noisy smoke figures).

Predict writes one PNG per sampling request (``--data.num_samples N [--data.labels [..]]``:
``sample<i>__seed<s>[_label<c>].png``, each from its own noise seed, labels cycling over the classes
when none are given), else one per item of the predict split (``sample_<n>.png``; the item's label
when conditional) and, on the first batch, a latent interpolation strip (spherical interpolation between
two noise vectors, the "latent-space walks" of Radford et al. Sec. 6.1) and for the conditional
model a class grid (one row per class, shared noise per column). With ``arithmetic: [a, b, c]`` (class
labels; ``null`` disables) it also writes ``vector_arithmetic.png`` (Radford et al. Sec. 6.3, Fig. 7;
:mod:`latent_arithmetic`): one row per concept (its exemplars, then the decoded mean), and a last row
decoding ``Y = mean(z_a) - mean(z_b) + mean(z_c)`` followed by its noisy neighbours. Exemplars are the
generated candidates the ``label_classifier`` scores highest for each class, or come from
``arithmetic_exemplars_file``. For the conditional model each exemplar is generated under its own class
and ``Y`` is decoded under class ``c`` (our choice: c is the "base" the offset a - b is added to, like
the paper's neutral man).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from torch import Tensor, nn

from lightning_modules.baselines import latent_arithmetic as arith
from lightning_modules.baselines.lecture_predict import WritesPredictions, request_seeds, seeded_normal
from lightning_modules.components.predict_outputs import variant_tag
from lightning_modules.components.adversarial import AdversarialModule


def slerp(a: Tensor, b: Tensor, steps: int) -> Tensor:
    """Spherical interpolation between two noise vectors ``[D]`` -> ``[steps, D]`` (White 2016)."""
    t = torch.linspace(0, 1, steps, device=a.device)[:, None]
    omega = torch.arccos((a / a.norm() * b / b.norm()).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


class DCGAN(WritesPredictions, AdversarialModule):
    """Unconditional (or, with ``num_classes`` on both networks, class-conditional) DCGAN.

    Args:
        generator: a :class:`gan_networks.DCGANGenerator`.
        discriminator: a :class:`gan_networks.DCGANDiscriminator`.
        predict_seed: seed of the predict noise (batch index added).
        interpolation_steps: images in the interpolation strip.
        num_predict_samples: if set, ``predict`` writes exactly this many samples (labels cycling through the
            classes when conditional) instead of one per predict item (``--model.num_predict_samples 100``).
        label_classifier: scores generated samples (``logits(images)``; the suite's
            ``metrics.digits_classifier.DigitsClassifierFeatures`` for the embedded digits); picks the
            arithmetic exemplars (and, for :class:`ConditionalGAN`, gives the test accuracy).
        arithmetic: three class labels ``[a, b, c]`` for the vector-arithmetic figure; ``None`` disables it.
        arithmetic_exemplars: exemplars averaged per concept (3, Radford et al. Sec. 6.3).
        arithmetic_candidates: generated samples the classifier ranks to find the exemplars.
        arithmetic_neighbours, arithmetic_noise: noisy copies of ``Y`` and their uniform noise scale
            (8 and 0.25, the Fig. 7 caption).
        arithmetic_exemplars_file: a ``.npz`` with ``z`` [N, latent_dim] and ``label`` [N]; when given, the
            exemplars are its first rows per concept instead of classifier picks.
        **kwargs: :class:`AdversarialModule`.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, predict_seed: int = 0,
                 interpolation_steps: int = 8, num_predict_samples: Optional[int] = None,
                 label_classifier: Optional[nn.Module] = None, arithmetic: Optional[list[int]] = None,
                 arithmetic_exemplars: int = 3, arithmetic_candidates: int = 512, arithmetic_neighbours: int = 8,
                 arithmetic_noise: float = 0.25, arithmetic_exemplars_file: Optional[str] = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters(ignore=["generator", "discriminator", "label_classifier"])
        self.generator, self.discriminator = generator, discriminator
        self.num_classes: Optional[int] = getattr(generator, "num_classes", None) or None
        if self.num_classes != (getattr(discriminator, "num_classes", None) or None):
            raise ValueError("model.generator.num_classes and model.discriminator.num_classes must match")
        self.latent_dim = int(generator.latent_dim)
        self.predict_seed, self.interpolation_steps = predict_seed, interpolation_steps
        if num_predict_samples is not None and num_predict_samples < 1:
            raise ValueError(f"model.num_predict_samples must be >= 1, got {num_predict_samples}")
        self.num_predict_samples = num_predict_samples
        if label_classifier is not None:
            self.register_frozen("label_classifier", label_classifier)
        else:
            self.label_classifier = None
        if arithmetic is not None:
            if len(arithmetic) != 3:
                raise ValueError(f"model.arithmetic must be three class labels [a, b, c] or null, got {arithmetic}")
            if arithmetic_exemplars < 1 or arithmetic_neighbours < 0:
                raise ValueError("model.arithmetic_exemplars must be >= 1 and model.arithmetic_neighbours >= 0")
            if label_classifier is None and arithmetic_exemplars_file is None:
                raise ValueError("model.arithmetic needs model.label_classifier (to pick exemplars) "
                                 "or model.arithmetic_exemplars_file")
        self.arithmetic = None if arithmetic is None else [int(c) for c in arithmetic]
        self.arithmetic_exemplars, self.arithmetic_candidates = arithmetic_exemplars, arithmetic_candidates
        self.arithmetic_neighbours, self.arithmetic_noise = arithmetic_neighbours, arithmetic_noise
        self.arithmetic_exemplars_file = arithmetic_exemplars_file

    def generator_parameters(self):
        return list(self.generator.parameters())

    def discriminator_parameters(self):
        return list(self.discriminator.parameters())

    def _labels(self, batch: Mapping[str, Tensor]) -> Optional[Tensor]:
        if self.num_classes is None:
            return None
        if "label" not in batch:
            raise KeyError(f"{type(self).__name__} is class-conditional but the batch has no 'label' (keys {sorted(batch)})")
        return batch["label"].long()

    def generate(self, batch):
        real, labels = batch["image"], self._labels(batch)
        z = torch.randn(real.shape[0], self.latent_dim, device=real.device)
        return {"fake": self.generator(z, labels), "labels": labels}

    def discriminator_terms(self, batch, generated):
        real, fake, labels = batch["image"], generated["fake"].detach(), generated["labels"]
        critic = lambda x: self.discriminator(x, labels)  # noqa: E731
        terms = {"adv": self.d_adversarial(critic(real), critic(fake))}
        terms.update(self.penalties(critic, real, fake))
        terms["loss"] = sum(terms.values())
        return terms

    def generator_terms(self, batch, generated):
        return {"loss": self.g_adversarial(self.discriminator(generated["fake"], generated["labels"]))}

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        """D's loss on held-out real images and fresh fakes (a monitor; FID comes from the evaluation callback)."""
        with torch.no_grad():
            generated = self.generate(batch)
            terms = self.discriminator_terms(batch, generated)
        self.log("val/d_loss", terms["adv"], batch_size=batch["image"].shape[0], sync_dist=True)

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        self.validation_step(batch, batch_idx)

    @torch.no_grad()
    def sample(self, num_samples: int, labels: Optional[Tensor] = None, generator: Optional[torch.Generator] = None,
               noise: Optional[Tensor] = None, **_: Any) -> Tensor:
        """``num_samples`` images in [-1, 1] (labels cycle through the classes when not given)."""
        if self.num_classes is not None and labels is None:
            labels = torch.arange(num_samples, device=self.device) % self.num_classes
        if noise is None:
            noise = torch.randn(num_samples, self.latent_dim, generator=generator, device=self.device)
        return self.generator(noise, labels)

    def predict_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        writer = self.writer("samples")
        generator = torch.Generator(device=self.device).manual_seed(self.predict_seed + batch_idx)
        requests = request_seeds(batch, self.predict_seed)
        if requests is not None:  # --data.num_samples N [--data.labels [..]]: one seed per sample
            indices, seeds = requests
            if self.num_classes is None:
                labels = None
            elif "label" in batch:
                labels = batch["label"].to(self.device).long()
            else:
                labels = torch.tensor(indices, device=self.device) % self.num_classes
            noise = seeded_normal(seeds, (self.latent_dim,), self.device)
            images = self.sample(len(seeds), labels=labels, noise=noise)
            for row, (index, seed) in enumerate(zip(indices, seeds)):
                label = None if labels is None else int(labels[row])
                writer.save(f"sample{index:05d}", images[row], source=index, variant=variant_tag(seed=seed, label=label),
                            seed=seed, label=label)
        elif self.num_predict_samples is not None:  # a fixed count, written on the first batch only
            if batch_idx != 0:
                return
            chunks = [(start, min(256, self.num_predict_samples - start))
                      for start in range(0, self.num_predict_samples, 256)]
        else:
            chunks = [(batch_idx * len(next(iter(batch.values()))), len(next(iter(batch.values()))))]
        for start, count in chunks if requests is None else []:
            if self.num_predict_samples is None:
                labels = self._labels(batch)
            elif self.num_classes is not None:
                labels = torch.arange(start, start + count, device=self.device) % self.num_classes
            else:
                labels = None
            images = self.sample(count, labels=labels, generator=generator)
            for i, image in enumerate(images):
                extra = {} if labels is None else {"label": int(labels[i])}
                writer.save(f"sample_{start + i:05d}", image, **extra)
        if batch_idx == 0:
            a, b = torch.randn(2, self.latent_dim, generator=generator, device=self.device)
            walk = slerp(a, b, self.interpolation_steps)
            walk_labels = None if self.num_classes is None else torch.zeros(len(walk), dtype=torch.long, device=self.device)
            writer.save_grid("interpolation", self.sample(len(walk), labels=walk_labels, noise=walk), nrow=len(walk))
            if self.num_classes is not None:
                columns = 8
                noise = torch.randn(columns, self.latent_dim, generator=generator, device=self.device).repeat(self.num_classes, 1)
                grid_labels = torch.arange(self.num_classes, device=self.device).repeat_interleave(columns)
                writer.save_grid("class_grid", self.sample(len(noise), labels=grid_labels, noise=noise), nrow=columns)
            if self.arithmetic is not None:
                self.write_vector_arithmetic(writer, generator)

    def _concept_labels(self, concept: int, count: int) -> Optional[Tensor]:
        return None if self.num_classes is None else torch.full((count,), concept, dtype=torch.long, device=self.device)

    @torch.no_grad()
    def arithmetic_exemplars_z(self, generator: torch.Generator) -> tuple[list[Tensor], list[Optional[list[float]]]]:
        """The exemplar ``z`` of each concept and their classifier probabilities (``None`` from a file)."""
        if self.arithmetic_exemplars_file is not None:
            groups = arith.load_exemplar_file(self.arithmetic_exemplars_file, self.arithmetic,
                                              self.arithmetic_exemplars, self.latent_dim)
            return [g.to(self.device) for g in groups], [None] * 3
        groups, scores = [], []
        candidates = torch.randn(self.arithmetic_candidates, self.latent_dim, generator=generator, device=self.device)
        probabilities: Optional[Tensor] = None
        for concept in self.arithmetic:
            if probabilities is None or self.num_classes is not None:  # unconditional: one scoring serves all
                probabilities = torch.cat([
                    self.label_classifier.logits(self.sample(len(z), labels=self._concept_labels(concept, len(z)), noise=z))
                    for z in candidates.split(128)]).softmax(1)
            z, p = arith.select_exemplars(candidates, probabilities, concept, self.arithmetic_exemplars)
            groups.append(z)
            scores.append([round(float(v), 4) for v in p])
        return groups, scores

    @torch.no_grad()
    def write_vector_arithmetic(self, writer, generator: torch.Generator) -> None:
        """``vector_arithmetic.png`` (module docstring): three concept rows and the result row."""
        groups, scores = self.arithmetic_exemplars_z(generator)
        y = arith.arithmetic_vector(*groups)
        result = arith.neighbours(y, self.arithmetic_neighbours, self.arithmetic_noise, generator)
        width = max(max(len(g) for g in groups) + 1, len(result))
        rows = []
        for concept, z in zip(self.arithmetic, groups):
            z = torch.cat([z, z.mean(0, keepdim=True)])
            images = self.sample(len(z), labels=self._concept_labels(concept, len(z)), noise=z)
            rows.append(torch.cat([images, torch.full((width - len(z), *images.shape[1:]), -1.0, device=self.device)]))
        images = self.sample(len(result), labels=self._concept_labels(self.arithmetic[2], len(result)), noise=result)
        rows.append(torch.cat([images, torch.full((width - len(result), *images.shape[1:]), -1.0, device=self.device)]))
        source = "file" if self.arithmetic_exemplars_file is not None else "classifier"
        weights = getattr(self.label_classifier, "weights_identity", None) if source == "classifier" else None
        writer.save_grid("vector_arithmetic", torch.cat(rows), nrow=width, concepts=list(self.arithmetic),
                         exemplar_source=source, exemplar_probabilities=scores, classifier_weights=weights,
                         layout="rows a, b, c: exemplars then decoded mean; last row: a - b + c, then neighbours")


class ConditionalGAN(DCGAN):
    """Class-conditional DCGAN with generated-sample classifier accuracy on ``test`` (module docstring).

    Args:
        label_classifier: scores generated samples (``logits(images)``; the suite's
            ``metrics.digits_classifier.DigitsClassifierFeatures`` for the embedded digits);
            ``None`` skips the accuracy.
        accuracy_samples_per_class: samples per class for the accuracy.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, label_classifier: Optional[nn.Module] = None,
                 accuracy_samples_per_class: int = 50, **kwargs: Any) -> None:
        super().__init__(generator, discriminator, label_classifier=label_classifier, **kwargs)
        if self.num_classes is None:
            raise ValueError("ConditionalGAN needs model.generator.num_classes and model.discriminator.num_classes")
        self.accuracy_samples_per_class = accuracy_samples_per_class
        self._test_real: list[tuple[Tensor, Tensor]] = []

    @torch.no_grad()
    def class_accuracy(self, generator: Optional[torch.Generator] = None) -> dict[str, float]:
        """Share of samples the classifier assigns to their conditioning class (overall and per class)."""
        if self.label_classifier is None:
            raise ValueError("ConditionalGAN.class_accuracy needs model.label_classifier")
        labels = torch.arange(self.num_classes, device=self.device).repeat_interleave(self.accuracy_samples_per_class)
        predicted = self.label_classifier.logits(self.sample(len(labels), labels=labels, generator=generator)).argmax(1)
        correct = (predicted == labels).float()
        out = {"class_accuracy": float(correct.mean())}
        for c in range(self.num_classes):
            out[f"class_accuracy_{c}"] = float(correct[labels == c].mean())
        return out

    def on_test_epoch_start(self) -> None:
        self._test_real = []

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        super().test_step(batch, batch_idx)
        if self.label_classifier is not None:
            self._test_real.append((batch["image"].detach(), batch["label"].detach()))

    @torch.no_grad()
    def per_class_fid(self, real: Tensor, labels: Tensor, generator: Optional[torch.Generator] = None) -> dict[str, float]:
        """FID per class in the classifier's feature space (module docstring)."""
        from metrics.fid import FrechetInceptionDistance

        out: dict[str, float] = {}
        for c in range(self.num_classes):
            real_c = real[labels == c]
            if len(real_c) < 2:
                continue
            metric = FrechetInceptionDistance(feature_extractor=self.label_classifier).to(self.device)
            metric.update(real_c, real=True)
            fake = self.sample(len(real_c), labels=torch.full((len(real_c),), c, device=self.device), generator=generator)
            metric.update(fake, real=False)
            out[f"fid_class_{c}"] = float(metric.compute())
        return out

    def on_test_epoch_end(self) -> None:
        if self.label_classifier is None:
            return
        generator = torch.Generator(device=self.device).manual_seed(self.predict_seed)
        for key, value in self.class_accuracy(generator).items():
            self.log(f"test/{key}", value)
        if self._test_real:
            real = torch.cat([r for r, _ in self._test_real])
            labels = torch.cat([lab for _, lab in self._test_real])
            for key, value in self.per_class_fid(real, labels, generator).items():
                self.log(f"test/{key}", value)
        self._test_real = []


__all__ = ["ConditionalGAN", "DCGAN", "slerp"]

"""``LTTGAN``: training, evaluation and predict of LTT-GAN (thesis 001 Ch. 6, §6.3-6.5).

Builds on :class:`lightning_modules.components.adversarial.AdversarialModule` (manual G/D steps,
lazy R1, schedulers, EMA of G through ``trainable_parameters``).

Generator objective (Eq. 6.11, ``L_rec = L_CX + L_adv + L_per + L_id``) with the [code] weights
(the thesis gives none):

* ``L_CX`` (Eq. 6.12): the spatial periodic CX (:mod:`lightning_modules.components.contextual`,
  rate 16, bandwidth 0.1) between PK(GT) and PK(branch i), **averaged over the HPC branches**;
  ``cx_mode: vgg`` is the ablation's Mechrez CX on VGG conv4_4 features, ``none`` the baseline;
* ``L_adv`` (Eq. 6.13, weight 0.1): StyleGAN2's non-saturating logistic loss
  ``softplus(-D(G(x)_i))`` on **every branch** (the base's halved minimax x 2);
* ``L_per`` (Eq. 6.14): VGG-19 before-activation L1 (weight 1) + Gram style (weight 50);
* ``L_id`` (Eq. 6.15, weight 10): L1 between ArcFace-ResNet18 embeddings of grey 128x128 faces;
* image-pyramid L1 (weight 1) between the U-Net decoder's RGB outputs and the down-sampled GT,
  switched off after ``pyramid_until`` = 50k generator iterations;
* optional pixel L1 (``pixel_weight``, 0.1 in the non-CX ablation configs, 0 here).

``per_branch_terms`` (default False, the code's choice: its model averages the stacked outputs)
applies perceptual / style / identity / pixel to the branch mean; True applies them to every
branch as Eqs. 6.14-6.15 index them (costlier by the branch count).

Discriminator (§6.3.5): StyleGAN2's (weights from ``discriminator_path``, BasicSR ``params``),
logistic loss ``softplus(D(fake)) + softplus(-D(real))`` averaged over all branches, lazy R1
(gamma 10, every 16 D steps, scaled by 16: the base's ``penalties``). Optimisers in the config:
Adam (0, 0.99) lr 2e-3 for G; D lr and betas scaled by 16/17; lr halved at 600k and 700k of 800k
iterations. Lightning counts G and D steps in ``global_step``: ``max_steps`` = 2 x iterations.

Evaluation: ``sample_for_batch`` returns the branch mean, so the EvaluationCallback scores PSNR,
SSIM, LPIPS, FID (Table 6.1). The module itself logs and writes rows for images/s (timed
generator forward per image) and, on an identity test set (second test loader), Deg
(mean cosine x 100 of each restored probe to its identity's gallery mean) and Top-1/3/5 (Tables
6.2-6.4). Predict writes ``<input>.png`` (the restored face, generated at ``size`` px and mapped
back to the input's own size and aspect ratio through the datamodule's ``predict_fit`` placement)
and ``<input>__uncertainty.png`` (the per-pixel branch variance divided by its maximum, the maximum
kept in the manifest, mapped back the same way) for every input.
"""
from __future__ import annotations

import time
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.components.adversarial import AdversarialModule
from lightning_modules.components.contextual import PACKING_MODES, contextual_loss, feature_samples, spcx_loss
from lightning_modules.components.predict_outputs import PredictOutputsMixin, names_of
from lightning_modules.ltt_gan.losses import IdentityEmbedder, VGGPerceptualStyle, identity_input, load_arcface
from lightning_modules.ltt_gan.stylegan2 import load_stylegan2_discriminator, load_stylegan2_generator
from metrics.identity_retrieval import top_k_accuracy
from metrics.results_rows import (ResultRow, append_rows, dataset_field, git_commit, infer_data_flag, run_config_path,
                                  run_provenance, utc_now)

CX_MODES = ("spcx", "vgg", "none")


class LTTGAN(PredictOutputsMixin, AdversarialModule):
    """LTT-GAN (module docstring).

    Args:
        generator: :class:`LTTGANGenerator`; discriminator: :class:`StyleGAN2Discriminator`.
        stylegan_path: GFPGAN/BasicSR FFHQ StyleGAN2 generator checkpoint (``params_ema``), loaded
            into the frozen prior; ``None`` keeps it random (a stand-in).
        discriminator_path: the matching discriminator checkpoint (``params``); ``None``: random init.
        cx_mode, cx_weight, pack_rate, pack_mode, cx_bandwidth: the CX term.
        gan_weight, perceptual_weight, style_weight, identity_weight, pyramid_weight, pixel_weight: weights.
        pyramid_until: generator iterations with the pyramid L1 (50k).
        perceptual: ``vgg19`` (weights from ``vgg_weights``) or ``tiny_random`` (stand-in).
        arcface_path: ArcFace-ResNet18 weights; ``None``: random stand-in (named so in rows).
        per_branch_terms: see the module docstring.
        paper, method, dataset_name, identity_dataset_name, results_file: results-row fields.
        **kwargs: :class:`AdversarialModule` (loss must stay ``minimax`` / ``non_saturating``).
    """

    predict_counts_sampler_steps = False  # one generator forward per input: Lightning's batch bar stays

    def __init__(self, generator: nn.Module, discriminator: nn.Module, stylegan_path: Optional[str] = None,
                 discriminator_path: Optional[str] = None, cx_mode: str = "spcx", cx_weight: float = 1.0,
                 pack_rate: int = 16, pack_mode: str = "contiguous", cx_bandwidth: float = 0.1,
                 gan_weight: float = 0.1, perceptual_weight: float = 1.0, style_weight: float = 50.0,
                 identity_weight: float = 10.0, pyramid_weight: float = 1.0, pyramid_until: int = 50_000,
                 pixel_weight: float = 0.0, perceptual: str = "vgg19", vgg_weights: Optional[str] = None,
                 arcface_path: Optional[str] = None, per_branch_terms: bool = False, paper: str = "ltt_gan",
                 method: str = "LTT-GAN (Ours)", dataset_name: str = "CelebAHQ100 (TurbulenceSim_P2S)",
                 identity_dataset_name: str = "TubFace89 (front/center pose)",
                 results_file: Optional[str] = "results/ltt_gan.jsonl", **kwargs: Any) -> None:
        kwargs.setdefault("loss", "minimax")
        super().__init__(**kwargs)
        if self.loss_kind != "minimax" or self.generator_form != "non_saturating":
            raise ValueError("LTT-GAN uses StyleGAN2's logistic loss: model.loss must be 'minimax' (non_saturating)")
        if cx_mode not in CX_MODES:
            raise ValueError(f"model.cx_mode={cx_mode!r} is not one of {list(CX_MODES)}")
        if pack_mode not in PACKING_MODES:
            raise ValueError(f"model.pack_mode={pack_mode!r} is not one of {list(PACKING_MODES)}")
        if perceptual not in ("vgg19", "tiny_random"):
            raise ValueError(f"model.perceptual={perceptual!r} is not 'vgg19' or 'tiny_random'")
        if perceptual == "vgg19" and vgg_weights is None and (perceptual_weight > 0 or style_weight > 0 or cx_mode == "vgg"):
            raise ValueError("model.vgg_weights is null: the perceptual loss needs torchvision VGG-19 weights "
                             "(vgg19-dcbb9e9d.pth); use model.perceptual: tiny_random for a stand-in")
        size = getattr(generator, "out_size", None)
        if size is not None and size % int(pack_rate):
            raise ValueError(f"model.pack_rate={pack_rate} does not divide the image size {size}")
        self.save_hyperparameters(ignore=["generator", "discriminator"])
        self.generator, self.discriminator = generator, discriminator
        prior = getattr(generator, "stylegan_decoder", None)
        if prior is not None:
            if stylegan_path is not None:
                load_stylegan2_generator(prior, stylegan_path)
            prior.requires_grad_(False)
        if discriminator_path is not None:
            load_stylegan2_discriminator(discriminator, discriminator_path)
        self.prior_is_stand_in = stylegan_path is None
        needs_vgg = perceptual_weight > 0 or style_weight > 0 or cx_mode == "vgg"
        if needs_vgg:
            self.register_frozen("vgg", VGGPerceptualStyle(vgg_weights, stand_in=perceptual == "tiny_random"))
        self.arcface_is_stand_in = arcface_path is None
        self.register_frozen("arcface", load_arcface(arcface_path))
        self._timing = [0.0, 0]
        self._identity: dict[str, list] = {}

    # ------------------------------------------------------------------ players
    def generator_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.generator.parameters() if p.requires_grad]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return list(self.discriminator.parameters())

    @property
    def uses_random_weights(self) -> bool:
        vgg = self._frozen.get("vgg")
        return (self.prior_is_stand_in or self.arcface_is_stand_in or bool(getattr(vgg, "random_weights", False))
                or bool(getattr(self, "untrained_weights", False)))  # cli.py --allow_random_weights

    def stand_in_reasons(self) -> list[str]:
        reasons = []
        if self.prior_is_stand_in:
            reasons.append("StyleGAN2 prior is random (no stylegan_path)")
        if self.arcface_is_stand_in:
            reasons.append("ArcFace-ResNet18 is a random stand-in (no arcface_path)")
        if getattr(self._frozen.get("vgg"), "random_weights", False):
            reasons.append("VGG-19 is a random stand-in")
        if getattr(self, "untrained_weights", False):
            reasons.append("generator is untrained (no checkpoint, --allow_random_weights true)")
        return reasons

    def restore(self, degraded: Tensor):
        return self.generator(degraded)

    def generate(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        out = self.restore(batch["input"])
        return {"branches": out.branches, "mean": out.mean, "variance": out.variance, "pyramid": out.pyramid}

    # ------------------------------------------------------------------ losses
    def discriminator_terms(self, batch: Mapping[str, Any], generated: Mapping[str, Any]) -> dict[str, Tensor]:
        real = batch["image"]
        fakes = generated["branches"].detach().flatten(0, 1)
        terms = {"adv": 2.0 * self.d_adversarial(self.discriminator(real), self.discriminator(fakes))}
        terms.update(self.penalties(self.discriminator, real))
        terms["loss"] = sum(terms.values())
        return terms

    def cx_term(self, branches: Tensor, target: Tensor) -> Tensor:
        """L_CX of Eq. 6.12: the mean over branches of CX(PK(target), PK(branch))."""
        h = self.hparams
        if h.cx_mode == "spcx":
            return torch.stack([spcx_loss(b, target, h.pack_rate, h.pack_mode, h.cx_bandwidth) for b in branches]).mean()
        vgg = self.vgg
        tap = "conv4_4" if "conv4_4" in vgg.taps else list(vgg.taps)[-1]
        ref = feature_samples(vgg.extract(target.detach())[tap])
        return torch.stack([contextual_loss(feature_samples(vgg.extract(b)[tap]), ref, h.cx_bandwidth)
                            for b in branches]).mean()

    def generator_terms(self, batch: Mapping[str, Any], generated: Mapping[str, Any]) -> dict[str, Tensor]:
        h = self.hparams
        target, branches = batch["image"], generated["branches"]
        terms: dict[str, Tensor] = {}
        total = branches.new_zeros(())
        if h.cx_mode != "none" and h.cx_weight > 0:
            terms["cx"] = self.cx_term(branches, target)
            total = total + h.cx_weight * terms["cx"]
        if h.gan_weight > 0:
            terms["adv"] = 2.0 * self.g_adversarial(self.discriminator(branches.flatten(0, 1)))
            total = total + h.gan_weight * terms["adv"]
        outputs = branches.flatten(0, 1) if h.per_branch_terms else generated["mean"]
        reference = target.repeat(branches.shape[0], 1, 1, 1) if h.per_branch_terms else target
        if "vgg" in self._frozen and (h.perceptual_weight > 0 or h.style_weight > 0):
            terms["perceptual"], terms["style"] = self.vgg(outputs, reference)
            total = total + h.perceptual_weight * terms["perceptual"] + h.style_weight * terms["style"]
        if h.identity_weight > 0:
            a = self.arcface(identity_input(outputs, self.arcface.input_size))
            b = self.arcface(identity_input(reference, self.arcface.input_size)).detach()
            terms["identity"] = F.l1_loss(a, b)
            total = total + h.identity_weight * terms["identity"]
        g_iteration = self.d_step_count // self.d_steps_per_g_step
        if h.pyramid_weight > 0 and g_iteration <= h.pyramid_until:
            terms["pyramid"] = sum(F.l1_loss(p, F.interpolate(target, size=p.shape[-2:], mode="bilinear",
                                                                align_corners=False)) for p in generated["pyramid"])
            total = total + h.pyramid_weight * terms["pyramid"]
        if h.pixel_weight > 0:
            terms["pixel"] = F.l1_loss(outputs, reference)
            total = total + h.pixel_weight * terms["pixel"]
        terms["loss"] = total
        return terms

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def sample_for_batch(self, batch: Mapping[str, Any], **_: Any) -> Tensor:
        """The restored face (branch mean) per item: the EvaluationCallback's paired contract."""
        return self.restore(batch["input"].to(self.device)).mean.clamp(-1, 1)

    def sample(self, num_samples: int, **_: Any) -> Tensor:
        raise TypeError("LTT-GAN restores inputs: evaluate it with sample_for_batch")

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        restored = self.sample_for_batch(batch)
        self.log("val/l1", (restored - batch["image"]).abs().mean(), batch_size=restored.shape[0], sync_dist=True)

    def on_test_epoch_start(self) -> None:
        self._timing = [0.0, 0]
        self._identity = {"probe": [], "probe_ids": [], "gallery": [], "gallery_ids": []}

    def test_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        if "role" in batch:  # identity set: restore probes, embed both roles
            embedder = IdentityEmbedder(self.arcface)
            roles = torch.as_tensor(batch["role"])
            images = batch["input"]
            with torch.no_grad():
                for role, key in ((0, "probe"), (1, "gallery")):
                    index = (roles == role).nonzero().flatten().tolist()
                    if not index:
                        continue
                    faces = images[index]
                    if role == 0:
                        faces = self.sample_for_batch({"input": faces})
                    self._identity[key].append(embedder(faces).cpu())
                    self._identity[f"{key}_ids"] += [batch["identity"][i] for i in index]
            return
        start = time.perf_counter()
        restored = self.sample_for_batch(batch)
        self._timing[0] += time.perf_counter() - start
        self._timing[1] += restored.shape[0]
        self.log("test/l1", (restored - batch["image"]).abs().mean(), batch_size=restored.shape[0], sync_dist=True)

    def on_test_epoch_end(self) -> None:
        results: dict[str, tuple[str, float, int]] = {}
        if self._timing[1]:
            rate = self._timing[1] / max(self._timing[0], 1e-9)
            results["images/s"] = (self.hparams.dataset_name, rate, self._timing[1])
            results["Time_s"] = (self.hparams.dataset_name, 1.0 / rate, self._timing[1])  # Table 6.6's column
        if self._identity.get("probe"):
            probe, gallery = torch.cat(self._identity["probe"]), torch.cat(self._identity["gallery"])
            pid, gid = self._identity["probe_ids"], self._identity["gallery_ids"]
            for name, value in top_k_accuracy(probe, pid, gallery, gid).items():
                results[name] = (self.hparams.identity_dataset_name, value, len(pid))
            means = {i: F.normalize(gallery[[k for k, g in enumerate(gid) if g == i]], dim=1).mean(0) for i in set(pid)}
            ref = torch.stack([means[i] for i in pid])
            deg = float(100 * F.cosine_similarity(probe.double(), ref.double(), dim=1).mean())
            results["Deg"] = (self.hparams.identity_dataset_name, deg, len(pid))
        for name, (_, value, _) in results.items():
            self.log(f"test/{name}", value, sync_dist=True)
        self.last_results = {k: v[1] for k, v in results.items()}
        config = run_config_path(self.trainer)  # every rank (it reads trainer.log_dir), before the rank-0 write
        provenance = run_provenance(self.trainer)  # checkpoint, its step, config files (every rank)
        if results and self.hparams.results_file and self.trainer.is_global_zero:
            reasons = "; ".join(self.stand_in_reasons()) or None
            data = infer_data_flag(self.trainer)
            named = {d: dataset_field(self.trainer, d, data) for d in {v[0] for v in results.values()}}
            rows = [ResultRow(paper=self.hparams.paper, method=self.hparams.method, dataset=named[dataset][0], split="test",
                              resolution=None, num_samples=count, nfe=1, guidance=None, metric=name, value=value,
                              evaluator="timed generator forward" if name in ("images/s", "Time_s") else "ArcFace-ResNet18 cosine",
                              config=config, commit=git_commit(), date=utc_now(),
                              weights="random" if self.uses_random_weights else "pretrained",
                              data=data,
                              extra={**provenance, **named[dataset][1],
                                     "branches": int(getattr(self.generator, "num_branches", 1)),
                                     "random_weights_reason": reasons, "device": str(self.device)})
                    for name, (dataset, value, count) in results.items()]
            append_rows(self.hparams.results_file, rows)

    # ------------------------------------------------------------------ predict
    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """The restored face and its uncertainty map (the HPC variance, scaled to [-1, 1]) per input,
        both mapped back to the input's own size through the batch's ``placement`` (the datamodule
        pads each input to the model square, ``data.predict_fit``); ``<name>.png`` and
        ``<name>__uncertainty.png``, with ``manifest.json``."""
        from datamodules.predict_inputs import restore_from_canvas

        images = batch["image"] if "image" in batch and "input" not in batch else batch["input"]
        writer = self.prediction_writer("restored", {"branches": int(getattr(self.generator, "num_branches", 1)),
                                                     "size": int(images.shape[-1])})
        with torch.no_grad():
            out = self.restore(images.to(self.device))
        names = names_of(batch, batch_idx, images.shape[0])
        placement = batch.get("placement")
        for row, name in enumerate(names):
            restored = out.mean[row].clamp(-1, 1).float().cpu()
            variance = out.variance[row].float().cpu()
            peak = float(variance.max())
            uncertainty = ((variance / peak if peak > 0 else variance) * 2 - 1).expand(3, -1, -1)
            if placement is not None:
                restored = restore_from_canvas(restored, placement[row])
                uncertainty = restore_from_canvas(uncertainty, placement[row]).clamp(-1, 1)
            paths = [writer.save_image(restored, name), writer.save_image(uncertainty, name, "uncertainty")]
            source = batch["path"][row] if "path" in batch else f"predict split, batch {batch_idx} item {row}"
            writer.record(source, paths, size=list(restored.shape[-2:]), max_variance=peak,
                          placement=placement[row].as_dict() if placement is not None else None)

__all__ = ["CX_MODES", "LTTGAN"]

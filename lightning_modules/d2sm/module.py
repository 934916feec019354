"""Restoration training with D2SM (thesis 001, Ch. 9): L1 + lambda * D2SM on any restorer.

Objective (§9.4, the code's weights): ``l1_weight * |G(x) - y|_1 + d2sm_weight * D2SM(G(x), y)``
with :class:`lightning_modules.components.d2sm_loss.D2SMLoss`; ``d2sm_weight: 0`` is the L1
baseline of Table 9.1 (Phi is then not built). Adam 1e-4, betas (0.9, 0.999), MultiStepLR x0.5
at epochs [80, 160, 240, 320, 400, 800] (the d2sm code; the thesis says "other settings as
FFDNet"). The restorer is a slot: FFDNet (noise-level map input) by default, any ``nn.Module``
otherwise (:mod:`lightning_modules.d2sm.restorers`).

Evaluation (Table 9.1 protocol): per noise level sigma of the validation items, PSNR / SSIM
(:mod:`metrics.image_quality`) and the mIoU over the 19 Cityscapes classes (ignore 255,
:class:`metrics.segmentation.MeanIoU`) of a segmenter run on the restored images, logged as
``val/PSNR-s25`` ... and, on ``test``, written as results rows named like
``benchmarks/paper_numbers.yaml`` (paper ``semantic_stats``, metrics ``PSNR-s25``, ``MIoU-s25``).
Face SR / dehazing rows use ``metric_suffix`` (``-CelebA``) and no sigma grouping.

Predict: each input image (any size; FFDNet pads odd sizes) -> ``<input stem>.png`` plus a
``manifest.json``; sigma comes from the batch or, when missing (NaN), is estimated with
the wavelet MAD estimator of Donoho & Johnstone (:func:`estimate_noise_sigma`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.components.d2sm_loss import D2SMLoss
from lightning_modules.components.frozen_parts import FrozenPartsModule
from lightning_modules.components.semantic_features import build_semantic_features
from lightning_modules.d2sm.restorers import FFDNet, run_restorer
from lightning_modules.d2sm.segmenter import load_segmenter
from metrics.image_quality import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure
from metrics.results_rows import (ResultRow, append_rows, dataset_field, describe_evaluator, git_commit, infer_data_flag,
                                  run_config_path, run_provenance, utc_now)
from metrics.segmentation import MeanIoU
from lightning_modules.components.predict_outputs import PredictOutputsMixin

_TASKS = ("denoise", "sr", "dehaze")


def estimate_noise_sigma(image: Tensor) -> float:
    """Noise std on the 0..255 scale of one ``[C, H, W]`` image in [-1, 1].

    Donoho & Johnstone's robust estimate, median(|HH|) / 0.6745 on the finest diagonal band of
    an orthonormal Haar transform, averaged over channels (scikit-image's ``estimate_sigma``
    does the same with db2 but needs PyWavelets, which the suite does not install).
    """
    x = (image.detach().float().cpu() + 1.0) * 0.5
    x = x[:, : x.shape[1] // 2 * 2, : x.shape[2] // 2 * 2]
    if x.shape[1] < 2 or x.shape[2] < 2:
        raise ValueError(f"cannot estimate the noise level of a {tuple(image.shape[-2:])} image; give predict_sigma")
    a, b, c, d = x[:, 0::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 0::2], x[:, 1::2, 1::2]
    diagonal = (a - b - c + d) * 0.5
    return float(diagonal.abs().flatten(1).median(1).values.mean() / 0.6745) * 255.0


class D2SMRestorationModule(PredictOutputsMixin, FrozenPartsModule):
    """Any restorer trained with L1 + lambda * D2SM (see the module docstring).

    Args:
        restorer: the backbone slot (``None``: published-size :class:`FFDNet`).
        task: ``denoise`` (batches carry ``sigma``), ``sr`` or ``dehaze``.
        l1_weight, d2sm_weight: loss weights (code: 1 and 1; 0 turns D2SM off).
        phi: ``vgg19`` (the paper's Phi, weights from ``vgg_weights``) or ``tiny_random`` (stand-in).
        vgg_weights, phi_layer: torchvision VGG-19 state dict and the tapped layer (conv5_4, pre-ReLU).
        queue_size, window, stride, internal, divergence, include_diagonal, reduction: :class:`D2SMLoss`.
        lr, betas, milestones, gamma, milestone_interval: Adam + MultiStepLR (``epoch`` or ``step``).
        segmenter: ``null`` (no mIoU), ``tiny_random`` (stand-in), ``torchscript`` or ``state_dict``.
        segmenter_path, segmenter_class, segmenter_init_args: see :func:`load_segmenter`.
        landmarks, landmark_path: face-SR NRMSE (Table 9.2): ``null``, ``tiny_random`` (stand-in) or
            ``torchscript`` (alignment network from ``landmark_path``), see :mod:`metrics.landmarks`.
        num_classes, ignore_index: mIoU protocol (19, 255).
        paper, method, dataset_name, split_name, metric_suffix, results_file: results-row fields.
        table: the ``benchmarks/paper_numbers.yaml`` table the rows belong to (Table 9.1 / 9.2 / 9.3).
        sigma_suffix: name denoising metrics per sigma (``PSNR-s25``, Table 9.1); False gives ``PSNR``
            (Table 9.4, evaluated at sigma 25 only).
        predict_dir: folder for predictions (``None``: ``<run folder>/predictions/<task>``).
        released_checkpoint: an FFDNet ``checkpoint_XXXX.pth.tar`` of the authors' code (github.com/MKFMIKU/d2sm;
            they published none) imported into ``restorer`` by :mod:`lightning_modules.d2sm.released`;
            rows record it (``released_checkpoint``).
    """

    predict_counts_sampler_steps = False  # a feed-forward restorer: no sampler steps to count

    def __init__(
        self,
        restorer: Optional[nn.Module] = None,
        task: str = "denoise",
        l1_weight: float = 1.0,
        d2sm_weight: float = 1.0,
        phi: str = "vgg19",
        vgg_weights: Optional[str] = None,
        phi_layer: str = "conv5_4",
        queue_size: int = 256,
        window: int = 224,
        stride: int = 56,
        internal: bool = True,
        divergence: str = "kl",
        include_diagonal: bool = False,
        reduction: str = "mean",
        lr: float = 1e-4,
        betas: Sequence[float] = (0.9, 0.999),
        milestones: Sequence[int] = (80, 160, 240, 320, 400, 800),
        gamma: float = 0.5,
        milestone_interval: str = "epoch",
        segmenter: Optional[str] = None,
        segmenter_path: Optional[str] = None,
        segmenter_class: Optional[str] = None,
        segmenter_init_args: Optional[dict[str, Any]] = None,
        landmarks: Optional[str] = None,
        landmark_path: Optional[str] = None,
        num_classes: int = 19,
        ignore_index: int = 255,
        paper: str = "semantic_stats",
        method: Optional[str] = None,
        dataset_name: str = "Cityscapes (Gaussian noise sigma 25/35/50)",
        split_name: str = "test",
        metric_suffix: str = "",
        sigma_suffix: bool = True,
        results_file: Optional[str] = "results/d2sm.jsonl",
        table: Optional[str] = None,
        predict_dir: Optional[str] = None,
        released_checkpoint: Optional[str] = None,
    ) -> None:
        super().__init__()
        if task not in _TASKS:
            raise ValueError(f"task must be one of {_TASKS}, received {task!r}")
        if milestone_interval not in ("epoch", "step"):
            raise ValueError(f"milestone_interval must be 'epoch' or 'step', received {milestone_interval!r}")
        if l1_weight < 0 or d2sm_weight < 0 or (l1_weight == 0 and d2sm_weight == 0):
            raise ValueError(f"l1_weight ({l1_weight}) and d2sm_weight ({d2sm_weight}) must be >= 0, not both 0")
        self.save_hyperparameters(ignore=["restorer"])
        self.restorer = restorer if restorer is not None else FFDNet()
        #: an FFDNet checkpoint of the authors' code (none was published; lightning_modules/d2sm/released.py)
        self.released_checkpoint = released_checkpoint
        self.loads_own_weights = bool(released_checkpoint)  # cli.py: test / predict need no --ckpt_path then
        if released_checkpoint:
            from lightning_modules.d2sm.released import import_d2sm_ffdnet

            import_d2sm_ffdnet(self.restorer, released_checkpoint)
        self.task = task
        self.d2sm: Optional[D2SMLoss] = None
        self.phi_is_stand_in = False
        if d2sm_weight > 0:
            extractor = self.register_frozen("phi", build_semantic_features(phi, vgg_weights, phi_layer))
            self.phi_is_stand_in = bool(getattr(extractor, "random_weights", False))
            self.d2sm = D2SMLoss(extractor, queue_size=queue_size, window=window, stride=stride, internal=internal,
                                 divergence=divergence, include_diagonal=include_diagonal, reduction=reduction,  # type: ignore[arg-type]
                                 register_extractor=False)
        if segmenter is not None:
            self.register_frozen("segmenter_net",
                                 load_segmenter(segmenter, segmenter_path, segmenter_class, segmenter_init_args, num_classes))
        if landmarks is not None:
            from metrics.landmarks import TinyRandomLandmarks, load_landmark_model

            if landmarks not in ("tiny_random", "torchscript"):
                raise ValueError(f"landmarks must be null, 'tiny_random' or 'torchscript', received {landmarks!r}")
            net = TinyRandomLandmarks() if landmarks == "tiny_random" else load_landmark_model(str(landmark_path))
            self.register_frozen("landmark_net", net)
            self.landmarks_are_stand_in = landmarks == "tiny_random"
        self._metrics: dict[str, dict[str, Any]] = {}
        self._counts: dict[str, int] = {}
        self._manifest: list[dict[str, Any]] = []
        self.predictions_dir: Optional[str] = None
        self.last_results: dict[str, float] = {}
        self._checkpoint_step: Optional[int] = None
        self.results_file = results_file  # an attribute, so a caller (a test) can redirect the rows
        self._seen_hw: Optional[tuple[int, int]] = None

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._checkpoint_step = int(checkpoint.get("global_step", 0))

    @property
    def segmenter_module(self) -> Optional[nn.Module]:
        """The frozen evaluation segmenter, or ``None`` (no mIoU)."""
        return self._frozen.get("segmenter_net")

    # ------------------------------------------------------------------ weights flag
    @property
    def uses_random_weights(self) -> bool:
        seg_random = bool(getattr(self.segmenter_module, "random_weights", False))
        return (self.phi_is_stand_in or seg_random or bool(getattr(self, "landmarks_are_stand_in", False))
                or bool(getattr(self, "untrained_weights", False)))  # cli.py --allow_random_weights

    # ------------------------------------------------------------------ restore
    def restore(self, batch: Mapping[str, Any]) -> Tensor:
        sigma = batch.get("sigma")
        return run_restorer(self.restorer, batch["input"], sigma if isinstance(sigma, Tensor) else None)

    def sample_for_batch(self, batch: Mapping[str, Any], **_: Any) -> Tensor:
        """One restored image per item (the EvaluationCallback's paired-metric contract)."""
        return self.restore(batch)

    def sample(self, num_samples: int, **_: Any) -> Tensor:
        raise NotImplementedError("D2SM restorers are conditional: use sample_for_batch(batch)")

    def losses(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        restored = self.restore(batch)
        clean = batch["image"]
        out = {"l1": F.l1_loss(restored, clean)}
        loss = self.hparams.l1_weight * out["l1"]
        if self.d2sm is not None:
            out["d2sm"] = self.d2sm(restored, clean)
            loss = loss + self.hparams.d2sm_weight * out["d2sm"]
        out["loss"] = loss
        return out

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        out = self.losses(batch)
        size = batch["image"].shape[0]
        for key, value in out.items():
            self.log(f"train/{key}", value, prog_bar=key == "loss", batch_size=size)
        return out["loss"]

    # ------------------------------------------------------------------ evaluation
    def _group_names(self, batch: Mapping[str, Any]) -> list[str]:
        size = batch["image"].shape[0]
        if self.task == "denoise" and self.hparams.sigma_suffix and isinstance(batch.get("sigma"), Tensor):
            return [f"-s{round(float(s))}{self.hparams.metric_suffix}" for s in batch["sigma"]]
        return [self.hparams.metric_suffix] * size

    def _metric_set(self, group: str) -> dict[str, Any]:
        if group not in self._metrics:
            metrics: dict[str, Any] = {"PSNR": PeakSignalNoiseRatio(), "SSIM": StructuralSimilarityIndexMeasure()}
            if self.segmenter_module is not None:
                metrics["MIoU"] = MeanIoU(self.hparams.num_classes, self.hparams.ignore_index)
            if "landmark_net" in self._frozen:
                from metrics.landmarks import LandmarkNRMSE

                metrics["NRMSE"] = LandmarkNRMSE(self._frozen["landmark_net"],
                                                 random_weights=getattr(self, "landmarks_are_stand_in", False))
            self._metrics[group] = {k: m.to(self.device) for k, m in metrics.items()}
            self._counts[group] = 0
        return self._metrics[group]

    def _evaluate(self, batch: Mapping[str, Any], restored: Optional[Tensor] = None) -> None:
        restored = (self.restore(batch) if restored is None else restored).clamp(-1, 1)
        clean = batch["image"]
        if self._seen_hw is None:
            self._seen_hw = (int(clean.shape[-2]), int(clean.shape[-1]))  # the row's resolution
        labels = batch.get("label")
        groups = self._group_names(batch)
        for group in sorted(set(groups)):
            index = torch.tensor([i for i, g in enumerate(groups) if g == group], device=restored.device)
            metrics = self._metric_set(group)
            metrics["PSNR"].update(restored[index], clean[index])
            metrics["SSIM"].update(restored[index], clean[index])
            if "NRMSE" in metrics:
                points = batch.get("landmarks")
                metrics["NRMSE"].update(restored[index], clean[index],
                                        points[index] if isinstance(points, Tensor) else None)
            if "MIoU" in metrics and isinstance(labels, Tensor):
                metrics["MIoU"].update(self.segmenter_module(restored[index]).argmax(1), labels[index])
            self._counts[group] += int(index.numel())

    def on_validation_epoch_start(self) -> None:
        self._metrics, self._counts = {}, {}

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        restored = self.restore(batch)
        self.log("val/l1", F.l1_loss(restored, batch["image"]), prog_bar=True, batch_size=batch["image"].shape[0])
        self._evaluate(batch, restored)

    def _results(self) -> dict[str, float]:
        results = {}
        for group, metrics in self._metrics.items():
            for name, metric in metrics.items():
                value = float(metric.compute())
                if not math.isnan(value):
                    results[f"{name}{group}"] = value
        return results

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        results = self._results()
        for key, value in results.items():
            self.log(f"val/{key}", value, sync_dist=True)
        self.last_results = results

    def on_test_epoch_start(self) -> None:
        self._metrics, self._counts = {}, {}

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._evaluate(batch)

    def on_test_epoch_end(self) -> None:
        results = self._results()
        for key, value in results.items():
            self.log(f"test/{key}", value, sync_dist=True)
        self.last_results = results
        config = run_config_path(self.trainer)  # reads trainer.log_dir: on every rank, before the rank-0 write
        provenance = run_provenance(self.trainer)  # on every rank (reads the run folder)
        if self.results_file and self.trainer.is_global_zero:
            append_rows(self.results_file, self._rows(results, config, provenance))

    def _rows(self, results: dict[str, float], config: Optional[str],
              provenance: Optional[dict[str, Any]] = None) -> list[ResultRow]:
        reasons = []
        if self.phi_is_stand_in:
            reasons.append("Phi is the tiny random stand-in")
        if getattr(self.segmenter_module, "random_weights", False):
            reasons.append("segmenter is the tiny random stand-in")
        if getattr(self, "landmarks_are_stand_in", False):
            reasons.append("landmark network is the tiny random stand-in")
        if getattr(self, "untrained_weights", False):
            reasons.append("restorer is untrained (no checkpoint, --allow_random_weights true)")
        method = self.hparams.method or ("D2SM (Ours) / w/. Internal" if self.d2sm is not None and self.hparams.internal
                                         else "D2SM (Ours) / w/o. Internal" if self.d2sm is not None else "FFDNet / L_1")
        data = infer_data_flag(self.trainer)
        dataset, dataset_extra = dataset_field(self.trainer, self.hparams.dataset_name, data)
        provenance = dict(provenance or run_provenance(self.trainer))
        if self._checkpoint_step is not None and not provenance.get("checkpoint"):
            provenance["step"] = self._checkpoint_step
        resolution = f"{self._seen_hw[0]}x{self._seen_hw[1]}" if self._seen_hw else None
        rows = []
        for key, value in results.items():
            group = next((g for g in self._metrics if key.endswith(g) and key[: len(key) - len(g)] in self._metrics[g]), "")
            name = key[: len(key) - len(group)] if group else key
            metric = self._metrics.get(group, {}).get(name)
            rows.append(ResultRow(
                paper=self.hparams.paper, method=method, dataset=dataset,
                split=self.hparams.split_name, resolution=resolution, num_samples=self._counts.get(group), nfe=1,
                guidance=None, metric=key, value=value,
                evaluator=describe_evaluator(metric) if metric is not None else name,
                config=config, commit=git_commit(), date=utc_now(),
                weights="random" if self.uses_random_weights else "pretrained", data=data,
                extra={**provenance, **dataset_extra, "table": self.hparams.table,
                       "restorer": type(self.restorer).__name__,
                       "queue_size": self.hparams.queue_size if self.d2sm is not None else None,
                       "random_weights_reason": "; ".join(reasons) or None},
            ))
        return rows

    # ------------------------------------------------------------------ predict
    def on_predict_epoch_start(self) -> None:
        """One writer per predict run: ``predict_dir`` if set, else ``<run>/predictions/<task>``;
        outputs are never overwritten and ``manifest.json`` lists input -> output (``components.predict_outputs``)."""
        from lightning_modules.components.predict_outputs import PredictionWriter

        settings = {"task": self.task, "restorer": type(self.restorer).__name__,
                    "mapping": "none: the restorer is fully convolutional and runs at the input's own size"}
        if self.hparams.predict_dir:
            self._writer = PredictionWriter(Path(self.hparams.predict_dir), settings)
        else:
            self._writer = self.prediction_writer(self.task, settings)
        self.predictions_dir = str(self._writer.folder)

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Restore each input at its own size (SR: ``scale`` x) and write ``<input name>.png``."""
        inputs = batch["input"]
        sigma = batch.get("sigma")
        source = ["given"] * inputs.shape[0]
        if self.task == "denoise":
            sigma = sigma.clone().float() if isinstance(sigma, Tensor) else torch.full((inputs.shape[0],), float("nan"))
            for i in range(inputs.shape[0]):
                if math.isnan(float(sigma[i])):
                    sigma[i] = estimate_noise_sigma(inputs[i])
                    source[i] = "estimated (Haar MAD)"
            sigma = sigma.to(inputs.device)
        restored = run_restorer(self.restorer, inputs, sigma if self.task == "denoise" else None)
        denoise = self.task == "denoise"
        self.write_batch_images(self._writer, restored.clamp(-1, 1), batch, batch_idx,
                                sigma=[float(s) for s in sigma] if denoise else None,
                                sigma_source=source if denoise else None)

    # ------------------------------------------------------------------ optimiser
    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(self.trainable_parameters(), lr=self.hparams.lr, betas=tuple(self.hparams.betas))
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(self.hparams.milestones), self.hparams.gamma)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": self.hparams.milestone_interval}}


__all__ = ["D2SMRestorationModule", "estimate_noise_sigma"]

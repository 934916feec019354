"""Evaluation callback: sample the module, score it with the configured metrics, log, write results rows.

On validation and/or test, real data comes from the stage's own batches
(``batch[real_key]``, fed to the metrics as they pass) and generated data from
``pl_module.sample(num_samples, labels=..., num_steps=..., sampler=...,
guidance_scale=..., generator=...)`` (the ``DiffusionModule`` contract in
docs/architecture.md), drawn in batches at the end of the epoch. Every metric
value is logged (``<log_prefix>/<name>``) and appended as one JSON row to
``<results_dir>/<results_file>`` (fields in ``metrics.results_rows``).

Two kinds of metric are understood:

* **distribution metrics** (FID, KID, FVD, frame FID, ...), whose ``update``
  takes ``(images, real: bool)``: real batches in, generated samples in;
* **paired metrics** (LPIPS, SSIM, PSNR, ...), ``update(preds, target)``: they
  need an output per real item, so the module must define
  ``sample_for_batch(batch, *, num_steps, sampler, guidance_scale, generator)``
  returning one generated image per item of ``batch[real_key]`` (e.g. pose
  transfer, restoration). Configuring a paired metric for a module without
  that method is an error at setup.

* **conditioned metrics** (CLIP score, CLIPSIM: anything that scores a sample against its
  condition), which declare ``batch_conditions = {update argument: batch key}``: the callback
  generates one output per real item with ``sample_for_batch`` and calls
  ``update(outputs, **{arg: batch[key]})``, e.g. ``update(videos, text=batch["caption"])``.
  Like paired metrics they need ``sample_for_batch``.

Conditional papers (pose transfer, video from references) generate one output per real
item for distribution metrics too: with ``per_batch_generation`` the callback feeds the
outputs of ``sample_for_batch`` to every metric instead of calling ``sample(n)``; with
``flatten_frames`` paired metrics see video batches ``[B, T, C, H, W]`` as ``B * T`` images.
Metrics that declare ``takes_batch = True`` compare more than one image per item (whole painting
processes of their own length, instruction strings): they get ``update(outputs, batch)`` with
whatever ``sample_for_batch`` returned (a tensor or a list, one entry per item) and the real batch.
The rows' ``method`` is ``method`` when given, else the module's ``results_method``,
``method_label()`` or ``method_name``; their ``table`` is ``table`` when given, else the module's
``results_table``; a module's ``results_row_extra()`` (a dict) is added to every row's ``extra``.

A distribution metric can score against precomputed real statistics instead of the stage's
batches (``reference_statistics``: metric name -> ``.npz`` with ``mu``/``sigma``/``count``, e.g.
CFLD's training-split Inception statistics, the authors' protocol). The file is read at the start
of each evaluation (so ``fit`` without validation never needs it) and named in the rows.

Under DDP each rank draws its share of the samples with its own seed, the
metrics reduce their states across ranks, and rank 0 writes the rows.
"""
from __future__ import annotations

import inspect
import logging
import os
from typing import Any, Mapping, Optional, Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor
from torchmetrics import Metric

from lightning_modules.components.run_dir import remember_run_dir, run_dir
from metrics.results_rows import (
    ResultRow,
    append_rows,
    dataset_field,
    describe_evaluator,
    git_commit,
    infer_data_flag,
    infer_weights_flag,
    run_config_path,
    run_provenance,
    utc_now,
)

log = logging.getLogger(__name__)

_STAGES = ("validation", "test")


def _is_distribution_metric(metric: Metric) -> bool:
    return "real" in inspect.signature(metric.update).parameters


def _batch_conditions(metric: Metric) -> dict[str, str]:
    """A conditioned metric's ``{update argument: batch key}`` (empty for the other kinds)."""
    return dict(getattr(metric, "batch_conditions", None) or {})


def _module_method(pl_module: Any) -> str:
    """The method name a module gives its rows: ``method_label()``, else ``method_name``, else its class."""
    if callable(getattr(pl_module, "method_label", None)):
        return str(pl_module.method_label())
    name = getattr(pl_module, "method_name", None)
    return str(name) if name else type(pl_module).__name__


def _instantiate(spec: Any, where: str) -> Any:
    """``{class_path, init_args}`` (nested ones too) -> the object; other values unchanged."""
    if hasattr(spec, "as_dict") and callable(spec.as_dict):  # a jsonargparse Namespace from the config
        spec = spec.as_dict()
    if isinstance(spec, Mapping) and "class_path" in spec:
        import importlib

        module_name, _, class_name = str(spec["class_path"]).rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError, ValueError) as err:
            raise ValueError(f"EvaluationCallback: {where}.class_path={spec['class_path']!r} cannot be imported ({err})") from None
        kwargs = {k: _instantiate(v, f"{where}.init_args.{k}") for k, v in dict(spec.get("init_args") or {}).items()}
        return cls(**kwargs)
    if isinstance(spec, Mapping):
        return {k: _instantiate(v, f"{where}.{k}") for k, v in spec.items()}
    return spec


def _flatten(name: str, value: Any) -> dict[str, float]:
    """``Tensor`` -> ``{name: v}``; ``{"value": m, "std": s}`` -> ``{name: m, name_std: s}``; other keys appended."""
    if isinstance(value, Mapping):
        out: dict[str, float] = {}
        for key, sub in value.items():
            out.update(_flatten(name if key == "value" else f"{name}_{key}", sub))
        return out
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return {name: float(value[0]), f"{name}_std": float(value[1])}
    return {name: float(value)}


class EvaluationCallback(Callback):
    """Sample-and-score evaluation with results rows.

    Args:
        metrics: name -> torchmetrics ``Metric`` (e.g. ``{"fid": FrechetInceptionDistance(...)}``);
            the name becomes the logged key and the row's ``metric`` field.
        num_samples: generated samples per evaluation (all ranks together).
        batch_size: samples drawn per ``pl_module.sample`` call.
        stages: when to evaluate: any of ``"validation"``, ``"test"``.
        every_n_epochs: evaluate on validation every n epochs (test always runs).
        num_steps: sampler steps passed to ``sample`` (``None``: the module's default).
        sampler: sampler name passed to ``sample`` (``None``: the module's default).
        guidance_scale: guidance scale passed to ``sample`` (``None``: the module's default).
        nfe: network evaluations per sample recorded in the rows; ``None`` uses
            ``pl_module.nfe(num_steps, sampler, guidance_scale)`` when the module
            has it, else the number of steps.
        real_key: batch key of the real data (``"image"``; ``"video"`` for FVD).
        label_key: batch key of class labels; when present in the real batches
            and ``use_labels``, generated samples use the real label distribution.
        use_labels: condition sampling on labels collected from real batches
            (skipped for a module whose ``num_classes`` is ``None``).
        max_real_samples: real items fed to distribution metrics per
            evaluation (all ranks together); ``None``: every batch of the stage.
        seed: base seed of the sampling generator (rank added), the same every
            evaluation so values are comparable across epochs.
        paper, method, dataset: row fields (``method`` defaults to the module's
            class name); ``dataset`` is the paper's dataset as ``benchmarks/paper_numbers.yaml``
            spells it. On embedded data the row's ``dataset`` names the stand-in instead and
            ``stand_in_for`` keeps this value (``metrics.results_rows.dataset_field``).
        table: the ``paper_numbers.yaml`` table this protocol reproduces (row extra ``table``;
            the leaderboard places the row there); ``None`` uses the module's ``results_table`` when it
            has one (CFLD's ablation overlays change the module, not the callback list: Table 3).
        metric_names: logged/flattened metric key -> the paper's metric name for the rows
            (e.g. ``{precision_recall_precision: Precision}``); keys not listed keep their name.
        resolution: row field; ``None`` records the pixel size ``HxW`` of the images the
            metrics saw (real images, else generated ones), never a latent grid.
        split: row field; ``None`` uses the stage (``"val"`` / ``"test"``).
        config: row field naming the run's config; ``None`` looks for
            ``config.yaml`` in the trainer's log dir.
        results_dir: folder of the JSONL files (``results/`` in the repo).
        results_file: JSONL file name; ``None``: ``<paper or method>.jsonl``.
        weights: row flag ``"random"`` / ``"pretrained"``; ``None`` infers
            ``"random"`` when any metric's feature network has random weights
            or the module reports ``uses_random_weights``.
        data: row flag ``"embedded"`` / ``"real"``; ``None`` infers from the
            datamodule (``root is None`` or an embedded DataModule class).
        save_samples: ``None``, ``"png"`` (one file per sample) or ``"npz"``
            (one ``uint8 [N, H, W, C]`` array ``arr_0``, the ADM reference format).
        samples_dir: folder for saved samples; ``None``: ``<log_dir>/samples``.
        log_prefix: prefix of logged metric names.
        progress_bar: show a tqdm bar while sampling (rank 0 only).
        write_results: append rows (turn off for pure monitoring).
        per_batch_generation: generate from each real batch with ``sample_for_batch``
            and feed those outputs to the distribution metrics as well (conditional
            models, whose samples only make sense for a given input).
        flatten_frames: fold the frame axis of video predictions and targets
            ``[B, T, C, H, W]`` into the batch before paired (image) metrics.
        mask_key: batch key of a region mask passed as the third argument to paired
            metrics whose ``update`` takes one (``update(preds, target, mask)``: the
            shadow-region metrics of LFG-Diffusion); ``None``: no mask.
        deferred_metrics: name -> ``{class_path, init_args}`` of metrics built only at ``setup`` of a
            stage this callback evaluates (``init_args`` may nest ``class_path`` dicts), so a ``fit``
            that never evaluates needs none of their weight files (CFLD's Table 2 metrics: test only).
        reference_statistics: metric name -> ``.npz`` of precomputed real statistics
            (``FrechetInceptionDistance.save_real_statistics``), loaded with the metric's
            ``load_real_statistics`` at each evaluation start; that metric then ignores the
            stage's real batches. Rows record the file (extra ``reference_statistics``).

    ``method`` ``None`` uses the module's ``results_method`` when it has one (reference rows such as
    CFLD's "VAE Reconstructed"), else its class name.
    """

    def __init__(
        self,
        metrics: Optional[Mapping[str, Metric]] = None,
        num_samples: int = 1000,
        batch_size: int = 100,
        stages: Sequence[str] = ("validation", "test"),
        every_n_epochs: int = 1,
        num_steps: Optional[int] = None,
        sampler: Optional[str] = None,
        guidance_scale: Optional[float] = None,
        nfe: Optional[int] = None,
        real_key: str = "image",
        label_key: str = "label",
        use_labels: bool = True,
        max_real_samples: Optional[int] = None,
        seed: int = 0,
        paper: Optional[str] = None,
        method: Optional[str] = None,
        dataset: Optional[str] = None,
        table: Optional[str] = None,
        metric_names: Optional[Mapping[str, str]] = None,
        resolution: Optional[str] = None,
        split: Optional[str] = None,
        config: Optional[str] = None,
        results_dir: str = "results",
        results_file: Optional[str] = None,
        weights: Optional[str] = None,
        data: Optional[str] = None,
        save_samples: Optional[str] = None,
        samples_dir: Optional[str] = None,
        log_prefix: str = "eval",
        progress_bar: bool = True,
        write_results: bool = True,
        per_batch_generation: bool = False,
        flatten_frames: bool = False,
        mask_key: Optional[str] = None,
        reference_statistics: Optional[Mapping[str, str]] = None,
        deferred_metrics: Optional[Mapping[str, Mapping[str, Any]]] = None,
    ) -> None:
        super().__init__()
        self.deferred_metrics = {name: dict(spec.as_dict() if hasattr(spec, "as_dict") else spec)
                                 for name, spec in (deferred_metrics or {}).items()}
        if not metrics and not self.deferred_metrics:
            raise ValueError("EvaluationCallback needs at least one metric")
        for name, spec in self.deferred_metrics.items():
            if not isinstance(spec, Mapping) or "class_path" not in spec:
                raise ValueError(f"EvaluationCallback: deferred_metrics[{name!r}] needs a class_path (and init_args)")
        bad = [s for s in stages if s not in _STAGES]
        if bad:
            raise ValueError(f"stages must be among {_STAGES}, received {bad}")
        if save_samples not in (None, "png", "npz"):
            raise ValueError(f"save_samples must be None, 'png' or 'npz', received {save_samples!r}")
        if weights not in (None, "random", "pretrained"):
            raise ValueError(f"weights must be None, 'random' or 'pretrained', received {weights!r}")
        if data not in (None, "embedded", "real"):
            raise ValueError(f"data must be None, 'embedded' or 'real', received {data!r}")
        if num_samples < 1 or batch_size < 1 or every_n_epochs < 1:
            raise ValueError("num_samples, batch_size and every_n_epochs must be >= 1")
        self.metrics = dict(metrics or {})
        self.num_samples, self.batch_size = int(num_samples), int(batch_size)
        self.stages, self.every_n_epochs = tuple(stages), int(every_n_epochs)
        self.num_steps, self.sampler, self.guidance_scale, self.nfe = num_steps, sampler, guidance_scale, nfe
        self.real_key, self.label_key, self.use_labels = real_key, label_key, use_labels
        self.max_real_samples, self.seed = max_real_samples, int(seed)
        self.paper, self.method, self.dataset, self.split, self.config = paper, method, dataset, split, config
        self.table, self.metric_names, self.resolution = table, dict(metric_names or {}), resolution
        self._seen_hw: Optional[tuple[int, int]] = None
        self.results_dir, self.results_file = results_dir, results_file
        self.weights, self.data = weights, data
        self.save_samples, self.samples_dir = save_samples, samples_dir
        self.log_prefix, self.progress_bar, self.write_results = log_prefix, progress_bar, write_results
        self.per_batch_generation, self.flatten_frames = bool(per_batch_generation), bool(flatten_frames)
        self.mask_key = mask_key
        self.reference_statistics = dict(reference_statistics or {})
        for name in self.reference_statistics:
            if name in self.deferred_metrics:
                continue  # checked when built
            if name not in self.metrics or not hasattr(self.metrics[name], "load_real_statistics"):
                raise ValueError(f"EvaluationCallback: reference_statistics names {name!r}, which is not a metric with "
                                 f"load_real_statistics (metrics: {sorted(self.metrics)})")
        self._split_metrics()
        self._real_seen = 0
        self._labels: list[Tensor] = []
        self._paired_count = 0
        self._active = False
        self.last_results: dict[str, float] = {}
        self.last_rows: list[ResultRow] = []

    def _split_metrics(self) -> None:
        self._conditioned = {n: m for n, m in self.metrics.items() if _batch_conditions(m)}
        self._distribution = {n: m for n, m in self.metrics.items()
                              if n not in self._conditioned and _is_distribution_metric(m)}
        self._paired = {n: m for n, m in self.metrics.items() if n not in self._distribution and n not in self._conditioned}

    def _build_deferred(self) -> None:
        """Instantiate ``deferred_metrics`` (once), then file them with the others."""
        for name, spec in list(self.deferred_metrics.items()):
            metric = _instantiate(spec, f"deferred_metrics.{name}")
            if name in self.reference_statistics and not hasattr(metric, "load_real_statistics"):
                raise ValueError(f"EvaluationCallback: reference_statistics names {name!r}, which has no load_real_statistics")
            self.metrics[name] = metric
            del self.deferred_metrics[name]
        self._split_metrics()

    # ------------------------------------------------------------------ set-up
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        remember_run_dir(trainer)  # the one broadcast, on every rank; later reads are local
        evaluates = {"fit": "validation", "validate": "validation", "test": "test"}.get(stage)
        if self.deferred_metrics and evaluates in self.stages:
            self._build_deferred()
        if self.per_batch_generation and not hasattr(pl_module, "sample_for_batch"):
            raise TypeError(
                f"EvaluationCallback: per_batch_generation needs `{type(pl_module).__name__}.sample_for_batch"
                f"(batch, ...)`; the module only offers `sample`."
            )
        if (self._paired or self._conditioned) and not hasattr(pl_module, "sample_for_batch"):
            raise TypeError(
                f"EvaluationCallback: paired / conditioned metrics {sorted({**self._paired, **self._conditioned})} need `{type(pl_module).__name__}."
                f"sample_for_batch(batch, ...)` (one output per real item); the module only offers `sample`. "
                f"Use distribution metrics (FID/KID/FVD) or add sample_for_batch."
            )
        if not self.per_batch_generation and not hasattr(pl_module, "sample"):
            raise TypeError(f"EvaluationCallback: {type(pl_module).__name__} has no `sample(num_samples, ...)` method")

    def _enabled(self, trainer: L.Trainer, stage: str) -> bool:
        if stage not in self.stages or trainer.sanity_checking:
            return False
        if stage == "validation" and (trainer.current_epoch + 1) % self.every_n_epochs != 0:
            return False
        return True

    def _start(self, pl_module: L.LightningModule) -> None:
        for metric in self.metrics.values():
            metric.to(pl_module.device)
            metric.reset()
        for name, path in self.reference_statistics.items():
            if not os.path.isfile(path):
                raise FileNotFoundError(f"EvaluationCallback: reference_statistics[{name!r}]={path!r} does not exist")
            self.metrics[name].load_real_statistics(path)
        self._real_seen, self._paired_count, self._labels = 0, 0, []
        self._seen_hw = None
        self._active = True

    def _note_size(self, images: Tensor) -> None:
        """Remember the pixel size of the first images scored (the row's ``resolution``)."""
        if self._seen_hw is None and isinstance(images, Tensor) and images.dim() >= 3:
            self._seen_hw = (int(images.shape[-2]), int(images.shape[-1]))

    def _generator(self, pl_module: L.LightningModule, rank: int) -> torch.Generator:
        device = pl_module.device
        generator = torch.Generator(device=device) if device.type != "mps" else torch.Generator()
        return generator.manual_seed(self.seed + 1_000_003 * rank)

    # ------------------------------------------------------------------ real data
    def _on_batch(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any) -> None:
        if not self._active or not isinstance(batch, Mapping) or self.real_key not in batch:
            return
        real = batch[self.real_key]
        self._note_size(real)
        limit = self.max_real_samples
        if limit is not None:
            share = -(-limit // max(trainer.world_size, 1))
            real = real[: max(share - self._real_seen, 0)]
        if real.shape[0] > 0 and self._distribution:
            for metric in self._distribution.values():
                if getattr(metric, "reset_real_features", True) is False and float(getattr(metric, "real_count", 0)) > 0:
                    continue  # a fixed reference (precomputed statistics) is already loaded
                metric.update(real.to(pl_module.device), real=True)
            self._real_seen += real.shape[0]
        if self.use_labels and self.label_key in batch and isinstance(batch[self.label_key], Tensor):
            self._labels.append(batch[self.label_key].detach().to(pl_module.device))
        if self._paired or self._conditioned or self.per_batch_generation:
            self._update_from_batch(trainer, pl_module, batch)

    def _update_from_batch(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Mapping[str, Any]) -> None:
        """Generate one output per real item; feed paired metrics (and distribution ones if asked)."""
        share = -(-self.num_samples // max(trainer.world_size, 1))
        room = share - self._paired_count
        if room <= 0:
            return
        subset = {k: (v[:room] if isinstance(v, (Tensor, list, tuple)) else v) for k, v in batch.items()}  # per-item lists too (captions)
        generator = self._generator(pl_module, trainer.global_rank * 7919 + self._paired_count)
        # Only the settings that were given: a module whose sampling has no guidance knob need not accept one.
        options = {k: v for k, v in (("num_steps", self.num_steps), ("sampler", self.sampler),
                                     ("guidance_scale", self.guidance_scale)) if v is not None}
        preds = pl_module.sample_for_batch(subset, generator=generator, **options)  # type: ignore[operator]
        batch_metrics = {n: m for n, m in self.metrics.items() if getattr(m, "takes_batch", False)}
        for metric in batch_metrics.values():
            metric.update(preds, subset)
        if len(batch_metrics) == len(self.metrics):
            self._paired_count += len(preds)
            return
        target = subset[self.real_key].to(preds.device)
        if self.per_batch_generation:
            for metric in self._distribution.values():
                metric.update(preds, real=False)
        count = preds.shape[0]
        for name, metric in self._conditioned.items():  # before flatten_frames: a video metric sees videos
            conditions = _batch_conditions(metric)
            missing = [key for key in conditions.values() if key not in subset]
            if missing:
                raise KeyError(f"EvaluationCallback: metric {name!r} needs batch key(s) {missing} (batch keys: {sorted(subset)})")
            metric.update(preds, **{arg: subset[key] for arg, key in conditions.items()})
        if self.flatten_frames and preds.dim() == 5:
            preds, target = preds.flatten(0, 1), target.flatten(0, 1)
        mask = None
        if self.mask_key is not None:
            if self.mask_key not in subset:
                raise KeyError(f"EvaluationCallback: mask_key={self.mask_key!r} is not in the batch (keys: {sorted(subset)})")
            mask = subset[self.mask_key].to(preds.device)
        for metric in self._paired.values():
            if getattr(metric, "takes_batch", False):
                continue
            if mask is not None and len(inspect.signature(metric.update).parameters) >= 3:
                metric.update(preds, target, mask)
            else:
                metric.update(preds, target)
        self._paired_count += count

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._enabled(trainer, "validation"):
            self._start(pl_module)

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._enabled(trainer, "test"):
            self._start(pl_module)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # type: ignore[no-untyped-def]
        self._on_batch(trainer, pl_module, batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # type: ignore[no-untyped-def]
        self._on_batch(trainer, pl_module, batch)

    # ------------------------------------------------------------------ generated data
    def _labels_for(self, start: int, count: int) -> Optional[Tensor]:
        if not self._labels:
            return None
        pool = torch.cat(self._labels)
        index = torch.arange(start, start + count, device=pool.device) % pool.shape[0]
        return pool[index]

    def _generate(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        world, rank = max(trainer.world_size, 1), trainer.global_rank
        share = self.num_samples // world + (1 if rank < self.num_samples % world else 0)
        generator = self._generator(pl_module, rank)
        saved: list[np.ndarray] = []
        progress = None
        if self.progress_bar and rank == 0:
            from tqdm.auto import tqdm

            progress = tqdm(total=share, desc=f"sampling for {stage} metrics", leave=False, unit="sample")
        done = 0
        was_training = pl_module.training
        pl_module.eval()
        try:
            while done < share:
                count = min(self.batch_size, share - done)
                kwargs: dict[str, Any] = {"generator": generator}
                if self.num_steps is not None:
                    kwargs["num_steps"] = self.num_steps
                if self.sampler is not None:
                    kwargs["sampler"] = self.sampler
                if self.guidance_scale is not None:
                    kwargs["guidance_scale"] = self.guidance_scale
                conditional = getattr(pl_module, "num_classes", 0) is not None  # DiffusionModule: None = unconditional
                labels = self._labels_for(rank * share + done, count) if self.use_labels and conditional else None
                if labels is not None:
                    kwargs["labels"] = labels
                with torch.no_grad():
                    samples = pl_module.sample(count, **kwargs)
                self._note_size(samples)
                for metric in self._distribution.values():
                    metric.update(samples, real=False)
                if self.save_samples is not None:
                    saved.append(self._to_uint8(samples))
                done += count
                if progress is not None:
                    progress.update(count)
        finally:
            if progress is not None:
                progress.close()
            pl_module.train(was_training)
        if saved:
            self._write_samples(trainer, stage, np.concatenate(saved), rank)

    @staticmethod
    def _to_uint8(samples: Tensor) -> np.ndarray:
        x = ((samples.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
        return x.movedim(-3, -1).numpy()  # channels last (also for videos [B, T, H, W, C])

    def _write_samples(self, trainer: L.Trainer, stage: str, arrays: np.ndarray, rank: int) -> None:
        folder = self.samples_dir or os.path.join(run_dir(trainer), "samples")
        folder = os.path.join(folder, f"{stage}_epoch{trainer.current_epoch:04d}")
        os.makedirs(folder, exist_ok=True)
        suffix = f"_rank{rank}" if trainer.world_size > 1 else ""
        if self.save_samples == "npz":
            np.savez(os.path.join(folder, f"samples{suffix}.npz"), arr_0=arrays)
            return
        from PIL import Image

        for i, image in enumerate(arrays):
            if image.ndim != 3:
                continue  # videos are saved as .npz only
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
                os.path.join(folder, f"sample{suffix}_{i:05d}.png"))

    # ------------------------------------------------------------------ results
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._active:
            self._finish(trainer, pl_module, "validation")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._active:
            self._finish(trainer, pl_module, "test")

    def _finish(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._active = False
        if self._distribution and not self.per_batch_generation:
            self._generate(trainer, pl_module, stage)
        results: dict[str, float] = {}
        origin: dict[str, str] = {}
        for name, metric in self.metrics.items():
            try:
                values = _flatten(name, metric.compute())
            except (RuntimeError, ValueError) as err:  # torch.linalg errors are RuntimeErrors
                if stage == "test":  # the protocol evaluation reports its failure
                    raise
                # An in-training curve must never crash the run it monitors (a diverging model's
                # samples may be NaN; the NaN guard decides whether training stops): skip it once.
                log.warning("EvaluationCallback: %s skipped at this %s evaluation (%s)", name, stage,
                            str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)
                metric.reset()
                continue
            values = {self.metric_names.get(k, k): v for k, v in values.items()}
            results.update(values)
            origin.update({key: name for key in values})
            metric.reset()
        for key, value in results.items():
            pl_module.log(f"{self.log_prefix}/{key}", value, on_step=False, on_epoch=True, sync_dist=False,
                          rank_zero_only=True)
        if trainer.is_global_zero:
            self._log_hparam_metrics(trainer, pl_module, results)
        self.last_results = results
        self.last_rows = self._rows(trainer, pl_module, stage, results, origin)
        if self.write_results and trainer.is_global_zero:
            path = os.path.join(self.results_dir, self.results_file or f"{self.paper or self.last_rows[0].method}.jsonl")
            append_rows(path, self.last_rows)
            log.info("wrote %d results rows to %s", len(self.last_rows), path)

    def _log_hparam_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule, results: dict[str, float]) -> None:
        """Fill TensorBoard's HParams tab: the run's hyper-parameters next to its evaluation metrics."""
        from lightning.pytorch.loggers import TensorBoardLogger

        metrics = {f"{self.log_prefix}/{k}": float(v) for k, v in results.items()}
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                try:
                    logger.log_hyperparams(dict(pl_module.hparams), metrics=metrics)
                except Exception as err:  # never lose the evaluation over a display feature
                    log.warning("EvaluationCallback: could not fill the HParams tab (%s)", err)

    def _infer_weights(self, pl_module: L.LightningModule) -> str:
        return self.weights or infer_weights_flag(pl_module, self.metrics.values())

    def _infer_data(self, trainer: L.Trainer) -> str:
        return self.data or infer_data_flag(trainer)

    def _config_name(self, trainer: L.Trainer) -> Optional[str]:
        return self.config if self.config is not None else run_config_path(trainer)

    def _count(self, trainer: L.Trainer, local: int) -> int:
        total = trainer.strategy.reduce(torch.tensor(float(local)), reduce_op="sum")
        return int(total.item()) if isinstance(total, Tensor) else int(total)

    def _rows(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, results: dict[str, float],
              origin: dict[str, str]) -> list[ResultRow]:
        steps = self.num_steps if self.num_steps is not None else getattr(pl_module, "num_sampling_steps", None)
        nfe = self.nfe
        if nfe is None and hasattr(pl_module, "nfe"):
            args = (steps, self.sampler, self.guidance_scale)
            try:  # modules without a sampler / guidance choice take fewer arguments: nfe(num_steps)
                accepted = len(inspect.signature(pl_module.nfe).parameters)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                accepted = len(args)
            nfe = int(pl_module.nfe(*args[:accepted]))  # type: ignore[operator]
        if nfe is None and steps is not None:
            nfe = int(steps)
        guidance = self.guidance_scale if self.guidance_scale is not None else getattr(pl_module, "guidance_scale", None)
        resolution = self.resolution or (f"{self._seen_hw[0]}x{self._seen_hw[1]}" if self._seen_hw else None)
        data = self._infer_data(trainer)
        dataset, dataset_extra = dataset_field(trainer, self.dataset, data)
        provenance = run_provenance(trainer)
        common = dict(
            paper=self.paper,
            method=self.method or getattr(pl_module, "results_method", None) or _module_method(pl_module),
            dataset=dataset,
            split=self.split or ("val" if stage == "validation" else "test"),
            resolution=resolution,
            nfe=nfe,
            guidance=None if guidance is None else float(guidance),
            config=self._config_name(trainer),
            commit=git_commit(),
            date=utc_now(),
            weights=self._infer_weights(pl_module),
            data=data,
        )
        paired_total = self._count(trainer, self._paired_count) if (self._paired or self._conditioned) else 0
        module_extra = dict(pl_module.results_row_extra()) if hasattr(pl_module, "results_row_extra") else {}
        real_total = self._count(trainer, self._real_seen)
        table = self.table or getattr(pl_module, "results_table", None)
        rows = []
        for key, value in results.items():
            proto = getattr(self.metrics[origin[key]], "protocol", None)
            paired = origin[key] in self._paired or origin[key] in self._conditioned
            rows.append(ResultRow(
                metric=key,
                value=float(value),
                num_samples=paired_total if paired else self.num_samples,
                evaluator=describe_evaluator(self.metrics[origin[key]]),
                extra={
                    "stage": stage,
                    **module_extra,
                    **provenance,
                    **dataset_extra,
                    **({"table": table} if table else {}),
                    "num_steps": steps,
                    "sampler": self.sampler or getattr(getattr(pl_module, "sampler", None), "name", None),
                    "num_real": real_total,
                    "protocol": proto.to_dict() if proto is not None else None,
                    **({"reference_statistics": self.reference_statistics[origin[key]]}
                       if origin[key] in self.reference_statistics else {}),
                },
                **common,
            ))
        return rows


__all__ = ["EvaluationCallback"]

"""Table 4.1 protocol for Fit-Check videos: generate each test clip, score it, write results rows.

Thesis 000, Ch. 4, §4.5 (seed lines ~840-880; digest §3.6): LPIPS, SSIM, PSNR, FID, FID-VID and FVD
between generated and real videos, computed **without** face refinement; the references are a
random front and back frame of the real video, the poses come from the real video, the
background is the inpainted one (exactly what :class:`~datamodules.fitcheck_videos.FitCheckVideoDataModule`
yields on its test split). The generated reference frames are dropped before scoring.

The suite's ``callbacks.evaluation.EvaluationCallback`` draws distribution samples through an
unconditional ``module.sample(n)``, which has no meaning for this conditional model, so this
callback does the same job per test batch (generate with the paper's sampler, feed the metrics)
and writes rows with the same schema (``metrics.results_rows.ResultRow``) to
``<results_dir>/fitcheck.jsonl``. Metric kinds, recognised like ``EvaluationCallback`` does:

* paired ``update(preds, target)`` metrics (SSIM, PSNR, LPIPS) get every frame, ``[B*T, 3, H, W]``;
* distribution ``update(x, real)`` metrics get the videos ``[B, T, 3, H, W]`` (``FrameFID`` for
  FID); a video network's metric (``num_frames`` attribute: FVD with I3D, FID-VID with the 3D
  ResNet-50 of :mod:`metrics.resnet3d`) gets the videos cut into consecutive clips of its length.

Whole videos: the data module's ``test`` split yields each held-out video whole
(``test_whole_videos``), and ``module.generate`` covers it with progressive latent fusion (windows
of ``T + 2`` frames, overlap 4, §4.4), so the metrics see whole generated videos as in the paper,
not 8-frame training windows (which would be shorter than the 16-frame clips of I3D).

[GAP] the thesis gives no clip length / stride for the video metrics nor the LPIPS backbone;
:func:`table_4_1_metrics` uses every generated frame, consecutive 16-frame clips and AlexNet LPIPS.
"""
from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any, Mapping, Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor
from torchmetrics import Metric

from metrics.video import FrechetVideoDistance

from metrics.results_rows import (
    ResultRow,
    append_rows,
    dataset_field,
    describe_evaluator,
    git_commit,
    infer_data_flag,
    run_config_path,
    run_provenance,
    utc_now,
)

log = logging.getLogger(__name__)


#: ``data.init_args.test_set`` -> the dataset name of ``benchmarks/paper_numbers.yaml`` (Tables 4.1-4.4)
TEST_SET_NAMES = {"selfie": "self-captured selfie dataset", "ubc_fashion": "UBC Fashion", "tiktok": "TikTok",
                  None: "fit-check test set (own)"}


def _paper_dataset(datamodule: Any) -> Optional[str]:
    """The paper's dataset name for the configured ``test_set`` (None: embedded smoke data)."""
    test_set = getattr(datamodule, "test_set", None)
    if test_set is None and getattr(datamodule, "root", None) is None:
        return None
    return TEST_SET_NAMES.get(test_set, type(datamodule).__name__)


def _is_distribution(metric: Metric) -> bool:
    return "real" in inspect.signature(metric.update).parameters


class FIDVID(FrechetVideoDistance):
    """Table 4.1's FID-VID: Fréchet distance of 3D ResNet-50 Kinetics pool features on 16-frame clips at
    112 px (DisCo / MagicAnimate's protocol), from ``resnet-50-kinetics.pth`` (``None``: a named
    random-weight stand-in), or of an injected ``feature_extractor``. Usable in a config's metrics."""

    def __init__(self, weights_path: Optional[str] = None, num_frames: int = 16, resolution: Optional[int] = 112,
                 feature_extractor: Optional[torch.nn.Module] = None) -> None:
        from metrics.resnet3d import ResNet3DFeatures

        extractor = feature_extractor or ResNet3DFeatures(weights_path, num_frames=num_frames, resolution=resolution)
        super().__init__(extractor, num_frames=int(getattr(extractor, "num_frames", num_frames)), name="fid_vid")


def table_4_1_metrics(
    inception_weights: Optional[str] = None,
    i3d_weights: Optional[str] = None,
    fid_vid_weights: Optional[str] = None,
    lpips_backbone: Optional[str] = None,
    lpips_heads: Optional[str] = None,
    fid_vid_extractor: Optional[torch.nn.Module] = None,
    video_resolution: Optional[int] = -1,
    fid_extractor: Any = None,
) -> dict[str, Metric]:
    """The six metrics of Table 4.1, each with the feature network its protocol names.

    * FID: frame-level Fréchet distance of TF-Inception pool features (``inception_weights``, the
      pt_inception-2015-12-05 file; ``None``: the built-in ``"inception"`` loader).
    * FID-VID: Fréchet distance of 3D ResNet-50 Kinetics features (DisCo / MagicAnimate's protocol
      of Balaji et al. 2019; :class:`metrics.resnet3d.ResNet3DFeatures` from ``fid_vid_weights``,
      or an injected ``fid_vid_extractor``), 16-frame clips at 112 px.
    * FVD: Fréchet distance of I3D Kinetics-400 logits (``i3d_weights``), 16-frame clips at 224 px.
    * SSIM, PSNR, LPIPS (AlexNet; ``lpips_backbone`` / ``lpips_heads``) per frame.

    A ``None`` weights path for I3D / the 3D ResNet / LPIPS builds the network with random weights:
    a stand-in that the metric's protocol names (``[random]`` / ``RANDOM-WEIGHT STAND-IN``), so
    the row's ``evaluator`` says it. ``video_resolution=None`` feeds both video networks the
    native frame size (CPU tests only); ``fid_extractor`` overrides the FID network (e.g.
    ``"inception-random"`` in tests).
    """
    from metrics import (
        FrameFID,
        FrechetVideoDistance,
        LearnedPerceptualImagePatchSimilarity,
        PeakSignalNoiseRatio,
        StructuralSimilarityIndexMeasure,
    )
    from metrics.i3d import I3DFeatures
    from metrics.resnet3d import ResNet3DFeatures

    if fid_extractor is None:
        fid_extractor = "inception"
        if inception_weights is not None:
            from metrics import FIDInceptionV3

            fid_extractor = FIDInceptionV3(inception_weights)
    i3d_resolution = 224 if video_resolution == -1 else video_resolution
    resnet_resolution = 112 if video_resolution == -1 else video_resolution
    if fid_vid_extractor is None:
        fid_vid_extractor = ResNet3DFeatures(fid_vid_weights, num_frames=16, resolution=resnet_resolution)
    return {
        "LPIPS": LearnedPerceptualImagePatchSimilarity("alex", lpips_backbone, lpips_heads),
        "SSIM": StructuralSimilarityIndexMeasure(),
        "PSNR": PeakSignalNoiseRatio(),
        "FID": FrameFID(fid_extractor),
        "FID-VID": FIDVID(feature_extractor=fid_vid_extractor),
        "FVD": FrechetVideoDistance(I3DFeatures(i3d_weights, num_frames=16, resolution=i3d_resolution)),
    }


def video_clips(video: Tensor, clip_frames: int, name: str = "video") -> Tensor:
    """``[B, T, ...]`` -> ``[B * (T // n), n, ...]``: consecutive, non-overlapping ``n``-frame clips.

    [GAP] the thesis gives no clip rule for FID-VID / FVD; whole generated videos are cut into
    consecutive clips of the feature network's length and a trailing remainder is dropped.
    """
    count = video.shape[1] // clip_frames
    if count == 0:
        raise ValueError(
            f"{name}: a {video.shape[1]}-frame test video is shorter than the {clip_frames}-frame clips of the video "
            f"metric; use longer test videos (data.init_args.embedded_length / test_max_frames) or fewer clip frames"
        )
    used = video[:, : count * clip_frames]
    return used.reshape(video.shape[0] * count, clip_frames, *video.shape[2:])


class FitCheckEvaluation(Callback):
    """Generate every test clip with the module's sampler and score it (Table 4.1 protocol).

    Args:
        metrics: name -> metric (names become the rows' ``metric`` field: use the paper's
            ``LPIPS``, ``SSIM``, ``PSNR``, ``FID``, ``FID-VID``, ``FVD``).
        method / dataset / split: row fields (``dataset`` as ``benchmarks/paper_numbers.yaml`` names it;
            rows on embedded data name the stand-in and keep it in ``stand_in_for``).
        table: the ``paper_numbers.yaml`` table of the rows (``Table 4.1``).
        results_dir: folder of ``fitcheck.jsonl``.
        weights / data: row flags (``random``/``pretrained``, ``embedded``/``real``); ``None`` infers.
        max_batches: stop generating after this many test batches (``None``: all).
        seed: generation seed (batch index added).
    """

    def __init__(
        self,
        metrics: Mapping[str, Metric],
        method: str = "Ours",
        dataset: Optional[str] = None,
        split: str = "test",
        table: Optional[str] = "Table 4.1",
        results_dir: str = "results",
        weights: Optional[str] = None,
        data: Optional[str] = None,
        max_batches: Optional[int] = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.metrics = dict(metrics)
        self.method, self.dataset, self.split, self.table = method, dataset, split, table
        self.results_dir, self.weights, self.data = results_dir, weights, data
        self.max_batches, self.seed = max_batches, int(seed)
        self.rows_written: list[dict[str, Any]] = []
        self._count = 0
        self._frames = 0

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for metric in self.metrics.values():
            metric.to(pl_module.device)
            metric.reset()
        self._count = 0
        self._frames = 0

    @torch.no_grad()
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # type: ignore[no-untyped-def]
        if self.max_batches is not None and batch_idx >= self.max_batches:
            return
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed + batch_idx)
        generated = pl_module.generate(batch, generator=generator).float()
        real = batch["video"].float().to(generated.device)
        if generated.shape != real.shape:
            raise RuntimeError(f"generated video {tuple(generated.shape)} does not match the real one {tuple(real.shape)}")
        for name, metric in self.metrics.items():
            if _is_distribution(metric):
                clip_frames = getattr(metric, "num_frames", None)
                if clip_frames:  # a video network: whole videos -> its fixed-length clips
                    metric.update(video_clips(real, int(clip_frames), name), real=True)
                    metric.update(video_clips(generated, int(clip_frames), name), real=False)
                else:
                    metric.update(real, real=True)
                    metric.update(generated, real=False)
            else:
                metric.update(generated.flatten(0, 1), real.flatten(0, 1))
        self._count += real.shape[0]
        self._frames += real.shape[0] * real.shape[1]

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._count == 0:
            return
        rows = []
        datamodule = getattr(trainer, "datamodule", None)
        height, width = (getattr(datamodule, "height", None), getattr(datamodule, "width", None))
        weights = self.weights or ("pretrained" if pl_module.hparams.get("pretrained_svd") else "random")
        data = self.data or infer_data_flag(trainer)
        dataset, dataset_extra = dataset_field(trainer, self.dataset or _paper_dataset(datamodule), data)
        provenance = run_provenance(trainer)
        for name, metric in self.metrics.items():
            try:
                value = float(metric.compute())
            except Exception as error:  # noqa: BLE001 - e.g. too few samples for a covariance
                log.warning("fitcheck evaluation: %s could not be computed: %s", name, error)
                continue
            pl_module.log(f"test/{name}", value, sync_dist=False)
            rows.append(ResultRow(
                paper="fitcheck",
                method=self.method,
                dataset=dataset,
                split=self.split,
                resolution=f"{height}x{width}" if height else None,
                num_samples=self._count,
                nfe=int(pl_module.nfe()),
                guidance=float(pl_module.fitcheck_guidance) if not isinstance(pl_module.fitcheck_guidance, tuple)
                else float(max(pl_module.fitcheck_guidance)),
                metric=name,
                value=value,
                evaluator=describe_evaluator(metric),
                config=run_config_path(trainer),
                commit=git_commit(),
                date=utc_now(),
                weights=weights,
                data=data,
                extra={"sampler": "edm_euler", "num_steps": pl_module.num_sampling_steps, "face_refinement": False,
                       "whole_videos": bool(getattr(datamodule, "test_whole_videos", False)),
                       "frames": self._frames, "window": pl_module.window, "overlap": pl_module.overlap,
                       "stand_in": bool(getattr(getattr(metric, "protocol", None), "random_weights", False)),
                       **provenance, **dataset_extra, **({"table": self.table} if self.table else {})},
            ))
        if trainer.is_global_zero and rows:
            path = Path(self.results_dir) / "fitcheck.jsonl"
            append_rows(str(path), rows)
            self.rows_written = [r.to_json() for r in rows]
            log.info("fitcheck evaluation: %d rows -> %s", len(rows), path)

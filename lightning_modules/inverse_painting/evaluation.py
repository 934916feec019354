"""Inverse Painting evaluation for ``callbacks.evaluation.EvaluationCallback`` (thesis 000, Ch. 6, §6.8-§6.9).

Each module generates with ``sample_for_batch`` (one output per real item, ``per_batch_generation``);
these metrics read those outputs together with the real batch (``takes_batch = True``:
``update(outputs, batch)``), because what they compare is more than one image per item:

* :class:`PaintingProcessMetrics` (Table 6.1, the chained model): whole generated processes
  (:class:`~.rollout.Rollout`, one per validation painting) against the real videos
  ``batch["frames"] [B, K, 3, H, W]`` / ``batch["times"] [B, K]`` (seconds):
  LPIPS of each real frame against the generated frame nearest in time; max-IoU of consecutive
  difference masks ``D(·, ·, 0.2)``; DDC (DTW of (minutes, LPIPS-to-target) curves); DTS (minutes);
  optionally FID (generated vs GT frames) and FVD (each process resampled to ``fvd_frames``);
  the values are per-painting and averaged over the validation set (§6.8).
* :class:`InstructionAccuracy` (§6.9, "a single canvas update with GT current image"): the text
  generator's answer for each GT pair against the GT instruction, in percent ([choice]
  case-insensitive exact match after stripping spaces and a final period).
* :class:`InstructionSequenceAgreement` (§6.9, whole sequences): the instructions of each generated
  process against the painting's GT instruction sequence: ``InGT`` = percent of generated
  instructions that appear among the GT ones (order ignored; 91%), ``LCS`` = percent of generated
  instructions inside the longest common subsequence with the GT sequence (78%). [choice] Per
  painting, then averaged; sequences as generated (one instruction per keyframe, repeats kept), the
  white canvas' "none" left out of the GT.
* :class:`StepMaskIoU` (§6.9): the mask generator's ``M̂_t`` for each GT pair against the GT step mask
  ``M_t`` (``batch["mask"]``, or ``D(I_t, I_{t-1}, 0.2)`` on real data), IoU per pair, averaged
  ([choice] two empty masks count as IoU 1).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
from torch import Tensor
from torchmetrics import MeanMetric, Metric

from metrics.painting import DistanceCurveDifference, TimeSpentDifference
from metrics.perceptual import LPIPSNetwork
from metrics.segmentation import MaxIoU

from .difference_mask import DifferenceMask, MinSizeLPIPS


def uniform_frames(video: Tensor, count: int) -> Tensor:
    """``count`` frames of ``video [K, ...]`` evenly spaced over its index range (repeats when ``K < count``).

    [choice] FVD needs fixed-length clips; the thesis does not say how a whole process becomes one,
    so each real and generated process is resampled to ``fvd_frames`` (16, I3D's clip) frames.
    """
    index = torch.linspace(0, video.shape[0] - 1, count, device=video.device).round().long()
    return video.index_select(0, index)


class PaintingProcessMetrics(Metric):
    """Table 6.1's LPIPS, max-IoU, DDC, DTS (+ FID / FVD) of generated painting processes.

    Args:
        lpips_backbone: AlexNet weights of the LPIPS network (``null``: random backbone; rows say
            ``weights: random``).
        difference_mask: ``D`` for the IoU (LPIPS, α 0.2); ``null`` builds it on ``lpips_backbone``.
        fid: optional ``metrics.fid.FrechetInceptionDistance``; fvd: optional
            ``metrics.video.FrechetVideoDistance``; fvd_frames: frames per process for FVD.
    """

    takes_batch = True
    full_state_update = False
    higher_is_better = None

    def __init__(self, lpips_backbone: Optional[str] = None, difference_mask: Optional[DifferenceMask] = None,
                 fid: Optional[Metric] = None, fvd: Optional[Metric] = None, fvd_frames: int = 16, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lpips = MinSizeLPIPS(LPIPSNetwork("alex", lpips_backbone)).requires_grad_(False)
        self.difference_mask = (difference_mask or DifferenceMask(backbone_weights=lpips_backbone)).requires_grad_(False)
        self.lpips_mean, self.max_iou = MeanMetric(), MaxIoU()
        self.ddc = DistanceCurveDifference(lpips_network=self.lpips)  # type: ignore[arg-type]
        self.dts = TimeSpentDifference()
        self.fid, self.fvd, self.fvd_frames = fid, fvd, int(fvd_frames)

    @property
    def protocol(self):  # noqa: ANN201 - the LPIPS network's (random_weights when no backbone file)
        return self.ddc.protocol.with_extra(metric="painting process (LPIPS nearest in time, max-IoU of D(0.2), DDC, DTS)")

    def _children(self) -> list[Metric]:
        return [m for m in (self.lpips_mean, self.max_iou, self.ddc, self.dts, self.fid, self.fvd) if m is not None]

    @torch.no_grad()
    def score_painting(self, frames: Tensor, times: Sequence[float], real_frames: Tensor, real_times: Tensor) -> dict[str, float]:
        """Add one painting (generated ``frames [K, 3, H, W]`` at ``times`` s vs the real video); its values."""
        gen = frames.to(real_frames.device).float()
        gen_times = torch.as_tensor(list(times), dtype=torch.float32, device=real_frames.device)
        real_times = real_times.to(real_frames.device).float()
        nearest = (real_times[:, None] - gen_times[None, :]).abs().argmin(1)
        lpips_value = self.lpips(real_frames, gen[nearest]).mean()
        self.lpips_mean.update(lpips_value)
        gen_masks = self.difference_mask(gen[1:], gen[:-1])[:, 0] if gen.shape[0] > 1 else torch.zeros_like(gen[:1, 0])
        real_masks = self.difference_mask(real_frames[1:], real_frames[:-1])[:, 0]
        iou = self.max_iou.painting_score(gen_masks, real_masks)
        self.max_iou.update(gen_masks, real_masks)
        self.ddc.update(gen, real_frames, real_frames[-1], generated_times=gen_times.cpu(), real_times=real_times.cpu())
        self.dts.update(gen_times.cpu(), real_times.cpu())
        if self.fid is not None:
            self.fid.update(real_frames, real=True)
            self.fid.update(gen, real=False)
        if self.fvd is not None:
            self.fvd.update(uniform_frames(gen, self.fvd_frames)[None], real=False)
            self.fvd.update(uniform_frames(real_frames, self.fvd_frames)[None], real=True)
        return {"lpips": float(lpips_value), "max_iou": float(iou)}

    def update(self, processes: Sequence[Any], batch: Mapping[str, Any]) -> None:  # type: ignore[override]
        """``processes``: one :class:`~.rollout.Rollout` (``frames``, ``times``) per painting of ``batch``."""
        for i, process in enumerate(processes):
            self.score_painting(process.frames, process.times, batch["frames"][i].float(), batch["times"][i])

    def compute(self) -> dict[str, Tensor]:  # type: ignore[override]
        values = {"LPIPS": self.lpips_mean.compute(), "max-IoU": self.max_iou.compute(),
                  "DDC": self.ddc.compute(), "DTS": self.dts.compute()}
        if self.fid is not None:
            values["FID"] = self.fid.compute()
        if self.fvd is not None:
            values["FVD"] = self.fvd.compute()
        return {k: torch.as_tensor(v, dtype=torch.float64) for k, v in values.items()}

    def reset(self) -> None:
        super().reset()
        for child in self._children():
            child.reset()


def normalise_instruction(text: str) -> str:
    return " ".join(str(text).strip().rstrip(".").lower().split())


class InstructionAccuracy(Metric):
    """Percent of generated instructions equal to the GT instruction (``batch["text"]``) (§6.9: 72%)."""

    takes_batch = True
    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("correct", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, answers: Sequence[str], batch: Mapping[str, Any]) -> None:  # type: ignore[override]
        truth = list(batch["text"])[: len(answers)]
        self.correct += sum(normalise_instruction(a) == normalise_instruction(t) for a, t in zip(answers, truth))
        self.total += len(truth)

    def compute(self) -> Tensor:  # type: ignore[override]
        return 100.0 * self.correct / self.total.clamp_min(1)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two sequences (dynamic programming)."""
    previous = [0] * (len(b) + 1)
    for x in a:
        row = [0]
        for j, y in enumerate(b):
            row.append(previous[j] + 1 if x == y else max(previous[j + 1], row[j]))
        previous = row
    return previous[-1]


class InstructionSequenceAgreement(Metric):
    """``InGT`` and ``LCS`` (percent) of generated instruction sequences vs the GT ones (§6.9: 91% / 78%)."""

    takes_batch = True
    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for state in ("in_gt", "lcs", "count"):
            self.add_state(state, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, processes: Sequence[Any], batch: Mapping[str, Any]) -> None:  # type: ignore[override]
        for i, process in enumerate(processes):
            generated = [normalise_instruction(t) for t in process.texts]
            truth = [normalise_instruction(t) for t in list(batch["text"][i])[1:]]
            if not generated:
                continue
            self.in_gt += sum(t in set(truth) for t in generated) / len(generated)
            self.lcs += lcs_length(generated, truth) / len(generated)
            self.count += 1

    def compute(self) -> dict[str, Tensor]:  # type: ignore[override]
        n = self.count.clamp_min(1)
        return {"InGT": 100.0 * self.in_gt / n, "LCS": 100.0 * self.lcs / n}


class StepMaskIoU(Metric):
    """Mean per-pair IoU of predicted step masks ``[B, 1, H, W]`` against ``M_t`` (§6.9: 0.70 / 0.64 / 0.58).

    Args:
        difference_mask: ``D`` for real batches without ``mask`` (LPIPS, α 0.2, AlexNet weights).
    """

    takes_batch = True
    full_state_update = False
    higher_is_better = True

    def __init__(self, difference_mask: Optional[DifferenceMask] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.difference_mask = difference_mask.requires_grad_(False) if difference_mask is not None else None
        self.add_state("iou_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, predicted: Tensor, batch: Mapping[str, Any]) -> None:  # type: ignore[override]
        truth = batch.get("mask")
        if truth is None:
            if self.difference_mask is None:
                raise ValueError("StepMaskIoU: the batch has no 'mask' (real data); set its difference_mask "
                                 "(D with LPIPS, alpha 0.2, AlexNet weights)")
            truth = self.difference_mask(batch["next"], batch["canvas"])
        pred = (predicted > 0.5).flatten(1).double()
        gt = (truth.to(predicted.device) > 0.5).flatten(1).double()
        inter, union = (pred * gt).sum(1), ((pred + gt) > 0).double().sum(1)
        iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
        self.iou_sum += iou.sum()
        self.count += iou.numel()

    def compute(self) -> Tensor:  # type: ignore[override]
        return self.iou_sum / self.count.clamp_min(1)


__all__ = ["InstructionAccuracy", "InstructionSequenceAgreement", "lcs_length", "PaintingProcessMetrics", "StepMaskIoU", "normalise_instruction", "uniform_frames"]

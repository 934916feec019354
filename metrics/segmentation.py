"""Mask overlap metrics: binary IoU, max-IoU (Inverse Painting), mean IoU over classes."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor
from torchmetrics import Metric

from metrics.protocol import MetricProtocol


def _binary(mask: Tensor, name: str, threshold: float) -> Tensor:
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, received {type(mask).__name__}")
    if mask.dtype == torch.bool:
        return mask
    if mask.is_floating_point():
        return mask > threshold
    return mask != 0


def iou_matrix(a: Tensor, b: Tensor, empty_value: float = 1.0) -> Tensor:
    """Pairwise IoU ``[N, M]`` between binary masks ``a [N, H, W]`` and ``b [M, H, W]``.

    Two empty masks have IoU ``empty_value`` (1: they agree perfectly).
    """
    fa, fb = a.flatten(1).double(), b.flatten(1).double()
    inter = fa @ fb.T
    union = fa.sum(1, keepdim=True) + fb.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.full_like(inter, empty_value))


class BinaryIoU(Metric):
    """Intersection over union of binary masks.

    ``update(preds, target)`` with masks ``[B, H, W]`` or ``[B, 1, H, W]``
    (bool, integer, or float thresholded at ``threshold``).

    Args:
        threshold: float masks count as foreground above it.
        reduction: ``"per_image"`` averages per-mask IoU (Fit Check garment IoU);
            ``"global"`` divides total intersection by total union.
        empty_value: IoU of two empty masks (``per_image``).
        kwargs: forwarded to ``torchmetrics.Metric``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, threshold: float = 0.5, reduction: str = "per_image", empty_value: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if reduction not in ("per_image", "global"):
            raise ValueError(f"reduction must be 'per_image' or 'global', received {reduction!r}")
        self.threshold, self.reduction, self.empty_value = threshold, reduction, empty_value
        for state in ("iou_sum", "count", "intersection", "union"):
            self.add_state(state, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def protocol(self) -> MetricProtocol:
        return MetricProtocol(evaluator="iou", extra={"reduction": self.reduction, "threshold": self.threshold})

    def update(self, preds: Tensor, target: Tensor) -> None:
        p, t = _binary(preds, "preds", self.threshold), _binary(target, "target", self.threshold)
        if p.shape != t.shape:
            raise ValueError(f"preds and target masks must have the same shape, received {tuple(p.shape)} and {tuple(t.shape)}")
        p, t = p.flatten(1).double(), t.flatten(1).double()
        inter = (p * t).sum(1)
        union = p.sum(1) + t.sum(1) - inter
        self.intersection += inter.sum()
        self.union += union.sum()
        per = torch.where(union > 0, inter / union.clamp_min(1e-12), torch.full_like(inter, self.empty_value))
        self.iou_sum += per.sum()
        self.count += per.numel()

    def compute(self) -> Tensor:
        if self.reduction == "global":
            return self.intersection / self.union.clamp_min(1e-12) if self.union > 0 else torch.tensor(self.empty_value, dtype=torch.float64)
        return self.iou_sum / self.count.clamp_min(1)


class MaxIoU(Metric):
    """Inverse Painting's focus-consistency IoU (thesis 000, §6.8): for each generated difference mask take
    the maximum IoU over all real difference masks of the same painting, average over generated masks,
    then over paintings.

    ``update(generated_masks, real_masks)`` for one painting, masks ``[K, H, W]``
    and ``[M, H, W]``; or lists of such tensors (one per painting).

    Args:
        threshold: float masks count as foreground above it.
        empty_value: IoU of two empty masks.
        kwargs: forwarded to ``torchmetrics.Metric``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, threshold: float = 0.5, empty_value: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threshold, self.empty_value = threshold, empty_value
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def protocol(self) -> MetricProtocol:
        return MetricProtocol(evaluator="max_iou", extra={"definition": "mean over generated masks of max IoU over real masks, per painting"})

    def painting_score(self, generated: Tensor, real: Tensor) -> Tensor:
        g, r = _binary(generated, "generated_masks", self.threshold), _binary(real, "real_masks", self.threshold)
        if g.ndim == 4:
            g = g.flatten(0, 1) if g.shape[1] == 1 else g
        if r.ndim == 4:
            r = r.flatten(0, 1) if r.shape[1] == 1 else r
        if g.ndim != 3 or r.ndim != 3 or g.shape[-2:] != r.shape[-2:]:
            raise ValueError(f"expected masks [K, H, W] and [M, H, W] of equal size, received {tuple(g.shape)} and {tuple(r.shape)}")
        if g.shape[0] == 0 or r.shape[0] == 0:
            raise ValueError(f"need at least one mask on each side, received {g.shape[0]} generated and {r.shape[0]} real")
        return iou_matrix(g, r, self.empty_value).max(1).values.mean()

    def update(self, generated_masks: Tensor | list[Tensor], real_masks: Tensor | list[Tensor]) -> None:
        if isinstance(generated_masks, Tensor):
            generated_masks, real_masks = [generated_masks], [real_masks]  # type: ignore[list-item]
        if len(generated_masks) != len(real_masks):
            raise ValueError(f"{len(generated_masks)} generated vs {len(real_masks)} real paintings")
        for g, r in zip(generated_masks, real_masks):
            self.total += self.painting_score(g, r)
            self.count += 1

    def compute(self) -> Tensor:
        return self.total / self.count.clamp_min(1)


class MeanIoU(Metric):
    """Mean IoU over classes from an accumulated confusion matrix (Cityscapes-style mIoU).

    ``update(preds, target)`` with integer label maps of equal shape (or
    logits ``[B, C, H, W]`` for ``preds``, reduced by argmax).

    Args:
        num_classes: number of classes.
        ignore_index: target label excluded from scoring (255 in Cityscapes).
        kwargs: forwarded to ``torchmetrics.Metric``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int, ignore_index: Optional[int] = 255, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes, self.ignore_index = int(num_classes), ignore_index
        self.add_state("confusion", torch.zeros(self.num_classes, self.num_classes, dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def protocol(self) -> MetricProtocol:
        return MetricProtocol(evaluator="miou", extra={"num_classes": self.num_classes, "ignore_index": self.ignore_index,
                                                       "classes_absent_everywhere": "excluded from the mean"})

    def update(self, preds: Tensor, target: Tensor) -> None:
        if preds.is_floating_point() and preds.ndim == target.ndim + 1:
            preds = preds.argmax(1)
        if preds.shape != target.shape:
            raise ValueError(f"preds and target label maps must have the same shape, received {tuple(preds.shape)} and {tuple(target.shape)}")
        p, t = preds.flatten().long(), target.flatten().long()
        keep = (t >= 0) & (t < self.num_classes)
        if self.ignore_index is not None:
            keep &= t != self.ignore_index
        p, t = p[keep], t[keep]
        if p.numel() and (int(p.min()) < 0 or int(p.max()) >= self.num_classes):
            raise ValueError(f"predicted labels must lie in [0, {self.num_classes - 1}], received [{int(p.min())}, {int(p.max())}]")
        self.confusion += torch.bincount(t * self.num_classes + p, minlength=self.num_classes**2).view(
            self.num_classes, self.num_classes).double()

    def per_class(self) -> Tensor:
        inter = self.confusion.diagonal()
        union = self.confusion.sum(0) + self.confusion.sum(1) - inter
        return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.full_like(inter, float("nan")))

    def compute(self) -> Tensor:
        return self.per_class().nanmean()


__all__ = ["BinaryIoU", "MaxIoU", "MeanIoU", "iou_matrix"]

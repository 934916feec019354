"""NIQE for the deraining tables (thesis 001 Ch. 8, Tables 8.3 / 8.5), through ``pyiqa`` where it is installed.

NIQE is no-reference (the restored image alone), so ``update(preds, target)`` ignores ``target``; the
value is the mean over images (lower is better). ``pyiqa`` is not part of this suite's environment: the
constructor raises one clear error when it is missing rather than falling back to a different NIQE.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class NIQE(Metric):
    """Mean NIQE of images in [-1, 1] (pyiqa's ``niqe``; its own parameter file)."""

    higher_is_better = False

    def __init__(self) -> None:
        super().__init__()
        try:
            import pyiqa  # type: ignore[import-not-found]
        except ImportError as error:
            raise ImportError("NIQE needs the pyiqa package (pip install pyiqa); it is not installed") from error
        self._niqe = pyiqa.create_metric("niqe", as_loss=False, device="cpu")
        self.add_state("total", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        scores = self._niqe(((preds.detach().float().clamp(-1, 1) + 1) / 2).cpu())
        self.total += scores.double().sum().to(self.total.device)
        self.count += preds.shape[0]

    def compute(self) -> Tensor:
        return self.total / self.count.clamp_min(1)


__all__ = ["NIQE"]

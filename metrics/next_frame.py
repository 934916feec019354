"""Next-frame PSNR at fractions of a long context: Table 4.2 of thesis 001 Ch. 4 (DiFT, games).

The thesis: "next-frame generation accuracy on game data, where a total of 100 frames are
evaluated", columns 10% ... 100%, "predicted frames compared with the frame of the real game when
using the same action" (§4.4 "Games"). It does not define the columns further; the reading here
(also in docs/dift.md): a test clip holds ``N + 1`` real frames (``N = 100``) and its actions; for
a fraction ``f`` the model sees the first ``c = ceil(f N)`` real frames as context (a sliding
window model uses the last ``window - 1`` of them) and generates frame ``c`` (0-based) under its real
action; the column is the mean PSNR of that frame against the real one. So ``PSNR@10%`` is the
prediction after 10 frames of context and ``PSNR@100%`` after all 100.

:func:`context_positions` is shared by the model (which generates at those positions) and
:class:`NextFramePSNR` (which picks the real frames there), so both agree by construction.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from metrics.image_quality import PeakSignalNoiseRatio
from metrics.protocol import MetricProtocol

#: Table 4.2's columns
TABLE_4_2_FRACTIONS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def check_fractions(fractions: Sequence[float]) -> list[float]:
    values = [float(f) for f in fractions]
    if not values or any(not 0.0 < f <= 1.0 for f in values):
        raise ValueError(f"context fractions must be in (0, 1], got {list(fractions)}")
    return values


def context_positions(fractions: Sequence[float], num_frames: int) -> list[int]:
    """The 0-based index, among the ``num_frames`` evaluated frames (the clip's frames 1..N), of the
    frame predicted at each fraction: ``ceil(f N) - 1`` (its context: the clip's frames ``0..ceil(f N) - 1``)."""
    if num_frames < 1:
        raise ValueError(f"next-frame evaluation needs clips of at least 2 frames, got {num_frames + 1}")
    return [max(0, min(num_frames, math.ceil(f * num_frames - 1e-9)) - 1) for f in check_fractions(fractions)]


def fraction_label(fraction: float) -> str:
    """``0.1`` -> ``"10%"``: the suffix of Table 4.2's column ``PSNR@10%``."""
    return f"{round(100 * float(fraction)):d}%"


class NextFramePSNR(Metric):
    """Mean PSNR of next-frame predictions at context fractions (module docstring).

    ``update(preds [B, K, C, H, W], target [B, N, C, H, W])``: ``preds[:, k]`` is the prediction
    for fraction ``k``; ``target`` the clip's real frames 1..N (the game batches' ``target``).
    ``compute()`` -> ``{"10%": dB, ...}``; the callback flattens that to ``<name>_10%``, which
    ``metric_names`` maps to Table 4.2's ``PSNR@10%`` ... ``PSNR@100%`` (configs/dift_game.yaml). Per-frame PSNR as
    :class:`metrics.image_quality.PeakSignalNoiseRatio` (``[0, 1]`` scale, mean over frames).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, fractions: Sequence[float] = TABLE_4_2_FRACTIONS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fractions = check_fractions(fractions)
        self.max_db = 100.0  # PeakSignalNoiseRatio's cap for identical frames
        self.add_state("total", torch.zeros(len(self.fractions), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def protocol(self) -> MetricProtocol:
        return MetricProtocol(evaluator="next_frame_psnr", resize="none",
                              extra={"fractions": self.fractions, "data_range": "[0,1]",
                                     "reading": "frame ceil(f N) from the first ceil(f N) real frames (metrics/next_frame.py)"})

    def update(self, preds: Tensor, target: Tensor) -> None:
        if preds.dim() != 5 or target.dim() != 5:
            raise ValueError(f"NextFramePSNR takes preds [B, K, C, H, W] and target [B, N, C, H, W], got "
                             f"{tuple(preds.shape)} and {tuple(target.shape)}")
        if preds.shape[1] != len(self.fractions):
            raise ValueError(f"NextFramePSNR: {preds.shape[1]} predictions per clip for {len(self.fractions)} fractions "
                             f"{self.fractions} (the model's eval_context_fractions must be the metric's fractions)")
        positions = context_positions(self.fractions, target.shape[1])
        real = target[:, positions].to(preds.device)
        for k in range(len(self.fractions)):
            PeakSignalNoiseRatio._check(preds[:, k], real[:, k])  # noqa: SLF001 - the suite's PSNR, per fraction
            mse = ((preds[:, k].double() + 1) * 0.5 - (real[:, k].double() + 1) * 0.5).pow(2).flatten(1).mean(1)
            self.total[k] += PeakSignalNoiseRatio._psnr(self, mse).sum()  # noqa: SLF001 - uses max_db only
        self.count += preds.shape[0]

    def compute(self) -> dict[str, Tensor]:
        values = self.total / self.count.clamp_min(1)
        return {fraction_label(f): values[k] for k, f in enumerate(self.fractions)}


__all__ = ["NextFramePSNR", "TABLE_4_2_FRACTIONS", "check_fractions", "context_positions", "fraction_label"]

"""Inverse Painting's process metrics (thesis 000, Ch. 6, §6.8): DDC and DTS.

* A painting video's *distance curve* is LPIPS(target, frame) for each frame,
  in time order (time in minutes).
* **DDC** (Difference of Distance Curves) is the dynamic-time-warping
  distance between the generated and the real curve: DTW tolerates time shifts,
  so a process that follows the real one late still scores well.
* **DTS** (Difference of Time Spent) is ``|duration_real - duration_generated|``
  in minutes.

Both are computed per painting and averaged over paintings. DTW is the plain
O(nm) recursion on 1-D curves with cost ``|a_i - b_j|``, no window and no
normalisation by path length (the digest's ``ddc_dtw``; the thesis does not
name a variant).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from metrics.perceptual import LPIPSNetwork
from metrics.protocol import MetricProtocol
from metrics.validation import check_images

CurveLike = Union[Tensor, np.ndarray, Sequence[float]]


def dtw_distance(a: CurveLike, b: CurveLike) -> float:
    """DTW distance between two 1-D curves with cost ``|a_i - b_j|``.

    ``D[i, j] = |a_i - b_j| + min(D[i-1, j], D[i, j-1], D[i-1, j-1])``,
    ``D[0, 0] = |a_0 - b_0|``; returns ``D[n-1, m-1]``. Rows are filled with a
    running minimum so the inner loop is vectorised over ``j`` except for the
    left-neighbour dependency.
    """
    x = np.asarray(a.detach().cpu() if isinstance(a, Tensor) else a, dtype=np.float64).ravel()
    y = np.asarray(b.detach().cpu() if isinstance(b, Tensor) else b, dtype=np.float64).ravel()
    if x.size == 0 or y.size == 0:
        raise ValueError(f"DTW needs non-empty curves, received lengths {x.size} and {y.size}")
    cost = np.abs(x[:, None] - y[None, :])
    previous = np.cumsum(cost[0])
    for i in range(1, x.size):
        # best of (up, diagonal) for every j, then a left-to-right pass for the left neighbour
        up_diag = previous.copy()
        up_diag[1:] = np.minimum(previous[1:], previous[:-1])
        row = np.empty_like(previous)
        row[0] = cost[i, 0] + previous[0]
        for j in range(1, y.size):
            row[j] = cost[i, j] + min(up_diag[j], row[j - 1])
        previous = row
    return float(previous[-1])


def distance_curve(frames: Tensor, target: Tensor, lpips_network: LPIPSNetwork, batch_size: int = 16) -> Tensor:
    """LPIPS(target, frame) for every frame ``[K, C, H, W]`` (``[-1, 1]``) against ``target [C, H, W]``."""
    check_images(frames, "frames")
    check_images(target, "target", ndim=3)
    values = []
    with torch.no_grad():
        for start in range(0, frames.shape[0], batch_size):
            chunk = frames[start : start + batch_size]
            values.append(lpips_network(chunk, target.unsqueeze(0).expand_as(chunk)))
    return torch.cat(values)


def _duration_minutes(times: CurveLike) -> float:
    t = np.asarray(times.detach().cpu() if isinstance(times, Tensor) else times, dtype=np.float64).ravel()
    if t.size == 0:
        raise ValueError("a painting needs at least one frame time")
    return float(t.max() - t.min()) / 60.0


class DistanceCurveDifference(Metric):
    """DDC: mean DTW distance between generated and real LPIPS-to-target curves.

    Either ``update(generated_frames, real_frames, target=None)`` with one
    painting's frames ``[K, C, H, W]`` / ``[M, C, H, W]`` in ``[-1, 1]`` (the
    target defaults to the last real frame, the finished painting), or
    ``update(generated_curve, real_curve)`` with precomputed 1-D curves.

    Args:
        lpips_network: the :class:`~metrics.perceptual.LPIPSNetwork` for the
            curves; built from ``net`` / ``backbone_weights`` when ``None``.
        net, backbone_weights: LPIPS backbone and its weight file.
        kwargs: forwarded to ``torchmetrics.Metric``.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        lpips_network: Optional[LPIPSNetwork] = None,
        net: str = "alex",
        backbone_weights: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.lpips_network = lpips_network if lpips_network is not None else LPIPSNetwork(net, backbone_weights)  # type: ignore[arg-type]
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def protocol(self) -> MetricProtocol:
        return self.lpips_network.protocol.with_extra(
            metric="ddc", definition="DTW(|a_i - b_j|) between LPIPS(target, frame) curves, per painting, averaged")

    def update_curves(self, generated_curve: CurveLike, real_curve: CurveLike) -> None:
        """Add one painting from precomputed distance curves."""
        self.update(generated_curve, real_curve)

    def update(self, generated: Any, real: Any, target: Optional[Tensor] = None) -> None:
        """Add one painting: frames ``[K, C, H, W]`` / ``[M, C, H, W]`` or 1-D distance curves."""
        if isinstance(real, Tensor) and real.ndim == 4:
            check_images(real, "real_frames")
            target = real[-1] if target is None else target
            generated = distance_curve(generated, target, self.lpips_network)
            real = distance_curve(real, target, self.lpips_network)
        self.total += dtw_distance(generated, real)
        self.count += 1

    def compute(self) -> Tensor:
        return self.total / self.count.clamp_min(1)


class TimeSpentDifference(Metric):
    """DTS: mean ``|duration_real - duration_generated|`` in minutes.

    ``update(generated_times, real_times)`` with one painting's frame times in
    **seconds** (the batch convention), or lists of them; the duration is
    ``max(t) - min(t)``.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def protocol(self) -> MetricProtocol:
        return MetricProtocol(evaluator="dts", extra={"unit": "minutes", "input": "frame times in seconds"})

    def update(self, generated_times: Any, real_times: Any) -> None:
        is_single = isinstance(generated_times, Tensor) and generated_times.ndim <= 1 or (
            isinstance(generated_times, (list, tuple)) and generated_times and not hasattr(generated_times[0], "__len__"))
        pairs = [(generated_times, real_times)] if is_single else list(zip(generated_times, real_times))
        for gen, real in pairs:
            self.total += abs(_duration_minutes(real) - _duration_minutes(gen))
            self.count += 1

    def compute(self) -> Tensor:
        return self.total / self.count.clamp_min(1)


__all__ = ["dtw_distance", "distance_curve", "DistanceCurveDifference", "TimeSpentDifference"]

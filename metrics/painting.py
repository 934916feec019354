"""Inverse Painting's process metrics (thesis 000, Ch. 6, §6.3.4): DDC and DTS.

* A painting video's *distance curve* "depicts its progression towards the target painting,
  plotting time (x-axis, minutes) against LPIPS distance (y-axis) between target and current
  images" (§6.3.4): the points ``(t_k / 60, LPIPS(target, frame_k))``, ``t_k`` in seconds.
* **DDC** (Difference of Distance Curves) is the dynamic-time-warping distance between the
  generated and the real curve *as curves in that plane*: DTW pairs points so time shifts are
  tolerated, and the cost of a pair is the Euclidean distance of the two points, so a process
  that reaches the same LPIPS values at other times is charged for the time difference (in
  minutes). A process twice as slow with the same values no longer scores 0.
* **DTS** (Difference of Time Spent) is ``|duration_real - duration_generated|`` in minutes.

Both are computed per painting and averaged over paintings (§6.3.4). [GAP] The thesis names DTW
[188] but not its variant: the plain O(nm) recursion, Euclidean point cost, no window, no
normalisation by path length (the sum along the optimal path, as the Table 6.1 magnitudes of
~60-150 suggest for ~40-minute videos).
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


def _points(curve: CurveLike) -> np.ndarray:
    x = np.asarray(curve.detach().cpu() if isinstance(curve, Tensor) else curve, dtype=np.float64)
    if x.ndim <= 1:
        return x.reshape(-1, 1)
    if x.ndim != 2:
        raise ValueError(f"a curve is 1-D values or [N, D] points, got shape {tuple(x.shape)}")
    return x


def dtw_distance(a: CurveLike, b: CurveLike) -> float:
    """DTW distance between two curves: 1-D values (cost ``|a_i - b_j|``) or ``[N, D]`` points (Euclidean cost).

    ``D[i, j] = c(a_i, b_j) + min(D[i-1, j], D[i, j-1], D[i-1, j-1])``,
    ``D[0, 0] = c(a_0, b_0)``; returns ``D[n-1, m-1]``. Rows are filled with a
    running minimum so the inner loop is vectorised over ``j`` except for the
    left-neighbour dependency.
    """
    x, y = _points(a), _points(b)
    if x.shape[0] == 0 or y.shape[0] == 0:
        raise ValueError(f"DTW needs non-empty curves, received lengths {x.shape[0]} and {y.shape[0]}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"DTW curves need the same point dimension, got {x.shape[1]} and {y.shape[1]}")
    cost = np.sqrt(((x[:, None, :] - y[None, :, :]) ** 2).sum(-1))
    previous = np.cumsum(cost[0])
    for i in range(1, x.shape[0]):
        # best of (up, diagonal) for every j, then a left-to-right pass for the left neighbour
        up_diag = previous.copy()
        up_diag[1:] = np.minimum(previous[1:], previous[:-1])
        row = np.empty_like(previous)
        row[0] = cost[i, 0] + previous[0]
        for j in range(1, y.shape[0]):
            row[j] = cost[i, j] + min(up_diag[j], row[j - 1])
        previous = row
    return float(previous[-1])


def time_distance_curve(times_seconds: CurveLike, distances: CurveLike) -> np.ndarray:
    """The §6.3.4 distance curve as ``[K, 2]`` points: (time in minutes, LPIPS to the target)."""
    t = _points(times_seconds).ravel() / 60.0
    d = _points(distances).ravel()
    if t.size != d.size:
        raise ValueError(f"a distance curve needs one time per frame: {t.size} times, {d.size} LPIPS values")
    return np.stack([t, d], axis=1)


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
    """DDC: mean DTW distance between generated and real (minutes, LPIPS-to-target) curves.

    Either ``update(generated_frames, real_frames, target=None, generated_times=..., real_times=...)``
    with one painting's frames ``[K, C, H, W]`` / ``[M, C, H, W]`` in ``[-1, 1]`` (the target
    defaults to the last real frame, the finished painting), or ``update_curves(generated_lpips,
    real_lpips, generated_times, real_times)`` with precomputed LPIPS values. Frame times are in
    **seconds** (the batch convention, as for DTS) and are required: DDC without time is not the
    chapter's metric.

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
            metric="ddc", unit="minutes x LPIPS",
            definition="DTW (Euclidean point cost) between (time in minutes, LPIPS(target, frame)) curves, per painting, averaged")

    def update_curves(self, generated_lpips: CurveLike, real_lpips: CurveLike, generated_times: CurveLike,
                      real_times: CurveLike) -> None:
        """Add one painting from precomputed LPIPS-to-target values and frame times (seconds)."""
        self.total += dtw_distance(time_distance_curve(generated_times, generated_lpips),
                                   time_distance_curve(real_times, real_lpips))
        self.count += 1

    def update(self, generated: Tensor, real: Tensor, target: Optional[Tensor] = None, *,
               generated_times: CurveLike, real_times: CurveLike) -> None:
        """Add one painting: frames ``[K, C, H, W]`` / ``[M, C, H, W]`` and their times in seconds."""
        check_images(real, "real_frames")
        target = real[-1] if target is None else target
        self.update_curves(distance_curve(generated, target, self.lpips_network),
                           distance_curve(real, target, self.lpips_network), generated_times, real_times)

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


__all__ = ["dtw_distance", "distance_curve", "time_distance_curve", "DistanceCurveDifference", "TimeSpentDifference"]

"""Face-alignment NRMSE on super-resolved faces (thesis 001, Ch. 9, §9.4.2, Table 9.2).

A landmark network (the thesis: an alignment network pretrained on CelebA) predicts K points on
the SR output; the error to the reference points is the mean point distance divided by a
normaliser, the inter-ocular distance by default (the usual face-alignment convention; the
thesis does not state it [ext]). The reference is the dataset's landmark annotation when the
batch has one (``landmarks [B, K, 2]``), else the network's points on the HR image (a proxy).
The network is any ``nn.Module`` mapping ``[B, 3, H, W]`` in [-1, 1] to ``[B, K, 2]`` pixel
coordinates, e.g. a TorchScript export loaded with :func:`load_landmark_model`;
:class:`TinyRandomLandmarks` is a **random stand-in** for tests.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from lightning_modules.components.pretrained_paths import require_files
from metrics.protocol import MetricProtocol


def nrmse(pred: Tensor, ref: Tensor, eyes: tuple[int, int]) -> Tensor:
    """Per-face mean point distance / distance between reference points ``eyes`` (``[B]``)."""
    if pred.shape != ref.shape or pred.dim() != 3 or pred.shape[-1] != 2:
        raise ValueError(f"landmarks must be [B, K, 2] of equal shape, received {tuple(pred.shape)} and {tuple(ref.shape)}")
    scale = (ref[:, eyes[0]] - ref[:, eyes[1]]).norm(dim=-1).clamp_min(1e-6)
    return (pred - ref).norm(dim=-1).mean(1) / scale


class LandmarkNRMSE(Metric):
    """Mean NRMSE of the landmarks found on restored faces (lower is better).

    Args:
        landmark_model: frozen network, images -> ``[B, K, 2]``.
        eyes: reference point indices of the normaliser (68-point layout: outer eye corners 36, 45).
        random_weights: the network is a stand-in (rows say ``weights: random``).
    """

    higher_is_better = False
    full_state_update = False

    def __init__(self, landmark_model: nn.Module, eyes: tuple[int, int] = (36, 45), random_weights: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.landmark_model = landmark_model.requires_grad_(False).eval()
        self.eyes, self.random_weights = (int(eyes[0]), int(eyes[1])), bool(random_weights)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def protocol(self) -> MetricProtocol:
        return MetricProtocol(evaluator="landmark_nrmse", feature_network=type(self.landmark_model).__name__,
                              feature_weights="random" if self.random_weights else "from path",
                              random_weights=self.random_weights,
                              extra={"normaliser": f"distance of points {self.eyes}"})

    @torch.no_grad()
    def update(self, preds: Tensor, target: Tensor, landmarks: Optional[Tensor] = None) -> None:
        ref = landmarks if landmarks is not None else self.landmark_model(target)
        values = nrmse(self.landmark_model(preds).float(), ref.float(), self.eyes)
        self.total += values.double().sum()
        self.count += values.numel()

    def compute(self) -> Tensor:
        return self.total / self.count.clamp_min(1)


class TinyRandomLandmarks(nn.Module):
    """Stand-in landmark network with random weights (tests): soft-argmax of K random heatmaps."""

    def __init__(self, num_points: int = 68, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(int(seed))
        self.heatmaps = nn.Conv2d(3, num_points, 5, padding=2)
        with torch.no_grad():
            for p in self.heatmaps.parameters():
                p.copy_(torch.randn(p.shape, generator=generator))

    def forward(self, images: Tensor) -> Tensor:
        maps = self.heatmaps(images)
        b, k, h, w = maps.shape
        weights = maps.flatten(2).softmax(-1).view(b, k, h, w)
        ys = torch.arange(h, device=images.device, dtype=weights.dtype)
        xs = torch.arange(w, device=images.device, dtype=weights.dtype)
        return torch.stack([(weights.sum(2) * xs).sum(-1), (weights.sum(3) * ys).sum(-1)], -1)


def load_landmark_model(path: str, key: str = "landmark_path") -> nn.Module:
    """A TorchScript landmark network from ``path`` (e.g. the DIC / FAN alignment net exported with jit)."""
    file = require_files(path, key, [""], "a face-alignment network trained on CelebA, exported with torch.jit.save")
    return torch.jit.load(str(file), map_location="cpu").eval()


__all__ = ["LandmarkNRMSE", "TinyRandomLandmarks", "load_landmark_model", "nrmse"]

"""Tiny random feature networks: *stand-ins* for Inception / I3D in CPU tests and tiny configs.

Building the random-weight Inception costs seconds on a busy 2-core machine; these few-layer
convolutional networks with fixed random weights (seeded) make the Fréchet metrics' code path
run in milliseconds. Their values mean nothing beyond the test: results rows made with them are
flagged random-weight (``uses_random_weights``) like every other stand-in.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metrics.protocol import MetricProtocol

__all__ = ["TinyRandomImageFeatures", "TinyRandomVideoFeatures"]


class TinyRandomImageFeatures(nn.Module):
    """``[B, 3, H, W]`` in [-1, 1] -> ``[B, num_features]``: two random convolutions and a global mean."""

    def __init__(self, num_features: int = 16, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.num_features = int(num_features)
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, self.num_features, 3, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        self.requires_grad_(False)

    @property
    def protocol(self) -> MetricProtocol:
        return MetricProtocol(evaluator="stand-in", feature_network=type(self).__name__, feature_weights="random",
                              random_weights=True)

    def forward(self, images: Tensor) -> Tensor:
        x = F.interpolate(images.float(), size=(16, 16), mode="bilinear", align_corners=False)
        return self.conv2(torch.tanh(self.conv1(x))).mean(dim=(2, 3))


class TinyRandomVideoFeatures(nn.Module):
    """``[B, T, 3, H, W]`` -> ``[B, num_features]``: per-frame random features plus their temporal differences."""

    def __init__(self, num_features: int = 16, seed: int = 0) -> None:
        super().__init__()
        self.frames = TinyRandomImageFeatures(num_features // 2, seed)
        self.num_features = 2 * (num_features // 2)

    @property
    def protocol(self) -> MetricProtocol:
        return MetricProtocol(evaluator="stand-in", feature_network=type(self).__name__, feature_weights="random",
                              random_weights=True)

    def forward(self, videos: Tensor) -> Tensor:
        b, t = videos.shape[:2]
        per_frame = self.frames(videos.flatten(0, 1)).reshape(b, t, -1)
        motion = (per_frame[:, 1:] - per_frame[:, :-1]).abs().mean(1) if t > 1 else torch.zeros_like(per_frame[:, 0])
        return torch.cat([per_frame.mean(1), motion], dim=-1)

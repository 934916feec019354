"""Identity similarity: cosine between face-recognition embeddings of the output and the reference.

Thesis 001 Ch. 6 reports it as "Deg." in percent (ArcFace-ResNet18 on grey
128x128 crops); the embedding network is injected (its weights come from the
user), and tests use a random one.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

from metrics.protocol import MetricProtocol, protocol_of
from metrics.validation import check_images, check_same_shape


class IdentitySimilarity(Metric):
    """Mean ``scale * cos(embed(preds), embed(target))``.

    Args:
        embedder: ``nn.Module`` mapping prepared images to ``[B, D]`` embeddings.
        scale: 100 for "Deg. %", 1 for a plain cosine.
        grayscale: average RGB to one channel before the embedder (ArcFace-R18).
        size: side to resize to (bilinear) before the embedder; 128 for
            ArcFace-R18, ``None`` = as given.
        embedder_name: name recorded in the protocol when the embedder has none.
        kwargs: forwarded to ``torchmetrics.Metric``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        embedder: nn.Module,
        scale: float = 100.0,
        grayscale: bool = True,
        size: Optional[int] = 128,
        embedder_name: str = "arcface",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.embedder = embedder.eval().requires_grad_(False)
        self.scale, self.grayscale, self.size, self.embedder_name = float(scale), grayscale, size, embedder_name
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def protocol(self) -> MetricProtocol:
        inner = protocol_of(self.embedder)
        return MetricProtocol(
            evaluator="identity_cosine",
            feature_network=inner.feature_network if inner else self.embedder_name,
            feature_weights=inner.feature_weights if inner else getattr(self.embedder, "weights_identity", "user-provided"),
            resize=f"{'grey, ' if self.grayscale else ''}{'bilinear to %dx%d' % (self.size, self.size) if self.size else 'native'}",
            random_weights=bool(inner.random_weights) if inner else getattr(self.embedder, "weights_identity", "") == "random",
            extra={"scale": self.scale},
        )

    def train(self, mode: bool = True) -> "IdentitySimilarity":
        super().train(mode)
        self.embedder.eval()
        return self

    def _prepare(self, x: Tensor) -> Tensor:
        x = x.float()
        if self.grayscale and x.shape[1] == 3:
            x = x.mean(1, keepdim=True)
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return x

    def update(self, preds: Tensor, target: Tensor) -> None:
        check_images(preds, "preds", channels=(1, 3))
        check_images(target, "target", channels=(1, 3))
        check_same_shape(preds, target)
        with torch.no_grad():
            a = self.embedder(self._prepare(preds)).flatten(1)
            b = self.embedder(self._prepare(target)).flatten(1)
        cos = F.cosine_similarity(a.double(), b.double(), dim=-1)
        self.total += (self.scale * cos).sum()
        self.count += cos.numel()

    def compute(self) -> Tensor:
        return self.total / self.count.clamp_min(1)


__all__ = ["IdentitySimilarity"]

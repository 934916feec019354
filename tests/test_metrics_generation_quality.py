"""Inception Score and improved precision/recall: agreement with torchmetrics and brute force."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchmetrics.image.inception import InceptionScore as TMInceptionScore

from metrics.generation_quality import FIDInceptionLogits, InceptionScore, PrecisionRecall


class LinearLogits(nn.Module):
    """A fixed random linear classifier on flattened 8x8 grey images: 5 classes."""

    num_features = 5

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.float().flatten(1)) * 3


class Flatten(nn.Module):
    num_features = 64

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().flatten(1)


def images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_inception_score_one_split_equals_torchmetrics() -> None:
    classifier = LinearLogits()
    x = images(200, 0)
    ours = InceptionScore(classifier, splits=1)
    for chunk in x.split(64):
        ours.update(chunk)
    ours.update(images(30, 9), real=True)  # real images do not count
    reference = TMInceptionScore(feature=_TorchmetricsLogits(classifier), splits=1)
    reference.update(((x + 1) * 127.5).round().to(torch.uint8))
    expected = reference.compute()[0]
    assert float(ours.compute()["value"]) == pytest.approx(float(expected), rel=1e-4)


class _TorchmetricsLogits(nn.Module):
    """torchmetrics feeds uint8 images; map them back to [-1, 1] for the same classifier."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x.float() / 127.5 - 1)


def test_inception_score_splits_and_extremes() -> None:
    logits = torch.full((100, 4), -30.0)
    logits[torch.arange(100), torch.arange(100) % 4] = 30.0  # confident and uniform over 4 classes
    metric = InceptionScore(LinearLogits(), splits=1, num_classes=4)
    metric.update_logits(logits)
    assert float(metric.compute()["value"]) == pytest.approx(4.0, rel=1e-6)
    # with 4 round-robin splits every split holds one class only: p(y) = p(y|x), IS = 1
    per_class = InceptionScore(LinearLogits(), splits=4, num_classes=4)
    per_class.update_logits(logits)
    assert float(per_class.compute()["value"]) == pytest.approx(1.0, rel=1e-6)
    uniform = InceptionScore(LinearLogits(), splits=2, num_classes=4)
    uniform.update_logits(torch.zeros(10, 4))
    assert float(uniform.compute()["value"]) == pytest.approx(1.0)
    # splits: sample i goes to split i mod S; each split's score by hand
    x = torch.randn(12, 4, generator=torch.Generator().manual_seed(3))
    streamed = InceptionScore(LinearLogits(), splits=3, num_classes=4)
    streamed.update_logits(x[:5])
    streamed.update_logits(x[5:])
    scores = []
    for s in range(3):
        p = torch.softmax(x[s::3].double(), 1)
        kl = (p * (p.log() - p.mean(0, keepdim=True).log())).sum(1).mean()
        scores.append(math.exp(float(kl)))
    assert float(streamed.compute()["value"]) == pytest.approx(sum(scores) / 3, rel=1e-9)


def brute_force_precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int) -> tuple[float, float]:
    def radii(points: torch.Tensor) -> list[float]:
        out = []
        for i in range(len(points)):
            d = sorted(float((points[i] - points[j]).norm()) for j in range(len(points)) if j != i)
            out.append(d[k - 1])
        return out

    def covered(queries: torch.Tensor, anchors: torch.Tensor, r: list[float]) -> float:
        hits = sum(any(float((q - a).norm()) <= ra for a, ra in zip(anchors, r)) for q in queries)
        return hits / len(queries)

    return covered(fake, real, radii(real)), covered(real, fake, radii(fake))


def test_precision_recall_equals_brute_force() -> None:
    real = images(40, 1)
    fake = images(30, 2) * 0.8 + 0.1
    metric = PrecisionRecall(Flatten(), k=3)
    metric.update(real[:25], real=True)
    metric.update(real[25:], real=True)
    metric.update(fake, real=False)
    result = metric.compute()
    precision, recall = brute_force_precision_recall(real.flatten(1), fake.flatten(1), 3)
    assert float(result["precision"]) == pytest.approx(precision)
    assert float(result["recall"]) == pytest.approx(recall)
    same = PrecisionRecall(Flatten(), k=3)
    same.update(real, real=True)
    same.update(real, real=False)
    assert float(same.compute()["precision"]) == 1.0 and float(same.compute()["recall"]) == 1.0


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="pt_inception-2015-12-05"):
        FIDInceptionLogits()
    with pytest.raises(ValueError, match="splits"):
        InceptionScore(LinearLogits(), splits=0)
    few = PrecisionRecall(Flatten(), k=3)
    few.update(images(3, 0), real=True)
    few.update(images(5, 1), real=False)
    with pytest.raises(RuntimeError, match="k=3"):
        few.compute()
    assert FIDInceptionLogits(random_weights=True).protocol.random_weights

"""Inception Score and improved precision/recall: the rest of the ADM / LightningDiT generation table.

AlignTok (thesis 000 Ch. 7, §7.5) reports gFID, IS and precision/recall with the ADM
reference-batch protocol (Dhariwal & Nichol 2021): IS over the TF-Inception's 1008-way
softmax, and the improved precision/recall of Kynkäänniemi et al. (2019) with k = 3 nearest
neighbours in the Inception pool3 feature space. Both networks are injectable, as for FID.

* ``InceptionScore``: ``exp(E_x KL(p(y|x) || p(y)))`` averaged over ``splits``. The state is
  fixed-size (per split: the sum of ``sum_y p log p`` and of ``p``), so memory does not grow
  with the number of samples; sample ``i`` of a rank goes to split ``i mod splits`` (the ADM
  evaluator cuts contiguous chunks; with shuffled samples the two are the same estimator).
* ``PrecisionRecall``: a generated sample is "precise" if it falls inside the k-NN ball of
  some real sample, a real sample is "recalled" if it falls inside the k-NN ball of some
  generated one. k-NN radii need every feature, so this metric stores them (like KID).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from metrics.fid import FeatureSpec, _FeatureMetric, extractor_protocol
from metrics.inception import FIDInceptionV3
from metrics.protocol import MetricProtocol


class FIDInceptionLogits(nn.Module):
    """The TF-Inception of FID up to its 1008-way classifier: images in [-1, 1] -> logits.

    The classifier (``fc``) is in pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``
    (github.com/mseitzer/pytorch-fid releases) but not in fid-helper's TorchScript, so
    ``weights_path`` must name the pytorch-fid file; ``random_weights=True`` is for tests.
    """

    num_features = 1008

    def __init__(self, weights_path: Optional[str] = None, random_weights: bool = False) -> None:
        super().__init__()
        if random_weights:
            self.inception = FIDInceptionV3(weights="random")
        elif weights_path is None:
            raise ValueError(
                "FIDInceptionLogits needs weights_path: pytorch-fid's pt_inception-2015-12-05-6726825d.pth "
                "(github.com/mseitzer/pytorch-fid/releases), the only offline-loadable file with the "
                "Inception classifier; fid-helper's TorchScript has no classifier"
            )
        else:
            self.inception = FIDInceptionV3(weights="file", weights_path=weights_path)
        self.random_weights = random_weights
        self.weights_path = weights_path

    @property
    def protocol(self) -> MetricProtocol:
        base = self.inception.protocol if hasattr(self.inception, "protocol") else MetricProtocol("tf-inception-v3")
        return MetricProtocol(
            evaluator="tf-inception-v3-logits",
            feature_network="TF Inception-v3 2015-12-05 logits (1008-way)",
            feature_weights=base.feature_weights,
            resize=base.resize,
            random_weights=self.random_weights,
        )

    def forward(self, images: Tensor) -> Tensor:
        return self.inception.fc(self.inception(images))


class InceptionScore(_FeatureMetric):
    """Inception Score over an injectable logits network, streamed per split.

    Args:
        classifier: a module mapping images in [-1, 1] to logits ``[B, C]`` (default: none;
            pass ``FIDInceptionLogits(weights_path=...)`` for the standard IS).
        splits: number of splits whose scores are averaged (ADM and torchmetrics use 10).
        num_classes: ``C``; inferred from ``classifier.num_features`` when ``None``.
    """

    higher_is_better = True

    def __init__(
        self,
        classifier: FeatureSpec,
        splits: int = 10,
        num_classes: Optional[int] = None,
        input_range: Optional[tuple[float, float]] = (-1.0, 1.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(classifier, num_classes, input_range, **kwargs)
        if splits < 1:
            raise ValueError(f"splits must be >= 1, got {splits}")
        self.splits = int(splits)
        c = self.num_features
        self.add_state("sum_p_log_p", torch.zeros(self.splits, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("sum_p", torch.zeros(self.splits, c, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(self.splits, dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def protocol(self) -> MetricProtocol:
        return extractor_protocol(self.feature_extractor).with_extra(metric="inception_score", splits=self.splits)

    def update(self, images: Tensor, real: bool = False) -> None:
        """Score generated images; real ones are ignored (IS has no reference set). The ``real``
        flag lets the evaluation callback feed IS like FID."""
        if not real:
            self.update_logits(self.extract(images, "generated images"))

    def update_logits(self, logits: Tensor) -> None:
        log_p = torch.log_softmax(logits.double(), dim=1)
        p = log_p.exp()
        offset = int(self.count.sum().item())  # once per batch, not per sample
        split = (torch.arange(len(p), device=p.device) + offset) % self.splits
        self.sum_p_log_p.index_add_(0, split, (p * log_p).sum(dim=1))
        self.sum_p.index_add_(0, split, p)
        self.count.index_add_(0, split, torch.ones_like(split, dtype=torch.float64))

    def compute(self) -> dict[str, Tensor]:
        used = self.count > 0
        if not bool(used.any()):
            raise RuntimeError("inception_score: no samples")
        count = self.count[used]
        marginal = self.sum_p[used] / count[:, None]
        # E_x KL(p(y|x) || p(y)) = E_x sum p log p - sum p_bar log p_bar
        entropy_term = (marginal * torch.log(marginal.clamp_min(1e-30))).sum(dim=1)
        scores = torch.exp(self.sum_p_log_p[used] / count - entropy_term)
        std = scores.std(unbiased=False) if len(scores) > 1 else torch.zeros((), dtype=scores.dtype)
        return {"value": scores.mean(), "std": std}


def knn_radii(features: Tensor, k: int, chunk: int = 1024) -> Tensor:
    """Distance of each row to its k-th nearest other row (Euclidean), in chunks."""
    radii = []
    for start in range(0, len(features), chunk):
        d = torch.cdist(features[start : start + chunk], features)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # the 1st smallest is the point itself
    return torch.cat(radii)


def coverage_fraction(queries: Tensor, anchors: Tensor, radii: Tensor, chunk: int = 1024) -> Tensor:
    """Fraction of queries inside at least one anchor's ball."""
    inside = []
    for start in range(0, len(queries), chunk):
        d = torch.cdist(queries[start : start + chunk], anchors)
        inside.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(inside).double().mean()


class PrecisionRecall(_FeatureMetric):
    """Improved precision and recall (Kynkäänniemi et al. 2019) over injectable features.

    Args:
        feature_extractor: images in [-1, 1] -> ``[B, D]`` (ADM: TF-Inception pool3).
        k: neighbourhood size of the manifold estimate (3 in the paper and ADM).
    """

    higher_is_better = True

    def __init__(
        self,
        feature_extractor: FeatureSpec = "inception",
        k: int = 3,
        num_features: Optional[int] = None,
        input_range: Optional[tuple[float, float]] = (-1.0, 1.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(feature_extractor, num_features, input_range, **kwargs)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = int(k)
        self.add_state("real_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    @property
    def protocol(self) -> MetricProtocol:
        return extractor_protocol(self.feature_extractor).with_extra(metric="precision_recall", k=self.k)

    def update(self, images: Tensor, real: bool) -> None:
        self.update_features(self.extract(images, "real images" if real else "generated images"), real)

    def update_features(self, features: Tensor, real: bool) -> None:
        (self.real_features if real else self.fake_features).append(features.float())

    def compute(self) -> dict[str, Tensor]:
        real = torch.cat(self.real_features) if isinstance(self.real_features, list) else self.real_features
        fake = torch.cat(self.fake_features) if isinstance(self.fake_features, list) else self.fake_features
        if len(real) <= self.k or len(fake) <= self.k:
            raise RuntimeError(f"precision_recall: needs more than k={self.k} real and generated samples, "
                               f"got {len(real)} and {len(fake)}")
        precision = coverage_fraction(fake, real, knn_radii(real, self.k))
        recall = coverage_fraction(real, fake, knn_radii(fake, self.k))
        return {"precision": precision, "recall": recall}

"""Streaming FID / KID / rFID over an injectable feature extractor.

The feature extractor is any ``nn.Module`` mapping images ``[B, C, H, W]`` in
``[-1, 1]`` to features ``[B, D]`` (see :mod:`metrics.feature_extractors` for
the built-in ones: TF-Inception FID, torchvision Inception, DINOv2, the
suite's digits classifier). FID keeps, per distribution, the running sum of
features, the running sum of their outer products (float64) and the count:
memory is ``O(D^2)`` whatever the number of samples, and the states reduce
across DDP ranks by summation.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import Metric

from metrics.frechet import frechet_distance, gaussian_from_sums, kernel_inception_distance
from metrics.protocol import MetricProtocol, protocol_of
from metrics.validation import check_images

FeatureSpec = Union[nn.Module, str]


def infer_num_features(extractor: nn.Module, probe_shape: tuple[int, ...] = (2, 3, 64, 64)) -> int:
    """Output width of a feature extractor: its ``num_features`` attribute, else one probe forward pass."""
    for attr in ("num_features", "feature_dim", "out_features"):
        value = getattr(extractor, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    was_training = extractor.training
    extractor.eval()
    with torch.no_grad():
        device = next((p.device for p in extractor.parameters()), torch.device("cpu"))
        out = extractor(torch.zeros(probe_shape, device=device))
    extractor.train(was_training)
    if out.ndim != 2:
        raise ValueError(f"the feature extractor must return [B, D] features, a probe returned shape {tuple(out.shape)}")
    return int(out.shape[1])


def extractor_protocol(extractor: nn.Module) -> MetricProtocol:
    """The extractor's declared protocol, or a generic one naming its class (weights unknown)."""
    proto = protocol_of(extractor)
    if proto is not None:
        return proto
    return MetricProtocol(evaluator="custom", feature_network=type(extractor).__name__, feature_weights="user-provided")


class _FeatureMetric(Metric):
    """Common plumbing: the extractor, input checks, the feature pass."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        feature_extractor: FeatureSpec,
        num_features: Optional[int],
        input_range: Optional[tuple[float, float]],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(feature_extractor, str):
            from metrics.feature_extractors import build_feature_extractor

            feature_extractor = build_feature_extractor(feature_extractor)
        if not isinstance(feature_extractor, nn.Module):
            raise TypeError(f"feature_extractor must be an nn.Module or a name, received {type(feature_extractor).__name__}")
        self.feature_extractor = feature_extractor
        self.feature_extractor.eval().requires_grad_(False)
        self.num_features = int(num_features) if num_features is not None else infer_num_features(feature_extractor)
        self.input_range = input_range

    def train(self, mode: bool = True) -> "_FeatureMetric":
        """Keep the feature network in eval mode whatever mode the metric is put in."""
        super().train(mode)
        self.feature_extractor.eval()
        return self

    def extract(self, images: Tensor, name: str = "images") -> Tensor:
        """Features ``[B, D]`` in float64 of a checked image batch."""
        check_images(images, name, value_range=self.input_range)
        with torch.no_grad():
            features = self.feature_extractor(images)
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise ValueError(
                f"the feature extractor returned shape {tuple(features.shape)}, expected [B, {self.num_features}]"
            )
        return features.double()


class FrechetInceptionDistance(_FeatureMetric):
    """Fréchet distance between the feature Gaussians of real and generated images (FID, FD-DINOv2, ...).

    ``update(images, real=True/False)``; ``compute()`` returns a float64 scalar.

    Args:
        feature_extractor: ``nn.Module`` mapping ``[B, C, H, W]`` images in
            ``input_range`` to ``[B, D]`` features, or a built-in name
            (``"inception"``: TF-Inception FID, ``"inception-random"``,
            ``"torchvision-inception"``, ``"dinov2"``, ``"digits"``; see
            :func:`metrics.feature_extractors.build_feature_extractor`).
        num_features: ``D``; read from the extractor's ``num_features``
            attribute or found by one probe pass when ``None``.
        reset_real_features: when ``False``, ``reset()`` keeps the real
            statistics, so a fixed reference set is featurised once.
        input_range: value range that inputs are checked against
            (``None`` disables the check, for extractors that take other inputs).
        name: metric name recorded in the protocol (``"fid"``, ``"fd_dinov2"``).
        reference_statistics: ``.npz`` loaded as the fixed real side when the metric is built
            (:meth:`load_real_statistics`: ``mu``/``sigma``, or ADM's reference batch, e.g.
            ``VIRTUAL_imagenet256_labeled.npz``); ``None`` streams the real batches.
        kwargs: forwarded to ``torchmetrics.Metric`` (``sync_on_compute``,
            ``process_group``, ...).
    """

    def __init__(
        self,
        feature_extractor: FeatureSpec = "inception",
        num_features: Optional[int] = None,
        reset_real_features: bool = True,
        input_range: Optional[tuple[float, float]] = (-1.0, 1.0),
        name: str = "fid",
        reference_statistics: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(feature_extractor, num_features, input_range, **kwargs)
        self.reset_real_features = reset_real_features
        self.name = name
        d = self.num_features
        for prefix in ("real", "fake"):
            self.add_state(f"{prefix}_sum", torch.zeros(d, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{prefix}_outer", torch.zeros(d, d, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{prefix}_count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.reference: Optional[str] = None  # the loaded reference file's name (protocol), if any
        # (sum, outer, count) of the precomputed reference inside the real states: every rank loads the same
        # file, so the cross-rank sum of the states counts it world-size times; _sync_dist counts it once
        self._reference_sums: Optional[tuple[Tensor, Tensor, Tensor]] = None
        if reference_statistics is not None:
            self.load_real_statistics(reference_statistics)

    @property
    def protocol(self) -> MetricProtocol:
        protocol = extractor_protocol(self.feature_extractor).with_extra(metric=self.name, estimator="Frechet, float64 streaming sums")
        return protocol if self.reference is None else protocol.with_extra(reference=self.reference)

    def update(self, images: Tensor, real: bool) -> None:
        """Add a batch of real (``real=True``) or generated images."""
        self.update_features(self.extract(images, "real images" if real else "generated images"), real)

    def update_features(self, features: Tensor, real: bool) -> None:
        """Add precomputed features ``[B, D]`` (skips the extractor)."""
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise ValueError(f"expected features of shape [B, {self.num_features}], received {tuple(features.shape)}")
        features = features.double()
        prefix = "real" if real else "fake"
        setattr(self, f"{prefix}_sum", getattr(self, f"{prefix}_sum") + features.sum(0))
        setattr(self, f"{prefix}_outer", getattr(self, f"{prefix}_outer") + features.T @ features)
        setattr(self, f"{prefix}_count", getattr(self, f"{prefix}_count") + features.shape[0])

    def statistics(self, real: bool) -> tuple[Tensor, Tensor]:
        """Mean and covariance of the real or generated features seen so far."""
        prefix = "real" if real else "fake"
        count = getattr(self, f"{prefix}_count")
        if count < 2:
            raise RuntimeError(
                f"{self.name}: need at least 2 {'real' if real else 'generated'} samples, received {int(count)}"
            )
        return gaussian_from_sums(getattr(self, f"{prefix}_sum"), getattr(self, f"{prefix}_outer"), count)

    def compute(self) -> Tensor:
        for prefix, what in (("real", "real"), ("fake", "generated")):
            count = int(getattr(self, f"{prefix}_count"))
            if 2 <= count < self.num_features:
                warnings.warn(
                    f"{self.name}: {count} {what} samples for {self.num_features}-dimensional features; the "
                    f"covariance is rank-deficient (samples < feature dims) and the value is biased. Use at least "
                    f"{self.num_features} samples (papers use 10k-50k).",
                    UserWarning,
                    stacklevel=2,
                )
        mu_r, sigma_r = self.statistics(True)
        mu_f, sigma_f = self.statistics(False)
        return frechet_distance(mu_r, sigma_r, mu_f, sigma_f)

    def _sync_dist(self, dist_sync_fn: Any = None, process_group: Optional[Any] = None) -> None:
        """Reduce the states across ranks with the reference (the same on every rank) counted once.

        The reference is taken out of the real sums before the cross-rank sum and added back after it, so
        the synced real side is the reference plus every rank's streamed real batches (none, when only
        the reference is used). Without this the summed sums give the right mean but a covariance scaled
        by ``W (n - 1) / (W n - 1)`` and a count ``W n`` (``W`` ranks, ``n`` reference samples).
        torchmetrics restores the local (unsynced) states after ``compute``.
        """
        kwargs = {} if dist_sync_fn is None else {"dist_sync_fn": dist_sync_fn}
        if self._reference_sums is None:
            super()._sync_dist(process_group=process_group, **kwargs)
            return
        names = ("real_sum", "real_outer", "real_count")
        for name, value in zip(names, self._reference_sums):
            setattr(self, name, getattr(self, name) - value.to(getattr(self, name).device))
        super()._sync_dist(process_group=process_group, **kwargs)
        for name, value in zip(names, self._reference_sums):
            setattr(self, name, getattr(self, name) + value.to(getattr(self, name).device))

    def reset(self) -> None:
        if not self.reset_real_features:
            kept = {k: getattr(self, k).clone() for k in ("real_sum", "real_outer", "real_count")}
            super().reset()
            for key, value in kept.items():
                setattr(self, key, value)
        else:
            super().reset()
            self._reference_sums = None  # the real states, reference included, are gone

    def set_real_statistics(self, mean: Tensor | np.ndarray, cov: Tensor | np.ndarray, count: int) -> None:
        """Use a precomputed reference (mean, covariance over ``count`` samples) as the real distribution.

        The sums are rebuilt from the statistics, so later real updates add to
        them exactly as if the samples had been streamed; ``reset_real_features``
        is switched off so the reference survives ``reset()``.
        """
        mean = torch.as_tensor(mean, dtype=torch.float64, device=self.real_sum.device)
        cov = torch.as_tensor(cov, dtype=torch.float64, device=self.real_sum.device)
        if mean.shape != (self.num_features,) or cov.shape != (self.num_features, self.num_features):
            raise ValueError(
                f"reference statistics must be [{self.num_features}] and [{self.num_features}, {self.num_features}], "
                f"received {tuple(mean.shape)} and {tuple(cov.shape)}"
            )
        n = float(count)
        self.real_sum = mean * n
        self.real_outer = cov * (n - 1.0) + n * torch.outer(mean, mean)
        self.real_count = torch.tensor(n, dtype=torch.float64, device=mean.device)
        self._reference_sums = (self.real_sum.clone(), self.real_outer.clone(), self.real_count.clone())
        self.reset_real_features = False

    def save_real_statistics(self, path: str) -> None:
        """Write the real statistics as ``.npz`` with ``mu``, ``sigma`` (pytorch-fid's names) and ``count``."""
        mu, sigma = self.statistics(True)
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}.npz"
        np.savez(tmp, mu=mu.cpu().numpy(), sigma=sigma.cpu().numpy(), count=int(self.real_count))
        os.replace(tmp, path)

    def load_real_statistics(self, path: str) -> None:
        """Read reference statistics from ``.npz``: ``mu``, ``sigma``, optional ``count`` (pytorch-fid's
        format, :meth:`save_real_statistics`), or ADM's reference batch (``mu``/``sigma``, or images in
        ``arr_0``, featurised here); see :mod:`metrics.reference_batch`."""
        from metrics.reference_batch import read_reference_statistics

        extract = lambda images: self.extract(images.to(self.real_sum.device), "reference images")  # noqa: E731
        mean, cov, count = read_reference_statistics(path, extract)
        self.set_real_statistics(mean, cov, count)
        self.reference = os.path.basename(path)


class KernelInceptionDistance(_FeatureMetric):
    """KID (Bińkowski et al. 2018): unbiased polynomial-kernel MMD^2 between real and generated features.

    KID has no finite sufficient statistics for its cubic kernel, so unlike FID
    it keeps the features themselves (float32, ``cat``-reduced across ranks);
    memory grows with the sample count (8 KB per 2048-d sample).
    ``compute()`` returns ``{"value": mean, "std": std}`` over the subsets.

    Args:
        feature_extractor: as for :class:`FrechetInceptionDistance`.
        num_features: feature width; inferred when ``None``.
        subsets: number of random subsets averaged.
        subset_size: size of each subset (capped by the smaller set; when it
            covers both sets the estimate is exact and deterministic).
        degree, gamma, coef: the kernel ``(gamma <x, y> + coef)^degree``;
            ``gamma=None`` means ``1 / D``.
        reset_real_features: keep real features across ``reset()`` when ``False``.
        input_range: value range inputs are checked against.
        seed: seed of the subset sampling.
        kwargs: forwarded to ``torchmetrics.Metric``.
    """

    def __init__(
        self,
        feature_extractor: FeatureSpec = "inception",
        num_features: Optional[int] = None,
        subsets: int = 100,
        subset_size: int = 1000,
        degree: int = 3,
        gamma: Optional[float] = None,
        coef: float = 1.0,
        reset_real_features: bool = True,
        input_range: Optional[tuple[float, float]] = (-1.0, 1.0),
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(feature_extractor, num_features, input_range, **kwargs)
        self.subsets, self.subset_size = int(subsets), int(subset_size)
        self.degree, self.gamma, self.coef = int(degree), gamma, float(coef)
        self.reset_real_features = reset_real_features
        self.seed = int(seed)
        self.add_state("real_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    @property
    def protocol(self) -> MetricProtocol:
        return extractor_protocol(self.feature_extractor).with_extra(
            metric="kid", subsets=self.subsets, subset_size=self.subset_size, kernel=f"poly{self.degree}"
        )

    def update(self, images: Tensor, real: bool) -> None:
        self.update_features(self.extract(images, "real images" if real else "generated images"), real)

    def update_features(self, features: Tensor, real: bool) -> None:
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise ValueError(f"expected features of shape [B, {self.num_features}], received {tuple(features.shape)}")
        (self.real_features if real else self.fake_features).append(features.float())

    @staticmethod
    def _cat(value: Any) -> Tensor:
        return torch.cat(value) if isinstance(value, list) else value

    def compute(self) -> dict[str, Tensor]:
        if not self.real_features or not self.fake_features:
            raise RuntimeError("kid: needs both real and generated samples")
        real, fake = self._cat(self.real_features), self._cat(self.fake_features)
        generator = torch.Generator().manual_seed(self.seed)
        mean, std = kernel_inception_distance(
            real.cpu(), fake.cpu(), self.subsets, self.subset_size, self.degree, self.gamma, self.coef, generator
        )
        return {"value": mean, "std": std}

    def reset(self) -> None:
        kept = None
        if not self.reset_real_features:
            real = self.real_features
            kept = list(real) if isinstance(real, list) else [real]
        super().reset()
        if kept is not None:
            self.real_features = kept


class ReconstructionFID(FrechetInceptionDistance):
    """rFID of a tokenizer / autoencoder: FID between inputs (real) and their reconstructions.

    ``update(inputs, reconstructions)`` feeds both sides; arguments as for
    :class:`FrechetInceptionDistance`.
    """

    def __init__(self, feature_extractor: FeatureSpec = "inception", **kwargs: Any) -> None:
        kwargs.setdefault("name", "rfid")
        super().__init__(feature_extractor, **kwargs)

    def update(self, inputs: Tensor, reconstructions: Tensor) -> None:  # type: ignore[override]
        if inputs.shape != reconstructions.shape:
            raise ValueError(
                f"inputs and reconstructions must have the same shape, received {tuple(inputs.shape)} "
                f"and {tuple(reconstructions.shape)}"
            )
        super().update(inputs, real=True)
        super().update(reconstructions, real=False)


__all__ = ["FrechetInceptionDistance", "KernelInceptionDistance", "ReconstructionFID", "infer_num_features"]

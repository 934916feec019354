"""SSIM border convention: the suite (= scikit-image) vs torchmetrics 1.9 (metrics/image_quality.py docstring)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from metrics.image_quality import StructuralSimilarityIndexMeasure, ssim_map


def test_interior_equals_torchmetrics_and_mean_equals_skimage() -> None:
    from skimage.metrics import structural_similarity
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    gen = torch.Generator().manual_seed(4)
    a = torch.rand(3, 3, 24, 20, generator=gen, dtype=torch.float64)
    b = (a + 0.3 * torch.randn(a.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    tm_mean, tm_full = tm_ssim(a, b, data_range=1.0, reduction="none", return_full_image=True)
    ours = ssim_map(a, b)
    assert tm_full.shape[-2:] == a.shape[-2:] and ours.shape[-2:] == (24 - 10, 20 - 10)
    assert torch.allclose(tm_full[..., 5:-5, 5:-5], ours, atol=1e-12, rtol=0)  # same map inside
    per_image = ours.mean(dim=(1, 2, 3))
    # torchmetrics' mean includes the reflect-padded border: a different number at this size
    assert (tm_mean - per_image).abs().min() > 1e-3
    metric = StructuralSimilarityIndexMeasure()
    metric.update(a * 2 - 1, b * 2 - 1)
    sk = np.mean([structural_similarity(b[i].numpy(), a[i].numpy(), data_range=1, channel_axis=0,
                                        gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
                  for i in range(3)])
    assert float(metric.compute()) == pytest.approx(sk, rel=1e-9)

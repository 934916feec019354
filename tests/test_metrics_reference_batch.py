"""ADM reference batches as FID reference statistics (thesis 000 Ch. 7 §7.5; openai/guided-diffusion's layout)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from metrics.fid import FrechetInceptionDistance


class PooledProjection(nn.Module):
    """A fixed random projection of 4x4-pooled pixels: a cheap deterministic stand-in extractor."""

    num_features = 6

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(48, 6)
        with torch.no_grad():
            generator = torch.Generator().manual_seed(7)
            self.proj.weight.copy_(torch.randn(6, 48, generator=generator))
            self.proj.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(nn.functional.adaptive_avg_pool2d(x.float(), 4).flatten(1))


def adm_images(n: int, seed: int) -> np.ndarray:
    """uint8 NHWC images in [0, 255], ADM's `arr_0` layout."""
    return np.random.default_rng(seed).integers(0, 256, size=(n, 16, 16, 3), dtype=np.uint8)


def fakes() -> torch.Tensor:
    return torch.rand(30, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 1.6 - 0.8


def test_adm_images_only_batch_equals_streaming_the_same_images(tmp_path: Path):
    images = adm_images(40, 0)
    path = tmp_path / "VIRTUAL_tiny_labeled.npz"
    np.savez(path, arr_0=images, arr_1=np.arange(40) % 4)  # images + labels, no statistics
    net = PooledProjection()
    loaded = FrechetInceptionDistance(net, reference_statistics=str(path))
    streamed = FrechetInceptionDistance(net)
    as_unit = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    streamed.update(as_unit, real=True)
    with torch.no_grad():
        feats = net(as_unit).double().numpy()
    mu, sigma = loaded.statistics(True)
    assert np.allclose(mu.numpy(), feats.mean(0)) and np.allclose(sigma.numpy(), np.cov(feats, rowvar=False))  # ADM's estimator
    assert int(loaded.real_count) == 40 and loaded.protocol.extra["reference"] == path.name
    for metric in (loaded, streamed):
        metric.update(fakes(), real=False)
    assert float(loaded.compute()) == pytest.approx(float(streamed.compute()), rel=1e-9)
    assert loaded.reset_real_features is False  # the evaluation callback then streams no real batches


def test_adm_precomputed_mu_sigma_win_over_the_images(tmp_path: Path):
    rng = np.random.default_rng(1)
    a = rng.normal(size=(6, 6))
    mu, sigma = rng.normal(size=6), a @ a.T + np.eye(6)
    path = tmp_path / "ref.npz"
    np.savez(path, arr_0=adm_images(10, 2), mu=mu, sigma=sigma, mu_s=np.zeros(3), sigma_s=np.eye(3))
    metric = FrechetInceptionDistance(PooledProjection(), reference_statistics=str(path))
    got_mu, got_sigma = metric.statistics(True)
    assert np.allclose(got_mu.numpy(), mu) and np.allclose(got_sigma.numpy(), sigma)


@pytest.mark.parametrize("arrays, error, match", [
    ({"mu": np.zeros(6)}, KeyError, r"missing arrays \['sigma'\]"),
    ({"arr_1": np.zeros(3)}, KeyError, "neither `mu`/`sigma` nor ADM's `arr_0`"),
    ({"arr_0": np.zeros((4, 16, 16, 3), dtype=np.float32)}, ValueError, "arr_0` must be uint8"),
])
def test_bad_reference_files_name_the_problem(tmp_path: Path, arrays, error, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(error, match=match):
        FrechetInceptionDistance(PooledProjection(), reference_statistics=str(path))
    with pytest.raises(FileNotFoundError, match="VIRTUAL_imagenet256_labeled.npz"):
        FrechetInceptionDistance(PooledProjection(), reference_statistics=str(tmp_path / "none.npz"))

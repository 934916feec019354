"""FID / KID / rFID: agreement with pytorch-fid, clean-fid and torchmetrics; streaming; bad input."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from metrics.fid import FrechetInceptionDistance, KernelInceptionDistance, ReconstructionFID
from metrics.frechet import frechet_distance, gaussian_from_sums

FEATURES = 16


class TinyFeatures(nn.Module):
    """A fixed random projection of 4x4-pooled pixels: a cheap, deterministic feature extractor."""

    num_features = FEATURES

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(123)
        self.proj = nn.Linear(3 * 16, FEATURES)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(FEATURES, 48, generator=generator))
            self.proj.bias.copy_(torch.randn(FEATURES, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        return torch.tanh(self.proj(nn.functional.adaptive_avg_pool2d(x, 4).flatten(1))) + x.flatten(1)[:, :FEATURES] ** 2


def _images(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, 16, 16, generator=g) * 2 - 1 + shift).clamp(-1, 1)


def _np_stats(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    f = features.double().numpy()
    return f.mean(0), np.cov(f, rowvar=False)


def test_frechet_matches_pytorch_fid_and_clean_fid() -> None:
    from cleanfid.fid import frechet_distance as cleanfid_frechet
    from pytorch_fid.fid_score import calculate_frechet_distance

    g = torch.Generator().manual_seed(0)
    a = torch.randn(300, FEATURES, generator=g, dtype=torch.float64)
    b = torch.randn(300, FEATURES, generator=g, dtype=torch.float64) @ torch.randn(FEATURES, FEATURES, generator=g, dtype=torch.float64) * 0.5 + 0.3
    (mu1, s1), (mu2, s2) = _np_stats(a), _np_stats(b)
    ours = float(frechet_distance(torch.from_numpy(mu1), torch.from_numpy(s1), torch.from_numpy(mu2), torch.from_numpy(s2)))
    assert ours == pytest.approx(calculate_frechet_distance(mu1, s1, mu2, s2), rel=1e-3)
    assert ours == pytest.approx(cleanfid_frechet(mu1, s1, mu2, s2), rel=1e-3)


def test_fid_and_kid_match_torchmetrics_and_references_on_the_same_network() -> None:
    from cleanfid.fid import kernel_distance
    from pytorch_fid.fid_score import calculate_frechet_distance
    from torchmetrics.image.fid import FrechetInceptionDistance as TMFID
    from torchmetrics.image.kid import KernelInceptionDistance as TMKID

    net = TinyFeatures()
    real, fake = _images(64, 1), _images(64, 2, shift=0.3)
    ours = FrechetInceptionDistance(net)
    ours.update(real, real=True)
    ours.update(fake, real=False)
    theirs = TMFID(feature=net)
    theirs.update(real, real=True)
    theirs.update(fake, real=False)
    value = float(ours.compute())
    assert value > 0.01
    assert value == pytest.approx(float(theirs.compute()), rel=1e-3)
    with torch.no_grad():
        fr, ff = net(real), net(fake)
    (mu1, s1), (mu2, s2) = _np_stats(fr), _np_stats(ff)
    assert value == pytest.approx(calculate_frechet_distance(mu1, s1, mu2, s2), rel=1e-3)

    kid = KernelInceptionDistance(net, subset_size=64)
    kid.update(real, real=True)
    kid.update(fake, real=False)
    tm_kid = TMKID(feature=net, subsets=1, subset_size=64)
    tm_kid.update(real, real=True)
    tm_kid.update(fake, real=False)
    ours_kid = float(kid.compute()["value"])
    assert ours_kid == pytest.approx(float(tm_kid.compute()[0]), rel=1e-3)
    assert ours_kid == pytest.approx(float(kernel_distance(fr.double().numpy(), ff.double().numpy(), num_subsets=1, max_subset_size=64)), rel=1e-3)


def test_streaming_equals_all_at_once_and_identical_sets_give_zero() -> None:
    net = TinyFeatures()
    real, fake = _images(60, 3), _images(60, 4, shift=-0.2)
    once, streamed = FrechetInceptionDistance(net), FrechetInceptionDistance(net)
    once.update(real, True)
    once.update(fake, False)
    for chunk in real.split(7):
        streamed.update(chunk, True)
    for chunk in fake.split(11):
        streamed.update(chunk, False)
    assert float(streamed.compute()) == pytest.approx(float(once.compute()), rel=1e-6)  # float32 features vary by batch size
    same = FrechetInceptionDistance(net)
    same.update(real, True)
    same.update(real, False)
    assert abs(float(same.compute())) < 1e-6
    kid_same, kid_diff = KernelInceptionDistance(net, subset_size=60), KernelInceptionDistance(net, subset_size=60)
    kid_same.update(real, True)
    kid_same.update(real, False)
    kid_diff.update(real, True)
    kid_diff.update(fake, False)
    same_value, diff_value = float(kid_same.compute()["value"]), float(kid_diff.compute()["value"])
    assert abs(same_value) < 0.1 * diff_value  # the unbiased estimator is ~0 (slightly negative) on identical sets


def test_state_memory_does_not_grow_with_samples() -> None:
    net = TinyFeatures()

    def state_bytes(n: int) -> int:
        metric = FrechetInceptionDistance(net)
        for chunk in _images(n, 5).split(50):
            metric.update(chunk, True)
        return sum(getattr(metric, k).numel() * getattr(metric, k).element_size() for k in metric._defaults)

    assert state_bytes(50) == state_bytes(500)


def test_warns_with_fewer_samples_than_feature_dims() -> None:
    metric = FrechetInceptionDistance(TinyFeatures())
    metric.update(_images(8, 6), True)
    metric.update(_images(8, 7), False)
    with pytest.warns(UserWarning, match=r"8 real samples for 16-dimensional features"):
        metric.compute()


@pytest.mark.parametrize(
    "images, error, pattern",
    [
        (torch.zeros(2, 3, 16, 16, dtype=torch.uint8), TypeError, r"floating-point tensor with values in \[-1.0, 1.0\], received dtype torch.uint8"),
        (torch.full((2, 3, 16, 16), 200.0), ValueError, r"expected values in \[-1.0, 1.0\], received values in \[200, 200\]"),
        (torch.zeros(3, 16, 16), ValueError, r"expected shape \[B, C, H, W\], received shape \(3, 16, 16\)"),
    ],
)
def test_bad_inputs_name_expected_and_received(images: torch.Tensor, error: type, pattern: str) -> None:
    metric = FrechetInceptionDistance(TinyFeatures())
    with pytest.raises(error, match=pattern):
        metric.update(images, real=True)


def test_reference_statistics_roundtrip(tmp_path) -> None:
    net = TinyFeatures()
    real, fake = _images(40, 8), _images(40, 9, shift=0.2)
    full = FrechetInceptionDistance(net)
    full.update(real, True)
    full.update(fake, False)
    path = str(tmp_path / "ref.npz")
    full.save_real_statistics(path)
    fresh = FrechetInceptionDistance(net)
    fresh.load_real_statistics(path)
    fresh.update(fake, False)
    assert float(fresh.compute()) == pytest.approx(float(full.compute()), rel=1e-9)
    fresh.reset()  # the fixed reference survives a reset
    fresh.update(fake, False)
    assert float(fresh.compute()) == pytest.approx(float(full.compute()), rel=1e-9)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        fresh.load_real_statistics(str(tmp_path / "missing.npz"))


def test_gaussian_from_sums_is_numpy_cov() -> None:
    x = torch.randn(30, 5, dtype=torch.float64)
    mean, cov = gaussian_from_sums(x.sum(0), x.T @ x, 30)
    np.testing.assert_allclose(cov.numpy(), np.cov(x.numpy(), rowvar=False), rtol=1e-10)
    np.testing.assert_allclose(mean.numpy(), x.numpy().mean(0), rtol=1e-12)


def test_reconstruction_fid() -> None:
    net = TinyFeatures()
    x = _images(40, 10)
    rfid = ReconstructionFID(net)
    rfid.update(x, x)
    assert abs(float(rfid.compute())) < 1e-6
    rfid.update(x[:20], (x[:20] * 0.5).clamp(-1, 1))
    assert float(rfid.compute()) > 0
    with pytest.raises(ValueError, match="same shape"):
        rfid.update(x[:2], x[:3])


def test_digits_classifier_features_train_cache_and_separate_digits(tmp_path, monkeypatch) -> None:
    from datamodules.embedded import load_digits_images
    from metrics.digits_classifier import CACHE_FILE_NAME, DigitsClassifierFeatures

    monkeypatch.setenv("GENMODELS_CACHE_DIR", str(tmp_path))
    features = DigitsClassifierFeatures(epochs=1)  # one epoch reaches ~0.89 held-out accuracy
    assert (tmp_path / CACHE_FILE_NAME).is_file()
    assert not list(tmp_path.glob(".tmp-*"))  # atomic write leaves no temporary file
    assert features.meta["holdout_accuracy"] > 0.8
    again = DigitsClassifierFeatures(train_if_missing=False)  # loads the cache, no training
    assert again.weights_identity == features.weights_identity
    images, labels = load_digits_images(32)
    fid = FrechetInceptionDistance(features)
    zeros, ones = images[labels == 0][:150], images[labels == 1][:150]
    fid.update(zeros[:75], True)
    fid.update(zeros[75:], False)
    within = float(fid.compute())
    fid.reset()
    fid.update(zeros[:75], True)
    fid.update(ones[:75], False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert float(fid.compute()) > 3 * within
    with pytest.raises(FileNotFoundError, match="weights_path.*digits_classifier.pt"):
        DigitsClassifierFeatures(weights_path=str(tmp_path / "nope" / "x.pt"), train_if_missing=False)


def test_states_reduce_like_two_ranks() -> None:
    """Two metrics fed halves and merged with their ``dist_reduce_fx`` equal one metric fed everything
    (the reduction DDP applies at ``compute``)."""
    net = TinyFeatures()
    real, fake = _images(40, 11), _images(40, 12, shift=0.25)
    whole_fid, whole_kid = FrechetInceptionDistance(net), KernelInceptionDistance(net, subset_size=40)
    ranks = [(FrechetInceptionDistance(net), KernelInceptionDistance(net, subset_size=40)) for _ in range(2)]
    for metric in (whole_fid, whole_kid):
        metric.update(real, True)
        metric.update(fake, False)
    for i, (fid, kid) in enumerate(ranks):
        for metric in (fid, kid):
            metric.update(real[i::2], True)
            metric.update(fake[i::2], False)
    ranks[0][0].merge_state(ranks[1][0])
    ranks[0][1].merge_state(ranks[1][1])
    assert float(ranks[0][0].compute()) == pytest.approx(float(whole_fid.compute()), rel=1e-6)
    assert float(ranks[0][1].compute()["value"]) == pytest.approx(float(whole_kid.compute()["value"]), rel=1e-6)


def test_non_finite_features_give_nan_with_a_warning_not_a_solver_error() -> None:
    """A diverged model's NaN samples must not crash an in-training FID (the NaN guard stops runs, not metrics)."""
    import math
    import warnings

    from metrics.frechet import frechet_distance

    mu, cov = torch.zeros(4, dtype=torch.float64), torch.eye(4, dtype=torch.float64)
    bad = cov.clone()
    bad[0, 0] = float("nan")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = frechet_distance(mu, cov, mu, bad)
    assert math.isnan(float(value)) and any("not finite" in str(w.message) for w in caught)
    assert float(frechet_distance(mu, cov, mu + 1.0, cov)) == pytest.approx(4.0)

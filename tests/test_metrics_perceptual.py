"""LPIPS equals the lpips package; SSIM / PSNR equal torchmetrics and scikit-image; masked variants."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from metrics.image_quality import MaskedPSNR, MaskedSSIM, PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure
from metrics.perceptual import LearnedPerceptualImagePatchSimilarity, LPIPSNetwork, MaskedLPIPS


def _pair(n: int = 3, size: int = 32, noise: float = 0.3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    return a, (a + noise * torch.randn(a.shape, generator=g)).clamp(-1, 1)


def _copy_backbone(reference, ours: LPIPSNetwork) -> None:
    """lpips keeps torchvision's layer indices inside its slices: ``slice2.3.weight`` is ``features.3.weight``."""
    state = {f"{k.split('.', 2)[1]}.{k.split('.', 2)[2]}": v for k, v in reference.net.state_dict().items()}
    ours.features.load_state_dict(state)


@pytest.mark.parametrize("net", ["alex", "squeeze", "vgg"])
def test_lpips_equals_lpips_package_with_same_random_backbone(net: str) -> None:
    import lpips

    reference = lpips.LPIPS(pnet_rand=True, net=net, verbose=False)
    ours = LPIPSNetwork(net)
    _copy_backbone(reference, ours)
    a, b = _pair()
    metric = LearnedPerceptualImagePatchSimilarity(network=ours)
    metric.update(a, b)
    with torch.no_grad():
        expected = reference(a, b).flatten()
        torch.testing.assert_close(ours(a, b), expected, rtol=1e-5, atol=1e-6)
    assert float(metric.compute()) == pytest.approx(float(expected.mean()), rel=1e-5)
    assert metric.protocol.random_weights


def test_masked_lpips_uses_the_spatial_map() -> None:
    import lpips

    reference = lpips.LPIPS(pnet_rand=True, net="alex", spatial=True, verbose=False)
    ours = LPIPSNetwork("alex")
    _copy_backbone(reference, ours)
    a, b = _pair(2)
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:24, 4:20] = 1
    metric = MaskedLPIPS(network=ours)
    metric.update(a, b, mask)
    with torch.no_grad():
        spatial = reference(a, b)
    expected = ((spatial * mask).sum((1, 2, 3)) / mask.sum((1, 2, 3))).mean()
    assert float(metric.compute()) == pytest.approx(float(expected), rel=1e-5)


def test_lpips_missing_backbone_file_names_key_and_source(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"backbone_weights.*alexnet-owt-7be5be79.pth.*download.pytorch.org"):
        LPIPSNetwork("alex", backbone_weights=str(tmp_path / "alexnet.pth"))


def _unit(x: torch.Tensor) -> np.ndarray:
    return ((x + 1) / 2).double().numpy()


def test_ssim_matches_torchmetrics_and_skimage() -> None:
    from skimage.metrics import structural_similarity
    from torchmetrics.image import StructuralSimilarityIndexMeasure as TMSSIM

    a, b = _pair()
    ours = StructuralSimilarityIndexMeasure()
    ours.update(a, b)
    tm = TMSSIM(data_range=1.0)
    tm.update((a + 1) / 2, (b + 1) / 2)
    sk = np.mean([structural_similarity(_unit(b[i]), _unit(a[i]), data_range=1, channel_axis=0, gaussian_weights=True,
                                        sigma=1.5, use_sample_covariance=False) for i in range(len(a))])
    assert float(ours.compute()) == pytest.approx(float(tm.compute()), rel=1e-3)
    assert float(ours.compute()) == pytest.approx(sk, rel=1e-6)
    uniform = StructuralSimilarityIndexMeasure(kernel_size=7, gaussian=False, sample_covariance=True)
    uniform.update(a, b)
    sk_uniform = np.mean([structural_similarity(_unit(b[i]), _unit(a[i]), data_range=1, channel_axis=0, win_size=7)
                          for i in range(len(a))])
    assert float(uniform.compute()) == pytest.approx(sk_uniform, rel=1e-6)


def test_ssim_pred_range_is_the_cfld_authors_ssim_256() -> None:
    """CFLD ``models/metrics.py``: skimage on x255 images, Gaussian sigma 1.5, ``data_range = pred.max - pred.min``."""
    from skimage.metrics import structural_similarity

    a, b = _pair()
    a = a * 0.6 - 0.2  # predictions that do not span the full range: the two data ranges differ
    metric = StructuralSimilarityIndexMeasure(kernel_size=11, sigma=1.5, gaussian=True, sample_covariance=False,
                                              data_range="pred_range")
    metric.update(a, b)
    expected = []
    for i in range(len(a)):
        gt, pred = _unit(b[i]) * 255.0, _unit(a[i]) * 255.0
        expected.append(structural_similarity(gt, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                              channel_axis=0, data_range=pred.max() - pred.min()))
    assert float(metric.compute()) == pytest.approx(float(np.mean(expected)), rel=1e-6)
    unit_range = StructuralSimilarityIndexMeasure()
    unit_range.update(a, b)
    assert abs(float(unit_range.compute()) - float(np.mean(expected))) > 1e-4, "data_range=1 is a different number"
    with pytest.raises(ValueError, match="pred_range"):
        StructuralSimilarityIndexMeasure(data_range="target_range")


def test_psnr_matches_torchmetrics_and_skimage() -> None:
    from skimage.metrics import peak_signal_noise_ratio
    from torchmetrics.image import PeakSignalNoiseRatio as TMPSNR

    a, b = _pair()
    ours = PeakSignalNoiseRatio()
    ours.update(a, b)
    tm = TMPSNR(data_range=1.0, reduction="elementwise_mean", dim=(1, 2, 3))
    tm.update((a + 1) / 2, (b + 1) / 2)
    sk = np.mean([peak_signal_noise_ratio(_unit(a[i]), _unit(b[i]), data_range=1) for i in range(len(a))])
    assert float(ours.compute()) == pytest.approx(float(tm.compute()), rel=1e-4)
    assert float(ours.compute()) == pytest.approx(sk, rel=1e-9)
    same = PeakSignalNoiseRatio()
    same.update(a, a)
    assert float(same.compute()) == 100.0  # capped, not inf


def test_masked_psnr_and_ssim_score_only_the_mask() -> None:
    a, b = _pair(2)
    mask = torch.zeros(2, 32, 32)
    mask[:, 10:30, 5:25] = 1
    outside = torch.where(mask.bool().unsqueeze(1), a, b)  # equal to `a` inside the mask, different outside
    psnr = MaskedPSNR()
    psnr.update(outside, a, mask)
    assert float(psnr.compute()) == 100.0
    full = MaskedPSNR()
    full.update(b, a, torch.ones(2, 32, 32))
    plain = PeakSignalNoiseRatio()
    plain.update(b, a)
    assert float(full.compute()) == pytest.approx(float(plain.compute()), rel=1e-12)
    ssim = MaskedSSIM()
    ssim.update(b, a, torch.ones(2, 32, 32))
    plain_ssim = StructuralSimilarityIndexMeasure()
    plain_ssim.update(b, a)
    assert float(ssim.compute()) == pytest.approx(float(plain_ssim.compute()), rel=1e-12)
    empty = MaskedPSNR()
    empty.update(b, a, torch.zeros(2, 32, 32))
    assert int(empty.empty_masks) == 2


def test_pair_metrics_reject_bad_inputs() -> None:
    a, b = _pair(2)
    with pytest.raises(ValueError, match=r"same shape, received \(2, 3, 32, 32\) and \(1, 3, 32, 32\)"):
        PeakSignalNoiseRatio().update(a, b[:1])
    with pytest.raises(ValueError, match=r"expected values in \[-1.0, 1.0\], received values in \[0, 255\]"):
        StructuralSimilarityIndexMeasure().update(torch.linspace(0, 255, 2 * 3 * 32 * 32).view(2, 3, 32, 32), b)
    with pytest.raises(ValueError, match=r"mask: expected shape \(2, 1, 32, 32\)"):
        MaskedPSNR().update(a, b, torch.ones(2, 16, 16))

"""The ISTD-literature region metrics (thesis 001 Ch. 7 §7.4.1) against scikit-image on real photo pairs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.color import rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from datamodules.lfg_shadow.synshadow import cast_shadows
from datamodules.photos import load_skimage_photo
from metrics.region_rmse import LabRegionRMSE
from metrics.shadow_regions import RegionPSNR, RegionSSIM


def _pairs() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(prediction, ground truth, mask) as uint8 / {0,1}: a shadowed and a blurred-and-tinted real photo."""
    out = []
    for index, name in enumerate(("astronaut", "chelsea")):
        photo = load_skimage_photo(name)[:256, :256].astype(np.float32) / 255.0
        shadow, mask, _ = cast_shadows(photo, np.random.default_rng(index))
        if index == 1:  # a "restored" image that is close but not equal to the ground truth
            shadow = np.clip(ndimage.gaussian_filter(photo, sigma=(1.0, 1.0, 0)) * np.array([1.02, 0.97, 1.0]), 0, 1)
        out.append(((shadow * 255).round().astype(np.uint8), (photo * 255).round().astype(np.uint8), mask))
    return out


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].double() / 127.5 - 1.0


def test_region_metrics_agree_with_scikit_image_lab_psnr_ssim() -> None:
    pairs = _pairs()
    lab, psnr, ssim = LabRegionRMSE(resize=256), RegionPSNR(resize=256), RegionSSIM(resize=256)
    sums = {r: 0.0 for r in ("shadow", "non_shadow", "all")}
    counts = dict(sums)
    ref_psnr = {r: [] for r in sums}
    ref_ssim = {r: [] for r in sums}
    for pred, gt, mask in pairs:
        assert 0 < mask.mean() < 1
        p, g = pred.astype(np.float64) / 255.0, gt.astype(np.float64) / 255.0
        per_pixel = np.abs(rgb2lab(p) - rgb2lab(g)).sum(-1)
        for region, weights in (("shadow", mask), ("non_shadow", 1 - mask), ("all", np.ones_like(mask))):
            sums[region] += float((per_pixel * weights).sum())
            counts[region] += float(weights.sum())
            w = weights[..., None]
            ref_psnr[region].append(peak_signal_noise_ratio(g * w, p * w, data_range=1.0))
            ref_ssim[region].append(structural_similarity(g * w, p * w, data_range=1.0, channel_axis=2, gaussian_weights=True,
                                                          sigma=1.5, use_sample_covariance=False))
        m = torch.from_numpy(mask)[None, None]
        for metric in (lab, psnr, ssim):
            metric.update(_tensor(pred), _tensor(gt), m)
    ours_lab, ours_psnr, ours_ssim = lab.compute(), psnr.compute(), ssim.compute()
    for region in sums:
        assert float(ours_lab[region]) == pytest.approx(sums[region] / counts[region], rel=1e-6)
        assert float(ours_psnr[region]) == pytest.approx(np.mean(ref_psnr[region]), rel=1e-6)
        assert float(ours_ssim[region]) == pytest.approx(np.mean(ref_ssim[region]), abs=1e-6)
    assert float(ours_lab["shadow"]) > float(ours_lab["non_shadow"]), "the shadowed pair differs inside its mask"
    assert "MAE" in lab.protocol.extra["quantity"], "the LAB number is named for what it is"


def test_region_metrics_resize_masks_nearest_and_reject_bad_masks() -> None:
    pred, gt, mask = _pairs()[0]
    metric = RegionPSNR(resize=128)
    metric.update(_tensor(pred), _tensor(gt), torch.from_numpy(mask)[None, None])
    assert np.isfinite(float(metric.compute()["shadow"]))
    with pytest.raises(ValueError, match="mask"):
        RegionSSIM().update(_tensor(pred), _tensor(gt), torch.ones(1, 1, 10, 10))

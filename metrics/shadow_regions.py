"""RGB PSNR and SSIM per shadow region, as the ISTD-literature evaluation script computes them (thesis 001 Ch. 7 §7.4.1).

The thesis reports "RMSE ... in the LAB color space as well as PSNR and SSIM in the RGB space" for
the shadow region, the non-shadow region and the whole image, at 256x256 (Tables 7.1-7.4). The
LAB number is :class:`metrics.region_rmse.LabRegionRMSE` (a per-pixel MAE summed over L, a, b,
pooled over the test set, that the literature calls "RMSE"). PSNR and SSIM follow the MATLAB
script the shadow-removal papers share ([EXT]; e.g. ShadowFormer's ``measure_shadow.m``):

* region images are the images with the pixels outside the region set to 0
  (``s .* repmat(mask, [1 1 3])``), and PSNR / SSIM are computed on those whole 256x256 images, per
  image, then averaged over images;
* the shadow region is the dataset's mask as given (nonzero = shadow, binarised, *not* the
  k = 21 dilated model input), the non-shadow region its complement, "all" the whole image.

PSNR uses the MSE over all pixels and channels on the [0, 1] scale. SSIM is the Gaussian
(11x11, sigma 1.5) SSIM averaged over channels ([GAP]: MATLAB's ``ssim`` on an ``H x W x 3``
array filters it as a volume; the per-channel mean is scikit-image's ``channel_axis`` convention,
which ``tests/test_lfg_shadow_metrics.py`` checks against).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from metrics.image_quality import ssim_map
from metrics.protocol import MetricProtocol
from metrics.validation import check_images, check_mask, check_same_shape

REGIONS = ("shadow", "non_shadow", "all")


class _RegionMetric(Metric):
    is_differentiable = False
    full_state_update = False
    higher_is_better = True

    def __init__(self, resize: Optional[int] = 256, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resize = resize
        for region in REGIONS:
            self.add_state(f"{region}_total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{region}_count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def _value(self, preds: Tensor, target: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self, preds: Tensor, target: Tensor, shadow_mask: Tensor) -> None:
        check_images(preds, "preds", channels=(3,))
        check_images(target, "target", channels=(3,))
        check_same_shape(preds, target)
        mask = (check_mask(shadow_mask, preds) > 0.5).double()
        if self.resize is not None and tuple(preds.shape[-2:]) != (self.resize, self.resize):
            size = (self.resize, self.resize)
            preds = F.interpolate(preds.float(), size=size, mode="bicubic", align_corners=False, antialias=True)
            target = F.interpolate(target.float(), size=size, mode="bicubic", align_corners=False, antialias=True)
            mask = F.interpolate(mask, size=size, mode="nearest")
        p = ((preds.double().clamp(-1, 1) + 1) * 0.5)
        t = ((target.double().clamp(-1, 1) + 1) * 0.5)
        for region, weights in (("shadow", mask), ("non_shadow", 1.0 - mask), ("all", torch.ones_like(mask))):
            values = self._value(p * weights, t * weights)
            setattr(self, f"{region}_total", getattr(self, f"{region}_total") + values.sum())
            setattr(self, f"{region}_count", getattr(self, f"{region}_count") + values.numel())

    def compute(self) -> dict[str, Tensor]:
        return {r: getattr(self, f"{r}_total") / getattr(self, f"{r}_count").clamp_min(1) for r in REGIONS}


class RegionPSNR(_RegionMetric):
    """``update(preds, target, shadow_mask)`` -> mean per-image PSNR (dB) per region (module docstring).

    Args:
        resize: side images are brought to before scoring (256; ``None`` = as given).
        max_db: cap for identical region images (MSE 0).
    """

    def __init__(self, resize: Optional[int] = 256, max_db: float = 100.0, **kwargs: Any) -> None:
        super().__init__(resize, **kwargs)
        self.max_db = float(max_db)

    @property
    def protocol(self) -> MetricProtocol:
        return MetricProtocol(evaluator="region_psnr", resize=f"{self.resize}x{self.resize} (bicubic; masks nearest)" if self.resize else "none",
                              extra={"regions": "pixels outside the region zeroed (ISTD script)", "data_range": "[0,1]",
                                     "reduction": "mean of per-image PSNR", "colour": "RGB"})

    def _value(self, preds: Tensor, target: Tensor) -> Tensor:
        mse = ((preds - target) ** 2).flatten(1).mean(1)
        return (10.0 * torch.log10(1.0 / mse.clamp_min(1e-300))).clamp_max(self.max_db)


class RegionSSIM(_RegionMetric):
    """``update(preds, target, shadow_mask)`` -> mean per-image SSIM per region (module docstring)."""

    @property
    def protocol(self) -> MetricProtocol:
        return MetricProtocol(evaluator="region_ssim", resize=f"{self.resize}x{self.resize} (bicubic; masks nearest)" if self.resize else "none",
                              extra={"regions": "pixels outside the region zeroed (ISTD script)", "window": "gaussian 11, sigma 1.5",
                                     "channels": "mean of per-channel SSIM", "colour": "RGB"})

    def _value(self, preds: Tensor, target: Tensor) -> Tensor:
        return ssim_map(preds, target, 1.0).flatten(1).mean(1)


__all__ = ["REGIONS", "RegionPSNR", "RegionSSIM"]

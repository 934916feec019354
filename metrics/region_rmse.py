"""Region error in CIE LAB for shadow removal (thesis 001, Ch. 7 §7.6: shadow / non-shadow / all).

The ISTD-literature evaluation script (which the shadow-removal papers and
the chapter's public notebook use) computes, per region, the **sum over the
L, a, b channels of the absolute error at each pixel, accumulated over the
whole test set and divided by the number of region pixels**, and reports it
as "RMSE". That is the default here (``error="abs", channel_reduction="sum",
aggregate="pixels"``); ``error="squared"`` gives a true root-mean-square error
instead. Images are resized to 256x256 first (the chapter's protocol).

The sRGB -> LAB conversion is written here (D65 white, 2° observer), matching
``skimage.color.rgb2lab``.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from metrics.protocol import MetricProtocol
from metrics.validation import check_images, check_mask, check_same_shape

_XYZ_FROM_RGB = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]],
    dtype=torch.float64,
)
_D65 = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """sRGB ``[B, 3, H, W]`` in ``[0, 1]`` -> CIE LAB (L in [0, 100]), float64, as ``skimage.color.rgb2lab``."""
    x = rgb.double()
    linear = torch.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)
    xyz = torch.einsum("ij,bjhw->bihw", _XYZ_FROM_RGB.to(x.device), linear)
    xyz = xyz / _D65.to(x.device).view(1, 3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(0) ** (1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)


class LabRegionRMSE(Metric):
    """LAB error in the shadow region, the non-shadow region and the whole image.

    ``update(preds, target, shadow_mask)``: RGB images ``[B, 3, H, W]`` in
    ``[-1, 1]`` and the shadow mask ``[B, 1, H, W]`` / ``[B, H, W]`` in {0, 1}.
    ``compute()`` returns ``{"shadow", "non_shadow", "all"}``.

    Args:
        resize: side to resize images (bilinear, antialiased) and masks
            (nearest) to before scoring; 256 in the chapter, ``None`` = as given.
        error: ``"abs"`` (the ISTD script's MAE, called RMSE) or ``"squared"``
            (square root of the mean squared error).
        channel_reduction: ``"sum"`` over L, a, b per pixel (ISTD script) or ``"mean"``.
        aggregate: ``"pixels"`` pools all region pixels of the data set
            (ISTD script); ``"images"`` averages per-image values.
        kwargs: forwarded to ``torchmetrics.Metric``.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    REGIONS = ("shadow", "non_shadow", "all")

    def __init__(
        self,
        resize: Optional[int] = 256,
        error: Literal["abs", "squared"] = "abs",
        channel_reduction: Literal["sum", "mean"] = "sum",
        aggregate: Literal["pixels", "images"] = "pixels",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.resize, self.error, self.channel_reduction, self.aggregate = resize, error, channel_reduction, aggregate
        for region in self.REGIONS:
            self.add_state(f"{region}_error", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{region}_count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def protocol(self) -> MetricProtocol:
        return MetricProtocol(
            evaluator="lab_region_error",
            resize=f"{self.resize}x{self.resize} (bilinear; masks nearest)" if self.resize else "none",
            extra={"error": self.error, "channel_reduction": self.channel_reduction, "aggregate": self.aggregate,
                   "colour": "sRGB->LAB D65",
                   "quantity": ("per-pixel MAE in LAB (the ISTD script's 'RMSE')" if self.error == "abs"
                                else "root-mean-square error in LAB")},
        )

    def update(self, preds: Tensor, target: Tensor, shadow_mask: Tensor) -> None:
        check_images(preds, "preds", channels=(3,))
        check_images(target, "target", channels=(3,))
        check_same_shape(preds, target)
        mask = check_mask(shadow_mask, preds)
        if self.resize is not None and tuple(preds.shape[-2:]) != (self.resize, self.resize):
            size = (self.resize, self.resize)
            preds = F.interpolate(preds.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
            target = F.interpolate(target.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
            mask = F.interpolate(mask, size=size, mode="nearest")
        lab_p = rgb_to_lab(((preds.clamp(-1, 1) + 1) * 0.5))
        lab_t = rgb_to_lab(((target.clamp(-1, 1) + 1) * 0.5))
        diff = (lab_p - lab_t).abs() if self.error == "abs" else (lab_p - lab_t) ** 2
        per_pixel = diff.sum(1) if self.channel_reduction == "sum" else diff.mean(1)  # [B, H, W]
        m = mask[:, 0].double()
        regions = {"shadow": m, "non_shadow": 1.0 - m, "all": torch.ones_like(m)}
        for region, weights in regions.items():
            err = (per_pixel * weights).sum((1, 2))
            cnt = weights.sum((1, 2))
            if self.aggregate == "pixels":
                setattr(self, f"{region}_error", getattr(self, f"{region}_error") + err.sum())
                setattr(self, f"{region}_count", getattr(self, f"{region}_count") + cnt.sum())
            else:
                valid = cnt > 0
                values = err[valid] / cnt[valid]
                if self.error == "squared":
                    values = values.sqrt()
                setattr(self, f"{region}_error", getattr(self, f"{region}_error") + values.sum())
                setattr(self, f"{region}_count", getattr(self, f"{region}_count") + valid.sum())

    def compute(self) -> dict[str, Tensor]:
        out = {}
        for region in self.REGIONS:
            value = getattr(self, f"{region}_error") / getattr(self, f"{region}_count").clamp_min(1e-12)
            if self.error == "squared" and self.aggregate == "pixels":
                value = value.sqrt()
            out[region] = value
        return out


__all__ = ["LabRegionRMSE", "rgb_to_lab"]

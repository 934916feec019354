"""The difference-mask operator ``D(A, B, α)`` (thesis 000, Ch. 6, §6.4).

``D`` is a per-pixel perceptual (LPIPS) distance map between ``A`` and ``B`` binarised at
``α = 0.2``. It gives the unfinished region ``M_d = D(I_T, I_{t-1})`` (the mask generator's
input), the ground-truth step mask ``M_t = D(I_t, I_{t-1})`` on real time-lapses, and the masks of
the max-IoU metric (§6.8).

``distance="lpips"`` uses the suite's :class:`metrics.perceptual.LPIPSNetwork` in spatial mode
(``lpips.LPIPS(spatial=True)``: each layer's map upsampled bilinearly and summed).
``distance="l1"`` (mean absolute RGB difference in ``[0, 1]`` units) is a documented cheap
alternative for data whose changes are exact (the procedural paintings) and for tests.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DifferenceMask", "MinSizeLPIPS"]


class MinSizeLPIPS(nn.Module):
    """An LPIPS network that upsamples (bilinear) images smaller than ``min_size`` before the backbone.

    AlexNet's pooling needs about 32 px; [choice] tiny images (CPU tests, tiny configs) are brought
    to ``min_size`` (64) and spatial maps resized back. Paper-size images pass unchanged.
    """

    def __init__(self, network: nn.Module, min_size: int = 64) -> None:
        super().__init__()
        self.network, self.min_size = network, int(min_size)

    @property
    def protocol(self):  # noqa: ANN201 - forwarded to the metrics that describe themselves
        return self.network.protocol

    def forward(self, a: Tensor, b: Tensor, spatial: Optional[bool] = None) -> Tensor:
        size = tuple(a.shape[-2:])
        if min(size) >= self.min_size:
            return self.network(a, b, spatial=spatial)
        scale = self.min_size / min(size)
        big = (max(self.min_size, round(size[0] * scale)), max(self.min_size, round(size[1] * scale)))
        up = lambda x: F.interpolate(x.float(), size=big, mode="bilinear", align_corners=False)  # noqa: E731
        out = self.network(up(a), up(b), spatial=spatial)
        if out.ndim == 4:
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        return out


class DifferenceMask(nn.Module):
    """``D(A, B, α)``: ``[B, 3, H, W]`` images in ``[-1, 1]`` -> ``{0, 1}`` masks ``[B, 1, H, W]``.

    Args:
        alpha: the binarisation threshold (thesis: 0.2).
        distance: ``"lpips"`` (thesis) or ``"l1"`` (documented alternative).
        net: LPIPS backbone (``"alex"``).
        backbone_weights: torchvision weight file of the backbone; ``None`` keeps random
            backbone weights (tests only; the maps are then not perceptual).
    """

    def __init__(self, alpha: float = 0.2, distance: str = "lpips", net: str = "alex", backbone_weights: Optional[str] = None) -> None:
        super().__init__()
        if distance not in ("lpips", "l1"):
            raise ValueError(f"distance must be 'lpips' or 'l1', got {distance!r}")
        self.alpha, self.distance = float(alpha), distance
        self.lpips: Optional[nn.Module] = None
        if distance == "lpips":
            from metrics.perceptual import LPIPSNetwork

            self.lpips = MinSizeLPIPS(LPIPSNetwork(net, backbone_weights, spatial=True))  # type: ignore[arg-type]
        self.requires_grad_(False)

    @torch.no_grad()
    def distance_map(self, a: Tensor, b: Tensor) -> Tensor:
        """Per-pixel distance ``[B, 1, H, W]``."""
        if a.shape != b.shape:
            raise ValueError(f"images must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
        if self.lpips is None:
            return ((a.float() - b.float()).abs() / 2).mean(dim=1, keepdim=True)
        return self.lpips(a, b, spatial=True)

    @torch.no_grad()
    def forward(self, a: Tensor, b: Tensor, alpha: Optional[float] = None) -> Tensor:
        threshold = self.alpha if alpha is None else float(alpha)
        return (self.distance_map(a, b) > threshold).float()

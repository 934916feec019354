"""SpyNet (Ranjan & Black, CVPR 2017), VIDM's implicit-motion network v (thesis 001 Ch. 3 §3.3.2).

"The latent code is an optical flow like feature estimated by an additional network v, implemented
as SpyNet" and "updated jointly" (seed 001 lines 625-627); the authors' code ([repo] MKFMIKU/vidm)
loads mmediting's ``spynet_20210409-c6c1bd09.pth``. This is a re-implementation in mmediting's
layout so that file loads strictly:

* ``basic_module.{level}.basic_module.{j}.conv.{weight,bias}``: per pyramid level five 7x7 convs
  ``8 -> 32 -> 64 -> 32 -> 16 -> 2`` with ReLU between (mmcv ``ConvModule`` keeps the conv under
  ``.conv``); the input is the reference frame, the warped supporting frame and the upsampled flow;
* ``mean`` / ``std`` buffers: ImageNet normalisation of RGB in [0, 1];
* coarse to fine: the frames are average-pooled ``num_levels - 1`` times, the flow starts at zero
  on the coarsest level and each level adds a residual to the 2x-upsampled (and doubled) flow of
  the level below; the published checkpoint has six levels (the full image and five downsamplings),
  which is the default; frames are resized to a multiple of ``2 ** (num_levels - 1) * 8`` pixels
  (32 for six levels, mmediting's rule) and the flow resized back and rescaled.

Flow convention: ``flow [B, 2, H, W]`` in pixels, channel 0 horizontal; :func:`flow_warp` samples
``supp(p + flow(p))``, so ``flow_warp(x, 0) == x`` exactly (bilinear with ``align_corners=True``
at integer positions). :meth:`SpyNet.tiny` is a CPU stand-in (narrow convs, two levels, random
weights) named as such in configs and results rows.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MMEDITING_SPYNET_FILE = "spynet_20210409-c6c1bd09.pth"
MMEDITING_SPYNET_URL = (
    "https://download.openmmlab.com/mmediting/restorers/basicvsr/spynet_20210409-c6c1bd09.pth"
)
MMEDITING_WIDTHS: tuple[int, ...] = (32, 64, 32, 16)
INPUT_RANGES = ("unit", "raw")


def flow_warp(x: Tensor, flow: Tensor) -> Tensor:
    """Backward-warp ``x [B, C, H, W]`` by ``flow [B, 2, H, W]`` (pixels): ``out(p) = x(p + flow(p))``.

    Bilinear with border padding (positions clamped to the image), i.e. ``grid_sample(...,
    padding_mode="border", align_corners=True)`` as mmediting's ``flow_warp``; written with explicit
    corner weights so that an integer flow (zero included) reproduces pixels exactly.
    """
    if flow.shape[1] != 2 or flow.shape[-2:] != x.shape[-2:] or flow.shape[0] != x.shape[0]:
        raise ValueError(f"flow_warp: flow {tuple(flow.shape)} does not match features {tuple(x.shape)}")
    b, c, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device, dtype=flow.dtype),
                            torch.arange(w, device=x.device, dtype=flow.dtype), indexing="ij")
    px = (xs + flow[:, 0]).clamp(0, w - 1)
    py = (ys + flow[:, 1]).clamp(0, h - 1)
    x0, y0 = px.floor(), py.floor()
    wx, wy = (px - x0).unsqueeze(1).to(x.dtype), (py - y0).unsqueeze(1).to(x.dtype)
    x0, y0 = x0.long(), y0.long()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    flat = x.reshape(b, c, h * w)

    def at(yy: Tensor, xx: Tensor) -> Tensor:
        index = (yy * w + xx).reshape(b, 1, h * w).expand(b, c, h * w)
        return flat.gather(2, index).reshape(b, c, h, w)

    top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
    return top * (1 - wy) + bottom * wy


class ConvUnit(nn.Module):
    """A conv (kept under ``.conv`` like mmcv's ``ConvModule``) and an optional ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, relu: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return F.relu(x) if self.relu else x


class SpyNetLevel(nn.Module):
    """One pyramid level's flow-residual network (mmediting ``SPyNetBasicModule``)."""

    def __init__(self, widths: Sequence[int] = MMEDITING_WIDTHS, kernel: int = 7) -> None:
        super().__init__()
        chans = [8, *widths, 2]
        self.basic_module = nn.Sequential(*[
            ConvUnit(chans[i], chans[i + 1], kernel, relu=i < len(chans) - 2) for i in range(len(chans) - 1)
        ])

    def forward(self, x: Tensor) -> Tensor:
        return self.basic_module(x)


class SpyNet(nn.Module):
    """Coarse-to-fine optical flow ``flow(ref, supp)`` (module docstring).

    Args:
        num_levels: pyramid levels (6 in the mmediting checkpoint).
        widths: hidden widths of each level's conv stack ((32, 64, 32, 16) published).
        kernel: conv kernel size (7 published).
        weights_path: an mmediting SpyNet checkpoint loaded strictly (``None``: random weights).
        input_range: ``unit`` (default): frames in [-1, 1] are mapped to [0, 1], the range mmediting's
            ImageNet normalisation expects; ``raw``: frames go in as given, as the VIDM authors'
            ``ComplexUModel`` does (their released weights were trained that way, :mod:`.released`).
    """

    def __init__(self, num_levels: int = 6, widths: Sequence[int] = MMEDITING_WIDTHS, kernel: int = 7,
                 weights_path: str | None = None, input_range: str = "unit") -> None:
        super().__init__()
        if num_levels < 1:
            raise ValueError(f"SpyNet num_levels must be >= 1, got {num_levels}")
        if input_range not in INPUT_RANGES:
            raise ValueError(f"model.network.flow.input_range={input_range!r} is not one of {list(INPUT_RANGES)}")
        self.input_range = input_range
        self.num_levels = int(num_levels)
        self.basic_module = nn.ModuleList([SpyNetLevel(widths, kernel) for _ in range(num_levels)])
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.calls = 0  # forward passes, counted for the flow-caching benchmark and tests
        self.weights_path = weights_path
        if weights_path:
            load_spynet_weights(self, weights_path)

    @classmethod
    def tiny(cls, num_levels: int = 2, input_range: str = "unit") -> "SpyNet":
        """A CPU-sized random stand-in: two levels, widths (8, 8, 8, 8), 3x3 kernels."""
        return cls(num_levels=num_levels, widths=(8, 8, 8, 8), kernel=3, input_range=input_range)

    @property
    def size_multiple(self) -> int:
        return 2 ** (self.num_levels - 1) * 8 if self.num_levels > 1 else 8

    def _flow(self, ref: Tensor, supp: Tensor) -> Tensor:
        refs, supps = [(ref - self.mean) / self.std], [(supp - self.mean) / self.std]
        for _ in range(self.num_levels - 1):
            refs.append(F.avg_pool2d(refs[-1], 2, 2, count_include_pad=False))
            supps.append(F.avg_pool2d(supps[-1], 2, 2, count_include_pad=False))
        refs, supps = refs[::-1], supps[::-1]
        b, _, h, w = refs[0].shape
        flow = ref.new_zeros(b, 2, h, w)
        for level in range(self.num_levels):
            up = flow if level == 0 else F.interpolate(flow, scale_factor=2, mode="bilinear", align_corners=True) * 2.0
            warped = flow_warp(supps[level], up)
            flow = up + self.basic_module[level](torch.cat([refs[level], warped, up], dim=1))
        return flow

    def forward(self, ref: Tensor, supp: Tensor) -> Tensor:
        """Flow ``[B, 2, H, W]`` from ``ref`` to ``supp`` (RGB in [-1, 1], ``[B, 3, H, W]``)."""
        if ref.shape != supp.shape or ref.ndim != 4 or ref.shape[1] != 3:
            raise ValueError(f"SpyNet takes two [B, 3, H, W] frames of one shape, got {tuple(ref.shape)} and {tuple(supp.shape)}")
        self.calls += 1
        if self.input_range == "unit":
            ref, supp = (ref + 1) / 2, (supp + 1) / 2
        h, w = ref.shape[-2:]
        m = self.size_multiple
        hu, wu = max(m, -(-h // m) * m), max(m, -(-w // m) * m)
        if (hu, wu) != (h, w):
            ref = F.interpolate(ref, size=(hu, wu), mode="bilinear", align_corners=False)
            supp = F.interpolate(supp, size=(hu, wu), mode="bilinear", align_corners=False)
        flow = self._flow(ref, supp)
        if (hu, wu) != (h, w):
            flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
            flow = torch.stack([flow[:, 0] * (w / wu), flow[:, 1] * (h / hu)], dim=1)
        return flow


def load_spynet_weights(network: SpyNet, path: str | Path) -> SpyNet:
    """Load mmediting's SpyNet checkpoint (``{"state_dict": ...}`` or a bare state dict; an optional
    ``spynet.`` / ``generator.spynet.`` prefix is stripped) strictly; other keys are an error naming the file."""
    from lightning_modules.components.released_weights import KeyMap, import_released

    if not Path(path).expanduser().is_file():
        raise FileNotFoundError(f"SpyNet weights {Path(path).expanduser()} do not exist (mmediting's "
                                f"{MMEDITING_SPYNET_FILE}, {MMEDITING_SPYNET_URL})")
    import_released(network, path, KeyMap(strip_prefixes=("generator.", "spynet.")), what="mmediting SpyNet",
                    key="model.network.flow.weights_path", containers=("state_dict",),
                    hint=f"mmediting's {MMEDITING_SPYNET_FILE} has 6 levels of 7x7 convs (num_levels={network.num_levels} here).")
    return network


__all__ = ["INPUT_RANGES", "MMEDITING_SPYNET_FILE", "SpyNet", "flow_warp", "load_spynet_weights"]

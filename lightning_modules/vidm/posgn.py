"""Positional Group Normalization (PosGN), VIDM's motion-generator normalisation (thesis 001 Ch. 3 §3.3.1).

Eq. 3.1-3.2 (seed 001 lines 600-604): ``alpha, beta = MLP(h, w, n, t)`` and
``PosGN(x) = alpha * GroupNorm(x) + beta`` with an MLP that applies a sinusoidal activation after
its first layer (SIREN-like). PosGN replaces ADM's AdaGN after every UNet block and, as in the
authors' code ([repo] MKFMIKU/vidm ``CoordinatesEMB``), the timestep embedding entirely:

* every coordinate is normalised to ``[-1, 1]`` with ``linspace``: ``h`` over the feature map's
  rows, ``w`` over its columns, ``n`` over ``video_timesteps`` (128) frame indices and ``t`` over
  ``diffusion_timesteps`` (1000) diffusion steps;
* ``Linear(4 -> C) -> sin -> Linear(C -> 2C) -> SiLU -> Linear(2C -> 2C)`` per pixel gives
  (scale, shift); the ResBlock applies ``GN(h) * (1 + scale) + shift -> SiLU -> conv`` whose conv is
  ADM's zero-initialised output conv, so a fresh block is the identity on its input (the test).

"Coordinates (h, w, n, t) are only generated at the first time and then cached" (line 618): the
``(h, w)`` grids depend only on a feature map's size, so :class:`CoordinateContext` builds each
once per (size, device, dtype) and counts the builds (``grid_builds``); the per-sample ``(n, t)``
channels are broadcast onto the cached grid at every call. The Linear layers are written as 1x1
convolutions (the same per-pixel affine map, without permutes).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn


class CoordinateContext:
    """The (n, t) of the current network call and the cached (h, w) grids shared by all PosGN layers.

    Args:
        video_timesteps: frame indices ``n`` normalised over ``0 .. video_timesteps - 1`` (128, [repo]).
        diffusion_timesteps: diffusion steps ``t`` normalised over ``0 .. diffusion_timesteps - 1`` (1000).
    """

    def __init__(self, video_timesteps: int = 128, diffusion_timesteps: int = 1000) -> None:
        if video_timesteps < 2 or diffusion_timesteps < 2:
            raise ValueError("video_timesteps and diffusion_timesteps must be >= 2 (they are normalised to [-1, 1])")
        self.video_timesteps = int(video_timesteps)
        self.diffusion_timesteps = int(diffusion_timesteps)
        self._grids: dict[tuple, Tensor] = {}
        self.grid_builds = 0
        self.frame: Optional[Tensor] = None  # [B] normalised n
        self.step: Optional[Tensor] = None  # [B] normalised t

    @staticmethod
    def _normalise(values: Tensor, count: int) -> Tensor:
        """``linspace(-1, 1, count)[values]`` without building the table (values may be fractional)."""
        return values.float() * (2.0 / (count - 1)) - 1.0

    def set(self, frame_index: Tensor, timesteps: Tensor) -> None:
        """Set the per-sample ``n`` (frame index) and ``t`` (network-time diffusion step) for the next call."""
        self.frame = self._normalise(torch.as_tensor(frame_index), self.video_timesteps)
        self.step = self._normalise(torch.as_tensor(timesteps), self.diffusion_timesteps)

    def grid(self, height: int, width: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """The cached ``[2, H, W]`` (h, w) grid in [-1, 1] for a feature map of this size."""
        key = (height, width, str(device), dtype)
        grid = self._grids.get(key)
        if grid is None:
            rows = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
            cols = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
            grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"))
            self._grids[key] = grid
            self.grid_builds += 1
        return grid

    def coordinates(self, feature: Tensor) -> Tensor:
        """``[B, 4, H, W]`` = (h, w, n, t) for ``feature [B, C, H, W]``."""
        if self.frame is None or self.step is None:
            raise RuntimeError("PosGN: call CoordinateContext.set(frame_index, timesteps) before the network")
        b, _, height, width = feature.shape
        grid = self.grid(height, width, feature.device, feature.dtype).expand(b, 2, height, width)
        n, t = (v.to(feature.device, feature.dtype).reshape(-1) for v in (self.frame, self.step))
        n, t = (v.expand(b) if v.numel() == 1 else v for v in (n, t))  # one value for the whole batch
        if n.shape[0] != b or t.shape[0] != b:
            raise ValueError(f"PosGN: {n.shape[0]} frame indices / {t.shape[0]} steps for a batch of {b}")
        nt = torch.stack([n, t], dim=1)[:, :, None, None].expand(b, 2, height, width)
        return torch.cat([grid, nt], dim=1)


class Sine(nn.Module):
    """``sin(x)``: the periodic activation after the first layer (SIREN)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(x)


class PosGNModulation(nn.Module):
    """The coordinate MLP of one block: ``(h, w, n, t) -> (scale, shift)`` per pixel, ``[B, 2C, H, W]``.

    Plugged into :class:`~lightning_modules.components.adm_unet.ADMUNet` as ``block_modulation``;
    the ResBlock computes ``GN(x) * (1 + scale) + shift`` (Eq. 3.2 with ``alpha = 1 + scale``).
    """

    def __init__(self, channels: int, context: CoordinateContext) -> None:
        super().__init__()
        self.context = context
        self.mlp = nn.Sequential(
            nn.Conv2d(4, channels, 1), Sine(),
            nn.Conv2d(channels, 2 * channels, 1), nn.SiLU(),
            nn.Conv2d(2 * channels, 2 * channels, 1),
        )

    def forward(self, feature: Tensor) -> Tensor:
        coords = self.context.coordinates(feature).to(self.mlp[0].weight.dtype)
        return self.mlp(coords)


class PosGNFactory:
    """``channels -> PosGNModulation(channels, context)``: the ADMUNet ``block_modulation`` hook."""

    def __init__(self, context: CoordinateContext) -> None:
        self.context = context

    def __call__(self, channels: int) -> PosGNModulation:
        return PosGNModulation(channels, self.context)


__all__ = ["CoordinateContext", "PosGNFactory", "PosGNModulation", "Sine"]

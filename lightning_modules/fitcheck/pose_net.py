"""MimicMotion's PoseNet: rendered DWPose frames -> features added after the UNet's conv_in.

Thesis 000, Ch. 4, §4.3 (seed lines ~730-760; digest §3.2 "Pose feature (additive)"): the pose
frames ``[P'_fr, P'_bk, P'_{1:T}]`` go through the pose encoder of MimicMotion [327] and the
result is added to the output of the denoising UNet's first layer. The architecture is the
public MimicMotion one ([EXT], digest §3.2): eight convolutions 3->3->16->16->32->32->64->64->128
with SiLU, three of them 4x4 stride 2 (x8 down, the VAE's factor), a zero-initialised 1x1
projection to the UNet's first width (320) and a learnable scalar initialised to 2.

Parameter names and shapes (``conv_layers``, ``final_proj``, ``scale`` of shape ``[1]``) follow the
MimicMotion checkpoint so ``MimicMotion_1.pth``'s ``pose_net.*`` tensors load without renaming
(importer: :mod:`lightning_modules.fitcheck.released`). ``stage_channels`` and
``num_downsamples`` make CPU-sized variants (the tiny VAE downsamples x2, not x8).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


class PoseNet(nn.Module):
    """Per-frame pose encoder; ``forward([N, 3, H, W]) -> [N, out_channels, H/2^d, W/2^d]``.

    Args:
        out_channels: width of the UNet's conv_in output (320 for SVD).
        stage_channels: widths of the stages; the full model uses ``(16, 32, 64)`` and a final 128.
        final_channels: width of the last 3x3 conv before the projection.
        num_downsamples: how many of the stages open with a 4x4 stride-2 conv (3 for x8).
        scale_init: initial value of the learnable output scale (2 in MimicMotion).
    """

    def __init__(
        self,
        out_channels: int = 320,
        stage_channels: Sequence[int] = (16, 32, 64),
        final_channels: int = 128,
        num_downsamples: int = 3,
        scale_init: float = 2.0,
    ) -> None:
        super().__init__()
        if not 0 <= num_downsamples <= len(stage_channels):
            raise ValueError(f"num_downsamples must be in [0, {len(stage_channels)}], got {num_downsamples}")
        layers: list[nn.Module] = [nn.Conv2d(3, 3, 3, padding=1), nn.SiLU()]
        previous = 3
        for index, width in enumerate(stage_channels):
            if index < num_downsamples:
                layers += [nn.Conv2d(previous, width, 4, stride=2, padding=1), nn.SiLU()]
            else:
                layers += [nn.Conv2d(previous, width, 3, padding=1), nn.SiLU()]
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.SiLU()]
            previous = width
        layers += [nn.Conv2d(previous, final_channels, 3, padding=1), nn.SiLU()]
        self.conv_layers = nn.Sequential(*layers)
        self.final_proj = nn.Conv2d(final_channels, out_channels, 1)
        nn.init.zeros_(self.final_proj.weight)  # zero-init: no effect on the pretrained UNet at start
        nn.init.zeros_(self.final_proj.bias)
        # shape [1] as in MimicMotion's PoseNet, so ``pose_net.scale`` of MimicMotion_1.pth loads as is
        self.scale = nn.Parameter(torch.full((1,), float(scale_init)))
        self.downsample_factor = 2**num_downsamples

    def forward(self, pose_images: Tensor) -> Tensor:
        """``pose_images`` in [-1, 1] (rendered skeletons), frames flattened into the batch."""
        return self.final_proj(self.conv_layers(pose_images)) * self.scale

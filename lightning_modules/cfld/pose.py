"""CFLD's pose input and pose adapter H_P (seed 003, Sec. 3.2 "Pose Adapter"; digest 002-003 A3, A6).

Pose input (digest A6, [R] = the authors' ``pose_utils.py``): a 21-channel map on a square
canvas (256x256 at full size): 3 channels of an RGB OpenPose-18 skeleton drawing (values in
[0, 1]) followed by 18 Gaussian heatmaps ``exp(-d^2 / (2 sigma^2))`` with ``sigma = 6`` px;
a missing joint (coordinate ``-1``) gives an all-zero heatmap and no bone/joint drawing.
Keypoints come as ``(x, y)`` pixels of their annotation frame (DeepFashion: 256x176) and are
rescaled to the canvas, as the authors' code does (the aspect ratio is not kept).

The drawing is rasterised here in torch (batched, on the model's device) instead of with
OpenCV. Choices where neither the paper nor the digest fixes the detail (documented [GAP]):
bones are hard-edged segments of width ``limb_width`` (cv2 ``thickness=2`` -> 2 px, not
anti-aliased), joints are discs of radius ``joint_radius`` (3 px), bones are drawn in the
OpenPose limb order then joints on top; joint colours are the 18 standard OpenPose colours and
bone ``i`` uses the colour of joint ``i`` scaled by 153/255 (the digest's "darker 153-level"
OpenPose bone colours).

Pose adapter (T2I-Adapter style, [R]): PixelUnshuffle(4) -> 1x1 conv -> ResnetBlock2D at each
of three scales (2x average-pool between them), no time embedding. Output ``k`` is added to
the output of the UNet's ``k``-th cross-attention down block (diffusers' intra-block adapter
hook, before the downsampler); the fourth down block gets nothing. Full size: 21x256x256 ->
[320x64x64, 640x32x32, 1280x16x16], 30.6M parameters (paper Table 1).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from diffusers.models.resnet import ResnetBlock2D
from torch import Tensor, nn

NUM_JOINTS = 18
#: OpenPose-18 bones as (from, to) keypoint pairs, in drawing order (digest A6).
POSE_LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip
#: The 18 standard OpenPose joint colours (RGB, 0-255).
JOINT_COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip
POSE_CHANNELS = 3 + NUM_JOINTS


def scale_keypoints(keypoints: Tensor, frame_hw: Tensor | Sequence[float], size: int) -> tuple[Tensor, Tensor]:
    """``(x, y)`` pixels of a ``frame_hw`` frame -> canvas pixels of a ``size x size`` canvas.

    Returns ``(xy [B, J, 2], present [B, J] bool)``; a joint is missing when either coordinate
    is negative (the datasets' ``-1``).
    """
    frame = torch.as_tensor(frame_hw, dtype=keypoints.dtype, device=keypoints.device)
    if frame.ndim == 1:
        frame = frame.expand(keypoints.shape[0], 2)
    present = (keypoints >= 0).all(dim=-1)
    scale = torch.stack([size / frame[:, 1], size / frame[:, 0]], dim=-1)[:, None, :]  # (sx, sy)
    return keypoints * scale, present


def keypoint_heatmaps(xy: Tensor, present: Tensor, size: int, sigma: float) -> Tensor:
    """Gaussian heatmaps ``[B, J, size, size]`` peaking at 1 on each present joint, zero when missing."""
    grid = torch.arange(size, device=xy.device, dtype=xy.dtype)
    dx2 = (grid[None, None, None, :] - xy[..., 0, None, None]) ** 2
    dy2 = (grid[None, None, :, None] - xy[..., 1, None, None]) ** 2
    maps = torch.exp(-(dx2 + dy2) / (2.0 * sigma**2))
    return maps * present[..., None, None].to(maps.dtype)


def _segment_distance(px: Tensor, py: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Distance of canvas pixels to segments ``a -> b`` (``a``, ``b``: ``[B, 2]``) -> ``[B, H, W]``."""
    ab = b - a
    length2 = (ab * ab).sum(-1).clamp_min(1e-12)[:, None, None]
    rx, ry = px[None] - a[:, 0, None, None], py[None] - a[:, 1, None, None]
    u = ((rx * ab[:, 0, None, None] + ry * ab[:, 1, None, None]) / length2).clamp(0.0, 1.0)
    dx = rx - u * ab[:, 0, None, None]
    dy = ry - u * ab[:, 1, None, None]
    return torch.sqrt(dx * dx + dy * dy)


def draw_skeleton(xy: Tensor, present: Tensor, size: int, limb_width: float = 2.0, joint_radius: float = 3.0) -> Tensor:
    """RGB OpenPose-18 skeleton drawing ``[B, 3, size, size]`` in [0, 1] (bones skipped when an end is missing)."""
    B = xy.shape[0]
    grid = torch.arange(size, device=xy.device, dtype=xy.dtype)
    py, px = torch.meshgrid(grid, grid, indexing="ij")
    canvas = torch.zeros(B, 3, size, size, device=xy.device, dtype=xy.dtype)
    colours = torch.tensor(JOINT_COLOURS, device=xy.device, dtype=xy.dtype) / 255.0
    for i, (j0, j1) in enumerate(POSE_LIMBS):
        hit = _segment_distance(px, py, xy[:, j0], xy[:, j1]) <= limb_width / 2.0
        hit = hit & (present[:, j0] & present[:, j1])[:, None, None]
        canvas = torch.where(hit[:, None], (colours[i] * 153.0 / 255.0)[None, :, None, None], canvas)
    for j in range(xy.shape[1]):
        d2 = (px[None] - xy[:, j, 0, None, None]) ** 2 + (py[None] - xy[:, j, 1, None, None]) ** 2
        hit = (d2 <= joint_radius**2) & present[:, j, None, None]
        canvas = torch.where(hit[:, None], colours[j % len(colours)][None, :, None, None], canvas)
    return canvas


def encode_pose(
    keypoints: Tensor,
    frame_hw: Tensor | Sequence[float],
    size: int = 256,
    sigma: float = 6.0,
    limb_width: float = 2.0,
    joint_radius: float = 3.0,
) -> Tensor:
    """Keypoints ``[B, 18, 2]`` (``(x, y)``, -1 missing) -> the 21-channel pose map ``[B, 21, size, size]``."""
    if keypoints.ndim != 3 or keypoints.shape[-1] != 2:
        raise ValueError(f"keypoints must be [B, J, 2] (x, y), got {tuple(keypoints.shape)}")
    keypoints = keypoints.float()
    xy, present = scale_keypoints(keypoints, frame_hw, size)
    skeleton = draw_skeleton(xy, present, size, limb_width, joint_radius)
    return torch.cat([skeleton, keypoint_heatmaps(xy, present, size, sigma)], dim=1)


class PoseAdapter(nn.Module):
    """T2I-Adapter-style pose encoder H_P: ``[B, 21, S, S] -> [c_1 @ S/4, c_2 @ S/8, c_3 @ S/16]``.

    Args:
        channels: output channels per scale; must equal the UNet's first three down-block widths.
        in_channels: pose-map channels (21).
        unshuffle: PixelUnshuffle factor of the stem (4: the pose canvas is 4x the latent side).
        norm_groups: GroupNorm groups of the ResNet blocks (32 as SD; tiny configs use fewer).
    """

    def __init__(
        self,
        channels: Sequence[int] = (320, 640, 1280),
        in_channels: int = POSE_CHANNELS,
        unshuffle: int = 4,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(unshuffle)
        self.stem = nn.Conv2d(in_channels * unshuffle * unshuffle, channels[0], kernel_size=1)
        blocks = []
        previous = channels[0]
        for c in channels:
            blocks.append(ResnetBlock2D(in_channels=previous, out_channels=c, temb_channels=None, groups=norm_groups))
            previous = c
        self.blocks = nn.ModuleList(blocks)
        self.downsample = nn.AvgPool2d(2)

    def forward(self, pose: Tensor) -> list[Tensor]:
        x = self.stem(self.unshuffle(pose))
        features = []
        for i, block in enumerate(self.blocks):
            if i > 0:
                x = self.downsample(x)
            x = block(x, None)
            features.append(x)
        return features


def zero_pose_features(features: Sequence[Tensor], weight: Optional[Tensor]) -> list[Tensor]:
    """Scale each pose feature per sample by ``weight`` ``[B]`` (0 = pose dropped / null branch)."""
    if weight is None:
        return list(features)
    return [f * weight.to(f.dtype).reshape(-1, 1, 1, 1) for f in features]

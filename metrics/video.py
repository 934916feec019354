"""Video metrics: FVD (I3D features) and frame-level FID over video frames.

Both reuse the streaming Fréchet metric of :mod:`metrics.fid`; only the
feature extractor and the way clips become feature rows differ.
"""
from __future__ import annotations

from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from metrics.fid import FrechetInceptionDistance
from metrics.i3d import I3DFeatures
from metrics.protocol import MetricProtocol
from metrics.validation import check_images


class FrechetVideoDistance(FrechetInceptionDistance):
    """FVD (Unterthiner et al. 2018) in the StyleGAN-V protocol VIDM follows.

    ``update(videos, real)`` with ``[B, T, C, H, W]`` clips in ``[-1, 1]``.
    The paper protocol compares 2048 real with 2048 generated 16-frame clips;
    fewer clips trigger the rank warning of the base class.

    Args:
        feature_extractor: a video network ``[B, T, C, H, W] -> [B, D]``;
            default :class:`~metrics.i3d.I3DFeatures` built from ``weights_path``.
            A 3D-CNN of another protocol (e.g. the FID-VID network of DisCo /
            MagicAnimate, Balaji et al. 2019) can be injected here.
        weights_path: Kinetics-400 I3D weights for the default extractor
            (``None``: random weights, tests only).
        num_frames: frames per clip (16).
        resolution: frame side fed to I3D (224; ``None`` keeps the input size).
        kwargs: forwarded to :class:`~metrics.fid.FrechetInceptionDistance`.
    """

    def __init__(
        self,
        feature_extractor: Optional[nn.Module] = None,
        weights_path: Optional[str] = None,
        num_frames: int = 16,
        resolution: Optional[int] = 224,
        **kwargs: Any,
    ) -> None:
        if feature_extractor is None:
            feature_extractor = I3DFeatures(weights_path, num_frames=num_frames, resolution=resolution)
        kwargs.setdefault("name", "fvd")
        if "num_features" not in kwargs and not isinstance(getattr(feature_extractor, "num_features", None), int):
            kwargs["num_features"] = int(feature_extractor(torch.zeros(1, num_frames, 3, 32, 32)).shape[1])
        super().__init__(feature_extractor, **kwargs)
        self.num_frames = num_frames

    @property
    def protocol(self) -> MetricProtocol:
        return super().protocol.with_extra(clip_frames=self.num_frames, reference="StyleGAN-V: 2048 vs 2048 clips")

    def extract(self, images: Tensor, name: str = "videos") -> Tensor:
        check_images(images, name, ndim=5, value_range=self.input_range)
        with torch.no_grad():
            features = self.feature_extractor(images)
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise ValueError(f"the video feature extractor returned {tuple(features.shape)}, expected [B, {self.num_features}]")
        return features.double()


class FrameFID(FrechetInceptionDistance):
    """FID over the frames of videos: the frame-level FID of VIDM / DiFT and the "FID" column of Fit Check's
    Table 4.1 (its "FID-VID" column is a video-level metric: FrechetVideoDistance with the 3D ResNet-50 of
    :mod:`metrics.resnet3d`).

    ``update(videos, real)`` with ``[B, T, C, H, W]`` in ``[-1, 1]``; every
    frame (or ``frames_per_video`` frames spread uniformly over the clip, e.g.
    4 for DiFT's 8,192-image protocol) is one sample of an image FID.

    Args:
        feature_extractor: image feature extractor or built-in name (see
            :class:`~metrics.fid.FrechetInceptionDistance`).
        frames_per_video: frames taken per clip, uniformly spaced; ``None`` = all.
        kwargs: forwarded to :class:`~metrics.fid.FrechetInceptionDistance`.
    """

    def __init__(
        self,
        feature_extractor: Union[nn.Module, str] = "inception",
        frames_per_video: Optional[int] = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("name", "frame_fid")
        super().__init__(feature_extractor, **kwargs)
        self.frames_per_video = frames_per_video

    @property
    def protocol(self) -> MetricProtocol:
        return super().protocol.with_extra(frames_per_video=self.frames_per_video or "all")

    def update(self, videos: Tensor, real: bool) -> None:  # type: ignore[override]
        check_images(videos, "real videos" if real else "generated videos", ndim=5, value_range=self.input_range)
        frames = videos
        if self.frames_per_video is not None and self.frames_per_video < videos.shape[1]:
            index = torch.linspace(0, videos.shape[1] - 1, self.frames_per_video).round().long().to(videos.device)
            frames = videos.index_select(1, index)
        super().update(frames.flatten(0, 1), real)


__all__ = ["FrechetVideoDistance", "FrameFID"]

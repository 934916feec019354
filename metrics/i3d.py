"""Inception-3D (Carreira & Zisserman 2017), the FVD feature network, written here.

The layer layout and parameter names follow the widely used PyTorch port of
the Kinetics-400 I3D (``Conv3d_1a_7x7 ... Mixed_5c``, ``logits``; each unit a
``conv3d`` + ``bn``), so its ``rgb_imagenet.pt``-style state dicts load
directly. TensorFlow "SAME" padding is reproduced (extra padding at the end
when the total is odd). StyleGAN-V's ``i3d_torchscript.pt`` (the network VIDM
uses) is accepted as a weight file too and then called as a black box.

FVD protocol (StyleGAN-V, followed by VIDM, thesis 001 Ch. 3): clips of 16
frames, frames resized to 224x224, values in ``[-1, 1]``, features = the
400 logits before the softmax, 2048 real vs 2048 generated clips.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metrics.protocol import MetricProtocol, weights_identity
from metrics.validation import check_images, require_weights_file

I3D_WEIGHTS_HINT = (
    "Kinetics-400 I3D weights: StyleGAN-V's i3d_torchscript.pt "
    "(https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt) or a PyTorch I3D state dict (rgb_imagenet.pt "
    "from the pytorch-i3d port of the DeepMind Kinetics-i3d checkpoint)"
)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def _pad_same(x: Tensor, kernel: Sequence[int], stride: Sequence[int]) -> Tensor:
    t, h, w = x.shape[-3:]
    pt = _same_padding(t, kernel[0], stride[0])
    ph = _same_padding(h, kernel[1], stride[1])
    pw = _same_padding(w, kernel[2], stride[2])
    return F.pad(x, (pw[0], pw[1], ph[0], ph[1], pt[0], pt[1]))


class Unit3D(nn.Module):
    """Conv3d (TF SAME padding) + optional BatchNorm3d (eps 1e-3) + optional ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Sequence[int] = (1, 1, 1),
        stride: Sequence[int] = (1, 1, 1),
        batch_norm: bool = True,
        activation: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.activation = tuple(kernel), tuple(stride), activation
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=0.001, momentum=0.01) if batch_norm else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.activation else x


class MaxPool3dSame(nn.Module):
    """Max pool with TF SAME padding (zeros, which is harmless after a ReLU)."""

    def __init__(self, kernel: Sequence[int], stride: Sequence[int]) -> None:
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionModule3D(nn.Module):
    """Four branches: 1x1x1; 1x1x1 -> 3x3x3; 1x1x1 -> 3x3x3; max pool -> 1x1x1."""

    def __init__(self, in_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        self.b0 = Unit3D(in_channels, widths[0])
        self.b1a = Unit3D(in_channels, widths[1])
        self.b1b = Unit3D(widths[1], widths[2], (3, 3, 3))
        self.b2a = Unit3D(in_channels, widths[3])
        self.b2b = Unit3D(widths[3], widths[4], (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, widths[5])
        self.out_channels = widths[0] + widths[2] + widths[4] + widths[5]

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


_MIXED = [
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
]


class InceptionI3D(nn.Module):
    """The I3D classifier; ``forward(x)`` on ``[B, 3, T, H, W]`` in ``[-1, 1]`` returns ``[B, num_classes]`` logits
    (averaged over the remaining time steps), ``features(x)`` the 1024-d pooled features."""

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.order = ["Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3"]
        for name, a, b in _MIXED:
            if name.startswith("MaxPool"):
                setattr(self, name, MaxPool3dSame(a, b))
            else:
                setattr(self, name, InceptionModule3D(a, b))
            self.order.append(name)
        self.logits = Unit3D(1024, num_classes, batch_norm=False, activation=False, bias=True)

    def _pooled(self, x: Tensor) -> Tensor:
        for name in self.order:
            x = getattr(self, name)(x)
        # AvgPool3d([2, 7, 7], stride 1) of the reference port, shrunk when the input is smaller.
        kernel = (min(2, x.shape[2]), min(7, x.shape[3]), min(7, x.shape[4]))
        return F.avg_pool3d(x, kernel, stride=1)

    def features(self, x: Tensor) -> Tensor:
        return self._pooled(x).mean((2, 3, 4))

    def forward(self, x: Tensor) -> Tensor:
        return self.logits(self._pooled(x)).mean((2, 3, 4))


class I3DFeatures(nn.Module):
    """Video feature extractor for FVD: ``[B, T, C, H, W]`` clips in ``[-1, 1]`` -> ``[B, 400]`` (or 1024).

    Args:
        weights_path: Kinetics-400 weights (see ``I3D_WEIGHTS_HINT``): a state
            dict for :class:`InceptionI3D` or StyleGAN-V's TorchScript;
            ``None`` keeps random weights (tests only).
        num_frames: frames per clip (16 in the StyleGAN-V / VIDM protocol; the
            first ``num_frames`` frames are used; shorter clips are an error).
        resolution: side to which frames are resized (bilinear); ``None`` keeps
            the input size (tests).
        output: ``"logits"`` (the 400-d pre-softmax output FVD uses) or
            ``"pool"`` (1024-d average-pooled features).
    """

    def __init__(
        self,
        weights_path: Optional[str] = None,
        num_frames: int = 16,
        resolution: Optional[int] = 224,
        output: str = "logits",
    ) -> None:
        super().__init__()
        if output not in ("logits", "pool"):
            raise ValueError(f"output must be 'logits' or 'pool', received {output!r}")
        path = require_weights_file(weights_path, config_key="weights_path", expected=I3D_WEIGHTS_HINT,
                                    source="StyleGAN-V / the DeepMind Kinetics-i3d release")
        self.num_frames, self.resolution, self.output = int(num_frames), resolution, output
        self.scripted: Optional[torch.jit.ScriptModule] = None
        self.net = InceptionI3D()
        if path is not None:
            try:
                self.scripted = torch.jit.load(path, map_location="cpu").eval()
            except Exception:
                state = torch.load(path, map_location="cpu", weights_only=True)
                self.net.load_state_dict(state)
        self.num_features = 1024 if output == "pool" else self.net.num_classes
        self.weights_identity = weights_identity(path)
        self.eval()
        self.requires_grad_(False)

    @property
    def protocol(self) -> MetricProtocol:
        return MetricProtocol(
            evaluator="i3d",
            feature_network=f"I3D Kinetics-400 {'logits (400-d)' if self.output == 'logits' else 'pool (1024-d)'}"
            + (" [TorchScript]" if self.scripted is not None else ""),
            feature_weights=self.weights_identity,
            resize=f"first {self.num_frames} frames; bilinear to {self.resolution}x{self.resolution}; [-1,1]"
            if self.resolution else f"first {self.num_frames} frames; native size; [-1,1]",
            random_weights=self.weights_identity == "random",
        )

    def forward(self, videos: Tensor) -> Tensor:
        check_images(videos, "I3D input videos", ndim=5, channels=(1, 3))
        if videos.shape[1] < self.num_frames:
            raise ValueError(f"I3D input videos: expected at least {self.num_frames} frames, received {videos.shape[1]}")
        x = videos[:, : self.num_frames].float()
        b, t, c, h, w = x.shape
        if c == 1:
            x = x.expand(-1, -1, 3, -1, -1)
        x = x.reshape(b * t, 3, h, w)
        if self.resolution is not None and (h, w) != (self.resolution, self.resolution):
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        x = x.reshape(b, t, 3, x.shape[-2], x.shape[-1]).permute(0, 2, 1, 3, 4).contiguous()
        if self.scripted is not None:
            return self.scripted(x, rescale=False, resize=False, return_features=True).float()
        return self.net(x) if self.output == "logits" else self.net.features(x)


__all__ = ["InceptionI3D", "I3DFeatures", "I3D_WEIGHTS_HINT"]

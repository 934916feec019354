"""3D ResNet-50 (Hara, Kataoka & Satoh 2018), the FID-VID feature network, written here.

Thesis 000, Ch. 4, §4.5 (seed ~840-880) scores generated fit-check videos with FID-VID next to FVD.
The thesis does not define it; it follows the human-animation protocol of DisCo / MagicAnimate
(digest §3.6 [EXT]), which computes FID-VID (Balaji et al. 2019) as the Fréchet distance of the
2048-d average-pooled features of a **3D ResNet-50 trained on Kinetics** (Hara et al.'s
``resnet-50-kinetics.pth``), while FVD uses I3D (:mod:`metrics.i3d`). The two metrics therefore
need two different networks; this module is the first.

Layout (Hara et al. 3D-ResNets-PyTorch, "shortcut B"): ``conv1`` 7x7x7 stride (1, 2, 2) -> ``bn1``
-> ReLU -> 3x3x3 max-pool stride 2 -> ``layer1..layer4`` of bottlenecks (3, 4, 6, 3; widths 64,
128, 256, 512, expansion 4; strides 1, 2, 2, 2 on all three axes; projection shortcuts
``downsample.0`` conv + ``downsample.1`` BN) -> global average pool (2048-d) -> ``fc``. The
parameter names match the released checkpoint (``{"state_dict": {"module.conv1.weight", ...}}``,
a ``DataParallel`` dump), so it loads directly with ``torch.load(weights_only=True)``.

Input rule ([GAP]: DisCo's exact resize is not in the thesis; chosen here and recorded in the
protocol): the first ``num_frames`` (16, the checkpoint's ``sample_duration``) frames, bilinear
resize to 112x112 (the training size), values mapped from ``[-1, 1]`` to ``[0, 1]`` and normalised
with Hara et al.'s Kinetics mean / std.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metrics.protocol import MetricProtocol, weights_identity
from metrics.validation import check_images, require_weights_file

RESNET3D_WEIGHTS_HINT = (
    "Kinetics 3D ResNet-50 weights: resnet-50-kinetics.pth of Hara et al. 3D-ResNets-PyTorch "
    "(https://github.com/kenshohara/3D-ResNets-PyTorch; the file DisCo's FID-VID uses), "
    "a dict with 'state_dict' whose keys start with 'module.'"
)
KINETICS_MEAN = (0.4345, 0.4051, 0.3775)
KINETICS_STD = (0.2768, 0.2713, 0.2737)


class Bottleneck3D(nn.Module):
    """1x1x1 -> 3x3x3 (stride) -> 1x1x1 bottleneck with a projection shortcut when shapes change."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__()
        out = width * self.expansion
        self.conv1 = nn.Conv3d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.conv2 = nn.Conv3d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(width)
        self.conv3 = nn.Conv3d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out)
        self.downsample: Optional[nn.Sequential] = None
        if stride != 1 or in_channels != out:
            self.downsample = nn.Sequential(nn.Conv3d(in_channels, out, 1, stride=stride, bias=False), nn.BatchNorm3d(out))

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet3D(nn.Module):
    """Hara et al.'s 3D ResNet with bottlenecks; ``features`` is the 2048-d pooled vector FID-VID compares."""

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), widths: Sequence[int] = (64, 128, 256, 512),
                 num_classes: int = 400) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, widths[0], 7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(widths[0])
        channels = widths[0]
        for i, (count, width) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(count):
                blocks.append(Bottleneck3D(channels, width, stride=(1 if i == 0 else 2) if j == 0 else 1))
                channels = width * Bottleneck3D.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_features = channels
        self.fc = nn.Linear(channels, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """``[B, 3, T, H, W]`` normalised clips -> ``[B, 2048]`` average-pooled features."""
        x = F.max_pool3d(F.relu(self.bn1(self.conv1(x))), kernel_size=3, stride=2, padding=1)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return x.mean(dim=(2, 3, 4))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


def load_resnet3d_state(path: str) -> dict[str, Tensor]:
    """The network tensors of a Hara et al. checkpoint (``state_dict`` wrapper and ``module.`` prefix removed)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{path}: expected a state dict (or {{'state_dict': ...}}) of a 3D ResNet-50")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


class ResNet3DFeatures(nn.Module):
    """FID-VID feature extractor: ``[B, T, C, H, W]`` clips in ``[-1, 1]`` -> ``[B, 2048]``.

    Args:
        weights_path: ``resnet-50-kinetics.pth`` (see ``RESNET3D_WEIGHTS_HINT``); ``None`` keeps
            random weights, a **stand-in** that the protocol (and so the results row) names as such.
        num_frames: frames per clip (16, the checkpoint's sample duration).
        resolution: side frames are resized to (112); ``None`` keeps the input size.
        layers / widths: the ResNet depth (ResNet-50 by default; tiny values only for tests).
    """

    def __init__(self, weights_path: Optional[str] = None, num_frames: int = 16, resolution: Optional[int] = 112,
                 layers: Sequence[int] = (3, 4, 6, 3), widths: Sequence[int] = (64, 128, 256, 512)) -> None:
        super().__init__()
        path = require_weights_file(weights_path, config_key="fid_vid_weights", expected=RESNET3D_WEIGHTS_HINT,
                                    source="Hara et al. 3D-ResNets-PyTorch release")
        self.net = ResNet3D(layers, widths)
        if path is not None:
            state = load_resnet3d_state(path)
            missing, unexpected = self.net.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise ValueError(f"{path} does not fit the 3D ResNet-50: missing {missing[:4]}, unexpected {unexpected[:4]}")
        self.num_frames, self.resolution = int(num_frames), resolution
        self.num_features = self.net.num_features
        self.weights_identity = weights_identity(path)
        self.register_buffer("mean", torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(KINETICS_STD).view(1, 3, 1, 1, 1), persistent=False)
        self.eval()
        self.requires_grad_(False)

    @property
    def protocol(self) -> MetricProtocol:
        random = self.weights_identity == "random"
        return MetricProtocol(
            evaluator="resnet3d",
            feature_network="3D ResNet-50 Kinetics pool (2048-d, Hara et al.; DisCo FID-VID)"
            + (" RANDOM-WEIGHT STAND-IN" if random else ""),
            feature_weights=self.weights_identity,
            resize=f"first {self.num_frames} frames; bilinear to {self.resolution}x{self.resolution}; Kinetics mean/std"
            if self.resolution else f"first {self.num_frames} frames; native size; Kinetics mean/std",
            random_weights=random,
        )

    def forward(self, videos: Tensor) -> Tensor:
        check_images(videos, "3D ResNet input videos", ndim=5, channels=(3,))
        if videos.shape[1] < self.num_frames:
            raise ValueError(f"3D ResNet input videos: expected at least {self.num_frames} frames, received {videos.shape[1]}")
        x = videos[:, : self.num_frames].float()
        b, t, c, h, w = x.shape
        x = x.reshape(b * t, c, h, w)
        if self.resolution is not None and (h, w) != (self.resolution, self.resolution):
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        x = x.reshape(b, t, c, *x.shape[-2:]).permute(0, 2, 1, 3, 4)
        x = ((x + 1) / 2 - self.mean) / self.std
        return self.net.features(x.contiguous())


__all__ = ["ResNet3D", "ResNet3DFeatures", "load_resnet3d_state", "RESNET3D_WEIGHTS_HINT"]

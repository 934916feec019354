"""LTT-GAN's perceptual, style and identity terms (thesis 001 Ch. 6, §6.3.5, Eqs. 6.14-6.15).

* :class:`VGGPerceptualStyle` (Eq. 6.14): L1 between VGG-19 features taken **before** the
  activation (ESRGAN convention) at conv1_2 / conv2_2 / conv3_4 / conv4_4 / conv5_4 with the
  code's layer weights 0.1 / 0.1 / 1 / 1 / 1, plus the Gram-matrix style loss (GFPGAN's
  ``PerceptualLoss``: gram = F F^T / (C H W), L1, the same layer weights). Inputs go [-1, 1] ->
  [0, 1] -> ImageNet mean/std. The VGG-19 comes from
  :func:`lightning_modules.components.semantic_features.build_vgg19_features` (torchvision
  weights from a path); ``None`` leaves it random: a **stand-in**, reported as such.
* :class:`ArcFaceResNet18` (Eq. 6.15, [code] GFPGAN's ``ResNetArcFace``, ``IRBlock`` x [2, 2, 2, 2],
  no SE): 1-channel 128x128 input -> 512-d embedding. :func:`identity_input` makes the code's
  grey image (0.2989 R + 0.5870 G + 0.1140 B) bilinearly resized to 128. Weights
  (``arcface_resnet18.pth``) load from a path with the published key names (``module.`` prefixes
  of DataParallel files are stripped); without a path the network is random: a stand-in.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.components.semantic_features import build_vgg19_features, vgg19_layer_index

#: GFPGAN / LTT-GAN perceptual layer weights (before-ReLU taps).
PERCEPTUAL_LAYERS: dict[str, float] = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def gram(features: Tensor) -> Tensor:
    b, c, h, w = features.shape
    f = features.reshape(b, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


class TinyTapFeatures(nn.Module):
    """Stand-in for VGG-19 in tiny configs: a random 5-conv stack tapped like the real layers."""

    def __init__(self, channels: int = 8, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(int(seed))
        layers: list[nn.Module] = []
        in_ch = 3
        for i in range(5):
            layers += [nn.Conv2d(in_ch, channels, 3, 1, 1), nn.ReLU(), nn.AvgPool2d(2) if i < 4 else nn.Identity()]
            in_ch = channels
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            for p in self.features.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * (0.3 if p.dim() > 1 else 0.05))
        self.taps = {name: 3 * i for i, name in enumerate(PERCEPTUAL_LAYERS)}


class VGGPerceptualStyle(nn.Module):
    """Perceptual L1 + Gram style L1 over before-activation taps (module docstring).

    Args:
        vgg_weights: torchvision ``vgg19`` state dict path; ``None`` + ``stand_in=True`` uses
            :class:`TinyTapFeatures` (random stand-in).
        layer_weights: tap -> weight (default :data:`PERCEPTUAL_LAYERS`).
    """

    def __init__(self, vgg_weights: Optional[str] = None, layer_weights: Optional[Mapping[str, float]] = None,
                 stand_in: bool = False) -> None:
        super().__init__()
        self.layer_weights = dict(layer_weights or PERCEPTUAL_LAYERS)
        if stand_in:
            tiny = TinyTapFeatures()
            self.features, self.taps = tiny.features, tiny.taps
            self.random_weights = True
        else:
            last = max(self.layer_weights, key=vgg19_layer_index)
            self.features = build_vgg19_features(vgg_weights, last, mean=None, key="model.vgg_weights").features
            self.taps = {name: vgg19_layer_index(name) for name in self.layer_weights}
            self.random_weights = vgg_weights is None
        self.features.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def extract(self, images: Tensor) -> dict[str, Tensor]:
        x = ((images + 1) * 0.5 - self.mean) / self.std
        wanted = {index: name for name, index in self.taps.items()}
        out: dict[str, Tensor] = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in wanted:
                out[wanted[index]] = x
            if len(out) == len(wanted):
                break
        return out

    def forward(self, output: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        fo, ft = self.extract(output), self.extract(target.detach())
        percep = sum(w * F.l1_loss(fo[n], ft[n]) for n, w in self.layer_weights.items())
        style = sum(w * F.l1_loss(gram(fo[n]), gram(ft[n])) for n, w in self.layer_weights.items())
        return percep, style  # type: ignore[return-value]


def identity_input(images: Tensor, size: int = 128) -> Tensor:
    """[-1, 1] RGB -> the code's grey (0.2989, 0.5870, 0.1140) ``[B, 1, size, size]`` (bilinear)."""
    grey = 0.2989 * images[:, 0:1] + 0.5870 * images[:, 1:2] + 0.1140 * images[:, 2:3]
    return F.interpolate(grey, size=(size, size), mode="bilinear", align_corners=False)


def _conv3x3(i: int, o: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(i, o, 3, stride, 1, bias=False)


class IRBlock(nn.Module):
    """ArcFace's improved residual block: BN -> conv -> BN -> PReLU -> conv(stride) -> BN, + shortcut, PReLU."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(inplanes)
        self.conv1 = _conv3x3(inplanes, inplanes)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.prelu = nn.PReLU()
        self.conv2 = _conv3x3(inplanes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = (nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
                           if stride != 1 or inplanes != planes else None)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(self.bn0(x))))))
        return self.prelu(out + (self.downsample(x) if self.downsample is not None else x))


class ArcFaceResNet18(nn.Module):
    """GFPGAN's ``ResNetArcFace`` (IRBlock, [2, 2, 2, 2], no SE) on grey 128x128: 512-d embeddings."""

    def __init__(self, layers: Sequence[int] = (2, 2, 2, 2), width: int = 64, input_size: int = 128,
                 embedding: int = 512) -> None:
        super().__init__()
        self.input_size = input_size
        self.conv1 = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.prelu = nn.PReLU()
        self.maxpool = nn.MaxPool2d(2, 2)
        planes, inplanes = [width, 2 * width, 4 * width, 8 * width], width
        for index, (count, plane) in enumerate(zip(layers, planes), 1):
            blocks = [IRBlock(inplanes, plane, 1 if index == 1 else 2)] + [IRBlock(plane, plane) for _ in range(count - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
            inplanes = plane
        self.bn4 = nn.BatchNorm2d(inplanes)
        self.dropout = nn.Dropout()
        side = input_size // 16
        self.fc5 = nn.Linear(inplanes * side * side, embedding)
        self.bn5 = nn.BatchNorm1d(embedding)
        self.random_weights = True
        self.weights_identity = "random"

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.prelu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn4(x))
        return self.bn5(self.fc5(x.flatten(1)))


def load_arcface(path: Optional[str], key: str = "model.arcface_path", **kwargs) -> ArcFaceResNet18:
    """ArcFace-ResNet18 with weights from ``path`` (strict, published key names), frozen; ``None``: random stand-in."""
    net = ArcFaceResNet18(**kwargs)
    if path is not None:
        from lightning_modules.ltt_gan.stylegan2 import read_checkpoint
        from metrics.protocol import weights_identity

        state = {k[len("module."):] if k.startswith("module.") else k: v
                 for k, v in read_checkpoint(path, key).items()}
        own = net.state_dict()
        bad = [k for k in own if k not in state or tuple(state[k].shape) != tuple(own[k].shape)]
        if bad:
            raise ValueError(f"{key}: {path!r} does not hold an ArcFace-ResNet18 (IRBlock [2,2,2,2]) state dict; "
                             f"mismatching keys {bad[:4]}")
        net.load_state_dict({k: state[k] for k in own}, strict=True)
        net.random_weights, net.weights_identity = False, weights_identity(Path(path))
    return net.requires_grad_(False).eval()


class IdentityEmbedder(nn.Module):
    """RGB [-1, 1] -> code's grey 128x128 -> ArcFace embedding (for metrics.identity.IdentitySimilarity)."""

    def __init__(self, arcface: ArcFaceResNet18) -> None:
        super().__init__()
        self.arcface = arcface
        self.weights_identity = arcface.weights_identity

    def forward(self, images: Tensor) -> Tensor:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return self.arcface(identity_input(images, self.arcface.input_size))


class ArcFaceIdentityEmbedder(IdentityEmbedder):
    """Config entry for ``metrics.identity.IdentitySimilarity`` (Deg. %, Table 6.1): ArcFace-R18 from a path.

    ``weights_path=None`` is the random stand-in (the metric then reports random weights).
    """

    def __init__(self, weights_path: Optional[str] = None) -> None:
        super().__init__(load_arcface(weights_path, key="metric embedder weights_path"))


__all__ = ["ArcFaceIdentityEmbedder", "ArcFaceResNet18", "IRBlock", "IdentityEmbedder", "PERCEPTUAL_LAYERS", "TinyTapFeatures",
           "VGGPerceptualStyle", "gram", "identity_input", "load_arcface"]

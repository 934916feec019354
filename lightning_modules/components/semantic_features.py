"""Frozen semantic feature extractors Phi for D2SM (thesis 001, Ch. 9, §9.3).

The thesis uses "the penultimate layer of VGG"; the authors' code (MKFMIKU/d2sm) takes
torchvision's VGG-19 ``features[:35]``, i.e. up to conv5_4 *before* its ReLU, after a mean
shift ``x - (0.4488, 0.4371, 0.4040)`` on ``[0, 1]`` inputs (std 1). :func:`build_vgg19_features`
builds exactly that from the real ``torchvision.models.vgg19`` architecture and loads the
ImageNet weights from a local file (torchvision's ``vgg19-dcbb9e9d.pth``; nothing downloads).
Any other VGG-19 layer can be named (``conv4_4``, ``relu5_4``, ...).

:class:`TinyRandomFeatures` is a **stand-in** (two random conv layers) for CPU tests and tiny
configs; a module using it reports ``uses_random_weights`` so results rows say ``random``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from lightning_modules.components.pretrained_paths import require_files

#: Mean of the d2sm code's MeanShift (the DIV2K RGB mean used by EDSR-style code), on [0, 1].
D2SM_RGB_MEAN: tuple[float, float, float] = (0.4488, 0.4371, 0.4040)
VGG19_SOURCE = "torchvision ImageNet VGG-19, https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"

# torchvision vgg19 (config "E") block sizes: conv layers per block.
_VGG19_BLOCKS = (2, 2, 4, 4, 4)


def vgg19_layer_index(layer: str) -> int:
    """Index in ``vgg19().features`` of a named layer (``conv5_4`` -> 34, ``relu5_4`` -> 35, ``pool5`` -> 36)."""
    names: list[str] = []
    for block, count in enumerate(_VGG19_BLOCKS, 1):
        for conv in range(1, count + 1):
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
        names.append(f"pool{block}")
    if layer not in names:
        raise ValueError(f"unknown VGG-19 layer {layer!r}; choose one of {names}")
    return names.index(layer)


class ShiftedFeatures(nn.Module):
    """``[-1, 1]`` images -> ``[0, 1]`` -> subtract ``mean`` (std 1) -> ``features``."""

    def __init__(self, features: nn.Module, mean: Optional[Sequence[float]] = D2SM_RGB_MEAN,
                 random_weights: bool = False) -> None:
        super().__init__()
        self.features = features
        self.register_buffer("mean", torch.tensor(mean if mean is not None else (0.0, 0.0, 0.0)).view(1, 3, 1, 1),
                             persistent=False)
        self.random_weights = bool(random_weights)

    def forward(self, images: Tensor) -> Tensor:
        return self.features((images + 1.0) * 0.5 - self.mean)


def build_vgg19_features(weights_path: Optional[str], layer: str = "conv5_4",
                         mean: Optional[Sequence[float]] = D2SM_RGB_MEAN, key: str = "vgg_weights") -> ShiftedFeatures:
    """VGG-19 ``features`` up to and including ``layer``, frozen, weights from ``weights_path``.

    ``weights_path=None`` keeps torchvision's random initialisation: a **stand-in**
    (``random_weights=True``), for shape checks and the meta device only.
    The file is a torchvision ``vgg19`` state dict (``features.N.weight`` keys); a
    state dict of ``features`` alone (``N.weight``) is accepted too.
    """
    from torchvision.models import vgg19

    if weights_path is None:
        net = vgg19(weights=None)
    else:  # weights come from the file: skip the 140M-parameter random init (classifier included)
        with torch.device("meta"):
            net = vgg19(weights=None)
    features = nn.Sequential(*list(net.features.children())[: vgg19_layer_index(layer) + 1])
    if weights_path is not None:
        features = features.to_empty(device="cpu")
        path = require_files(weights_path, key, [""], VGG19_SOURCE)
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"{key}: '{path}' is not a state dict (found {type(state).__name__})")
        if any(k.startswith("features.") for k in state):
            state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        wanted = features.state_dict()
        missing = [k for k in wanted if k not in state]
        if missing:
            raise ValueError(f"{key}: '{path}' lacks VGG-19 feature weights {missing[:4]} (expected torchvision's layout)")
        features.load_state_dict({k: state[k] for k in wanted}, strict=True)
    features.requires_grad_(False).eval()
    return ShiftedFeatures(features, mean, random_weights=weights_path is None)


class TinyRandomFeatures(ShiftedFeatures):
    """Stand-in Phi with random weights (two 3x3 conv layers, stride 2): CPU tests and tiny configs only."""

    def __init__(self, channels: int = 8, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(int(seed))
        features = nn.Sequential(nn.Conv2d(3, channels, 3, 2, 1), nn.ReLU(), nn.Conv2d(channels, channels, 3, 2, 1))
        with torch.no_grad():
            for p in features.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * (0.5 if p.dim() > 1 else 0.1))
        features.requires_grad_(False).eval()
        super().__init__(features, D2SM_RGB_MEAN, random_weights=True)


def build_semantic_features(kind: str = "vgg19", weights_path: Optional[str] = None, layer: str = "conv5_4",
                            tiny_channels: int = 8) -> ShiftedFeatures:
    """Config entry point: ``kind="vgg19"`` (the paper's Phi, weights from a path) or ``"tiny_random"`` (stand-in)."""
    if kind == "vgg19":
        if weights_path is None:
            raise ValueError("vgg_weights is null: D2SM's Phi needs VGG-19 ImageNet weights "
                             f"({VGG19_SOURCE}); use phi: tiny_random for tests")
        if not Path(weights_path).expanduser().exists():
            require_files(weights_path, "vgg_weights", [""], VGG19_SOURCE)
        return build_vgg19_features(weights_path, layer)
    if kind == "tiny_random":
        return TinyRandomFeatures(tiny_channels)
    raise ValueError(f"phi must be 'vgg19' or 'tiny_random', received {kind!r}")


__all__ = ["D2SM_RGB_MEAN", "ShiftedFeatures", "TinyRandomFeatures", "build_semantic_features",
           "build_vgg19_features", "vgg19_layer_index"]

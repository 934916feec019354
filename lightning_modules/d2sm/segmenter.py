"""The semantic probe of Table 9.1: a Cityscapes segmenter run on restored images (19 classes).

The thesis does not name its evaluation segmenter; HRNet-W48 trained on Cityscapes (the
network of the cross-entropy baseline it compares with, Liu et al. TIP 2020) is the likely one.
No installed library ships HRNet-W48 *segmentation* (timm has the ImageNet classifier only), so
the interface is: a segmenter maps ``[B, 3, H, W]`` images in [-1, 1] to logits
``[B, 19, H', W']`` (upsampled to the label size here). :func:`load_segmenter` loads

* a TorchScript file (``torch.jit.save`` of the authors' HRNet-W48 / OCR model, exported
  once where its code runs; the export takes ImageNet-normalised input, applied here), or
* a state dict for a class given by import path (``module.Class``) with init kwargs.

:class:`TinyRandomSegmenter` is a **stand-in** (random 2-layer conv net) for CPU tests.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.components.pretrained_paths import require_files

CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
                      "bicycle")
HRNET_SOURCE = "HRNet-Semantic-Segmentation (HRNet-W48 Cityscapes), exported with torch.jit.save"
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class NormalisedSegmenter(nn.Module):
    """[-1, 1] -> ImageNet-normalised input -> wrapped network -> logits at the input size."""

    def __init__(self, net: nn.Module, random_weights: bool = False, imagenet_norm: bool = True) -> None:
        super().__init__()
        self.net, self.random_weights, self.imagenet_norm = net, bool(random_weights), bool(imagenet_norm)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        x = (images + 1.0) * 0.5
        if self.imagenet_norm:
            x = (x - self.mean) / self.std
        logits = self.net(x)
        if isinstance(logits, (tuple, list)):
            logits = logits[-1]
        if logits.shape[-2:] != images.shape[-2:]:
            logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return logits


class TinyRandomSegmenter(NormalisedSegmenter):
    """Stand-in segmenter with random weights (tests only): 2 conv layers, 19 classes."""

    def __init__(self, num_classes: int = 19, width: int = 8, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(int(seed))
        net = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, num_classes, 3, padding=1))
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
        super().__init__(net, random_weights=True, imagenet_norm=False)


def load_segmenter(kind: str = "tiny_random", path: Optional[str] = None, class_path: Optional[str] = None,
                   init_args: Optional[Mapping[str, Any]] = None, num_classes: int = 19) -> NormalisedSegmenter:
    """Build the evaluation segmenter: ``tiny_random`` (stand-in), ``torchscript`` or ``state_dict``."""
    if kind == "tiny_random":
        return TinyRandomSegmenter(num_classes)
    if path is None:
        raise ValueError(f"segmenter_path is null but segmenter={kind!r} needs a file ({HRNET_SOURCE})")
    file = require_files(path, "segmenter_path", [""], HRNET_SOURCE)
    if kind == "torchscript":
        net = torch.jit.load(str(file), map_location="cpu")
    elif kind == "state_dict":
        if not class_path or "." not in class_path:
            raise ValueError("segmenter=state_dict needs segmenter_class 'package.module.Class'")
        module_name, _, cls_name = class_path.rpartition(".")
        net = getattr(importlib.import_module(module_name), cls_name)(**dict(init_args or {}))
        state = torch.load(file, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        net.load_state_dict(state)
    else:
        raise ValueError(f"segmenter must be 'tiny_random', 'torchscript' or 'state_dict', received {kind!r}")
    seg = NormalisedSegmenter(net)
    seg.requires_grad_(False).eval()
    return seg


__all__ = ["CITYSCAPES_CLASSES", "NormalisedSegmenter", "TinyRandomSegmenter", "load_segmenter"]

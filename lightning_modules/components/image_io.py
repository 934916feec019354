"""Writing generated images to disk: one PNG per sample and a grid per batch."""
from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torchvision.utils import make_grid


def to_uint8(images: Tensor) -> Tensor:
    """[-1, 1] float images ``[B, C, H, W]`` -> uint8 ``[B, H, W, C]`` on the CPU."""
    if images.dim() != 4:
        raise ValueError(f"expected images [B, C, H, W], got shape {tuple(images.shape)}")
    scaled = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).cpu()


def _pil(array: Tensor) -> Image.Image:
    data = array.numpy()
    return Image.fromarray(data[..., 0] if data.shape[-1] == 1 else data)


def save_images(images: Tensor, folder: Path, prefix: str) -> list[Path]:
    """Save each image of a batch as ``<folder>/<prefix>_<i>.png``; return the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, array in enumerate(to_uint8(images)):
        path = folder / f"{prefix}_{index:04d}.png"
        _pil(array).save(path)
        paths.append(path)
    return paths


def save_grid(images: Tensor, path: Path, nrow: int | None = None) -> Path:
    """Save a batch as one grid PNG (square-ish unless ``nrow`` is given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nrow = nrow or max(1, int(math.ceil(math.sqrt(images.shape[0]))))
    grid = make_grid(images.detach().float().clamp(-1, 1), nrow=nrow, normalize=True, value_range=(-1, 1))
    _pil(to_uint8(grid.unsqueeze(0) * 2 - 1)[0]).save(path)
    return path

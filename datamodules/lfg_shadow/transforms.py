"""Shadow-removal preprocessing (thesis 001 Ch. 7 §7.4): reading masks, 256x256 resize, k = 21 dilation, flips/rotations.

* Images resize bicubically, masks with nearest neighbours ([code] ``cv2.resize`` INTER_CUBIC /
  INTER_NEAREST), images to ``[-1, 1]``.
* "We empirically dilate all shadow masks in a kernel size of k = 21" (§7.4): a 21x21 max filter
  (binary dilation with a square structuring element, as the [code]'s
  ``kornia.morphology.dilation(mask, ones(21, 21))``), applied at the model resolution after the
  resize. The dilated mask is the model's input; the evaluation regions use the mask as given.
* Train augmentation: random horizontal flip and rotation by a multiple of 90 degrees, the same
  for the whole triplet ([code] basicsr ``augment(use_hflip, use_rot)``: hflip, vflip, transpose).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from datamodules.image_folder import read_image

__all__ = ["augment_triplet", "dilate_mask", "load_mask", "load_rgb", "resize_image", "resize_mask"]


def load_rgb(path: Path) -> Tensor:
    """An image file as float32 ``[3, H, W]`` in ``[-1, 1]`` (:class:`ImageReadError` names a bad file)."""
    array = np.asarray(read_image(Path(path), 3), dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1.0


def load_mask(path: Path, binarize_threshold: Optional[float] = None) -> Tensor:
    """A shadow mask file as float32 ``[1, H, W]`` in {0, 1}.

    Masks must be binary (only black and one other grey level, as ISTD/AISTD/SRD masks are);
    anything else is an error naming the file unless ``binarize_threshold`` (0..255) is given.
    """
    array = np.asarray(read_image(Path(path), 1), dtype=np.uint8)
    values = np.unique(array)
    if binarize_threshold is None:
        if len(values) > 2 or (len(values) == 2 and values[0] != 0):
            shown = ", ".join(str(v) for v in values[:6]) + (" ..." if len(values) > 6 else "")
            raise ValueError(f"mask {path} is not binary: it has {len(values)} grey levels ({shown}); "
                             f"pass binarize_threshold to threshold it")
        binary = array > 0
    else:
        binary = array > float(binarize_threshold)
    return torch.from_numpy(binary.astype(np.float32))[None]


def resize_image(image: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Bicubic resize of ``[C, H, W]`` / ``[B, C, H, W]`` images in ``[-1, 1]`` (antialiased; clamped)."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    batch = image if image.ndim == 4 else image[None]
    if tuple(batch.shape[-2:]) != hw:
        batch = F.interpolate(batch, size=hw, mode="bicubic", align_corners=False, antialias=True).clamp(-1, 1)
    return batch if image.ndim == 4 else batch[0]


def resize_mask(mask: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of ``[1, H, W]`` / ``[B, 1, H, W]`` masks."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    batch = mask if mask.ndim == 4 else mask[None]
    if tuple(batch.shape[-2:]) != hw:
        batch = F.interpolate(batch.float(), size=hw, mode="nearest")
    return batch if mask.ndim == 4 else batch[0]


def dilate_mask(mask: Tensor, kernel_size: int = 21) -> Tensor:
    """Binary dilation with a ``k x k`` square (a max filter); ``k <= 1`` returns the mask."""
    if kernel_size <= 1:
        return mask
    if kernel_size % 2 == 0:
        raise ValueError(f"mask dilation kernel size must be odd, got {kernel_size}")
    batch = mask if mask.ndim == 4 else mask[None]
    out = F.max_pool2d(batch.float(), kernel_size, stride=1, padding=kernel_size // 2)
    return out if mask.ndim == 4 else out[0]


def augment_triplet(tensors: dict[str, Tensor], generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
    """The same random hflip / vflip / transpose for every ``[C, H, W]`` tensor of a sample."""
    flips = torch.rand(3, generator=generator) < 0.5
    out = {}
    for key, value in tensors.items():
        if bool(flips[0]):
            value = value.flip(-1)
        if bool(flips[1]):
            value = value.flip(-2)
        if bool(flips[2]):
            value = value.transpose(-1, -2)
        out[key] = value.contiguous()
    return out


def save_rgb(image: Tensor, path: Path) -> None:
    """``[3, H, W]`` in ``[-1, 1]`` -> an 8-bit image file."""
    array = ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    Image.fromarray(array).save(path)

"""Per-capture paste augmentation of Total Selfie (thesis 000, Ch. 3, supplement §3.5.5).

"We extract the bounding box of the upper body in I_n based on the semantic map of I_n ... Then we
resize I_u to have the same height as this bounding box. The resize operation keeps the aspect
ratio of I_u unchanged ... Finally, we paste this resized I_u to the masked I_b, ensuring the
center of resized I_u and the bounding box are the same." 200 such images (random ``I_n`` of 20
candidates, random selfie) form the fine-tuning set.

Parts of the pasted selfie outside the image are cut off; the pasted pixels replace the masked
background only where they land ([GAP]: the thesis does not say whether pixels outside the mask
``M`` are pasted; here they are, since the loss covers the whole image, "similar to Eq. 3.1").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

BODY_PART_OF_SELFIE = {"face": "face", "upper": "upper", "lower": "lower", "shoes": "shoes"}


def paste_geometry(box: tuple[int, int, int, int], selfie_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the resized selfie: bbox height, aspect kept, centres equal."""
    top, left, bottom, right = box
    height = max(1, bottom - top)
    width = max(1, int(round(selfie_hw[1] * height / selfie_hw[0])))
    cy, cx = (top + bottom) / 2.0, (left + right) / 2.0
    return int(round(cy - height / 2.0)), int(round(cx - width / 2.0)), height, width


def paste_selfie(canvas: Tensor, selfie: Tensor, box: tuple[int, int, int, int]) -> Tensor:
    """A copy of ``canvas [3, H, W]`` with ``selfie [3, h, w]`` resized and pasted over ``box`` (module docstring)."""
    top, left, height, width = paste_geometry(box, tuple(selfie.shape[-2:]))
    resized = F.interpolate(selfie[None].float(), size=(height, width), mode="bilinear", align_corners=False)[0]
    out = canvas.clone()
    H, W = canvas.shape[-2:]
    t0, l0 = max(0, top), max(0, left)
    t1, l1 = min(H, top + height), min(W, left + width)
    if t1 > t0 and l1 > l0:
        out[:, t0:t1, l0:l1] = resized[:, t0 - top: t1 - top, l0 - left: l1 - left]
    return out


def part_box(label_map: Tensor, labels: set[int]) -> tuple[int, int, int, int] | None:
    """``(top, left, bottom, right)`` of the pixels whose label is in ``labels``; ``None`` if none."""
    region = torch.zeros_like(label_map, dtype=torch.bool)
    for label in labels:
        region |= label_map == label
    rows, cols = torch.nonzero(region.any(1)).flatten(), torch.nonzero(region.any(0)).flatten()
    if rows.numel() == 0:
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


__all__ = ["BODY_PART_OF_SELFIE", "part_box", "paste_geometry", "paste_selfie"]

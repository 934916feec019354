"""The on-disk layouts of Total Selfie (thesis 000, Ch. 3, §3.2.1, §3.6.1).

**Synthetic training pairs** ``{(S', I'_gt * M', M'), I'_gt}`` (the authors' generated set, 39,816
pairs, or the output of ``datamodules/total_selfie/generate.py``)::

    <root>/<split>/<pair>/gt.png  face.png  upper.png  lower.png  shoes.png  mask.png
                          [foreground.png  pose.png]

``mask.png`` is the inpainting box (white = inpaint) at ``gt.png``'s size; ``foreground.png`` the
fine person mask and ``pose.png`` the Canny hint (both optional; for the background-preserving
sampler and validation).

**Capture** (one on-site session, §3.6.1: five square photos + the user's photo collection)::

    <capture>/face.*  upper.*  lower.*  shoes.*  background.*
              photos/*            (the collection Phi for reference selection)
              [reference.*]       (a chosen reference photo I_r; skips automatic selection)
              [pose.*]            (a given pose hint I_t, e.g. an OpenPose skeleton render; needed for control: openpose)
              [gt.*]              (evaluation: the real full-body photo taken by another person)

Any image extension (``.png``, ``.jpg``, ``.jpeg``, ``.webp``); a missing file is one error naming it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from datamodules.codi_tasks import IMAGE_EXTENSIONS
from datamodules.predict_inputs import load_image_tensor

SELFIE_NAMES = ("face", "upper", "lower", "shoes")
PAIR_FILES = ("gt", *SELFIE_NAMES, "mask")


def find_image(folder: Path, stem: str, required: bool = True) -> Optional[Path]:
    """``<folder>/<stem>.<ext>`` for any image extension; a clear error naming it when required and absent."""
    for ext in IMAGE_EXTENSIONS:
        for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    if required:
        raise FileNotFoundError(f"missing {folder / stem}.png (or .jpg): a Total Selfie "
                                f"{'capture' if stem in (*SELFIE_NAMES, 'background') else 'pair'} needs "
                                f"{', '.join(SELFIE_NAMES)} and background images")
    return None


def resize(image: Tensor, size: int, nearest: bool = False) -> Tensor:
    if tuple(image.shape[-2:]) == (size, size):
        return image
    if nearest:
        return F.interpolate(image[None].float(), size=(size, size), mode="nearest")[0]
    return F.interpolate(image[None].float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0].clamp(-1, 1)


def read_mask(path: Path, like: Tensor, gt_path: Path) -> Tensor:
    """A binary mask ``[1, H, W]`` that must have ``gt``'s size (an error names both files otherwise)."""
    mask = load_image_tensor(path, channels=1)
    if tuple(mask.shape[-2:]) != tuple(like.shape[-2:]):
        raise ValueError(f"mask {path} is {mask.shape[-1]}x{mask.shape[-2]} but {gt_path} is "
                         f"{like.shape[-1]}x{like.shape[-2]}: the mask must have the image's size")
    return (mask > 0.0).float()


def read_pair(folder: Path, size: int, selfie_size: int) -> dict[str, Any]:
    """One synthetic pair at ``size`` (square) with selfies at ``selfie_size``."""
    gt_path = find_image(folder, "gt")
    gt = load_image_tensor(gt_path)
    mask = read_mask(find_image(folder, "mask"), gt, gt_path)
    item: dict[str, Any] = {
        "image": resize(gt, size),
        "mask": resize(mask, size, nearest=True),
        "selfies": torch.stack([resize(load_image_tensor(find_image(folder, n)), selfie_size) for n in SELFIE_NAMES]),
        "name": folder.name,
    }
    fg = find_image(folder, "foreground", required=False)
    if fg is not None:
        item["foreground"] = resize(read_mask(fg, gt, gt_path), size, nearest=True)
        item["foreground_image"] = item["image"] * item["foreground"] - (1 - item["foreground"])
    pose = find_image(folder, "pose", required=False)
    if pose is not None:
        item["pose"] = (resize(load_image_tensor(pose), size) + 1) / 2
    return item


def pair_folders(root: Path, split: str) -> list[Path]:
    base = root / split
    if not base.is_dir():
        raise FileNotFoundError(f"data.init_args.root: no '{split}' folder in {root} (expected {base}/<pair>/gt.png ...)")
    folders = sorted(p for p in base.iterdir() if p.is_dir())
    if not folders:
        raise FileNotFoundError(f"{base} holds no pair folders (<pair>/gt.png, face.png, ..., mask.png)")
    return folders


def read_capture_files(folder: Path) -> dict[str, Any]:
    """The files of one capture folder (module docstring), checked; images loaded at their own size."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"capture folder {folder} does not exist")
    item: dict[str, Any] = {name: load_image_tensor(find_image(folder, name)) for name in (*SELFIE_NAMES, "background")}
    photo_dir = folder / "photos"
    photos = sorted(p for p in photo_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS) if photo_dir.is_dir() else []
    reference = find_image(folder, "reference", required=False)
    if not photos and reference is None:
        raise FileNotFoundError(f"capture {folder}: no photos/ collection (and no reference.png): reference "
                                "selection needs at least one full-body photo")
    item["photo_paths"] = photos
    item["photos"] = [load_image_tensor(p) for p in photos]
    item["reference_path"] = reference
    item["reference"] = load_image_tensor(reference) if reference is not None else None
    pose = find_image(folder, "pose", required=False)  # a given hint (an OpenPose skeleton render for control: openpose)
    item["pose"] = None if pose is None else (load_image_tensor(pose) + 1) / 2
    item["pose_path"] = pose
    gt = find_image(folder, "gt", required=False)
    item["gt_path"] = gt
    item["gt"] = load_image_tensor(gt) if gt is not None else None
    item["path"] = str(folder)
    item["name"] = folder.name
    return item


__all__ = ["PAIR_FILES", "SELFIE_NAMES", "find_image", "pair_folders", "read_capture_files", "read_mask", "read_pair",
           "resize"]

"""Subject images for DreamBooth fine-tuning (thesis 001, Ch. 2 downstream; Ruiz et al. 2023).

``DreamBoothSubjectsDataModule`` reads the DreamBooth dataset layout (google/dreambooth: one folder per
subject, ``root/<subject>/*.jpg``, 3-5 images each): ``root`` + ``subject`` names the folder (``subject:
null`` reads image files directly in ``root``). Every image is resized to cover ``size`` and centre-cropped.
Batches: ``image`` ``[B, 3, size, size]`` in [-1, 1] and ``caption`` (the instance prompt, e.g.
``"a photo of sks dog"``, for every image). DreamBooth has no held-out split, so validation reads the same
subject images (its loss measures how well the subject is fitted); ``repeats`` lengthens an epoch.

``root: null`` is the embedded default, a **stand-in subject**: ``stand_in_images`` (4) overlapping crops
of scikit-image's ``chelsea`` photo (a cat), so use a cat instance / class prompt with it
(``configs/ldm_scaling/dreambooth.yaml`` does).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from datamodules._common import EmbeddedDataModule, uint8_to_unit
from datamodules.codi_tasks import IMAGE_EXTENSIONS, read_image
from datamodules.photos import load_skimage_photo, resize_short_side

log = logging.getLogger(__name__)


class _SubjectImages(Dataset):
    """Fixed subject images, each paired with the instance prompt; ``repeats`` passes per epoch."""

    def __init__(self, images: Tensor, prompt: str, repeats: int = 1) -> None:
        self.images, self.prompt, self.repeats = images, prompt, int(repeats)

    def __len__(self) -> int:
        return len(self.images) * self.repeats

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index % len(self.images)], "caption": self.prompt}


def _cover_crop(image: Tensor, size: int) -> Tensor:
    h, w = image.shape[-2:]
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    image = F.interpolate(image[None], size=new, mode="bicubic", antialias=True, align_corners=False)[0]
    top, left = (new[0] - size) // 2, (new[1] - size) // 2
    return image[:, top : top + size, left : left + size].clamp(-1, 1)


def stand_in_subject(size: int, count: int = 4, photo: str = "chelsea") -> Tensor:
    """``count`` overlapping square crops of one scikit-image photo (the cat): ``[count, 3, size, size]``.

    The photo is resized so its short side is ``1.25 * size``; crops sit at evenly spaced positions along
    the diagonal, so each one still shows most of the subject.
    """
    image = resize_short_side(load_skimage_photo(photo), max(size, round(1.25 * size)))
    h, w = image.shape[:2]
    ys = np.linspace(0, h - size, count).round().astype(int)
    xs = np.linspace(0, w - size, count).round().astype(int)
    crops = np.stack([image[y : y + size, x : x + size] for y, x in zip(ys.tolist(), xs.tolist())])
    return uint8_to_unit(torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2))


class DreamBoothSubjectsDataModule(EmbeddedDataModule):
    """One DreamBooth subject (module docstring).

    Args:
        root: the DreamBooth dataset folder (``None``: the embedded stand-in subject).
        subject: subfolder of ``root`` holding the subject's images (``None``: images directly in ``root``).
        instance_prompt: the caption of every subject image (rare identifier + class noun).
        size: image side in pixels.
        repeats: passes over the subject images per epoch.
        stand_in_images: crops of the stand-in photo when ``root`` is null.
    """

    def __init__(self, root: Optional[str] = None, subject: Optional[str] = None,
                 instance_prompt: str = "a photo of sks dog", size: int = 512, repeats: int = 1,
                 stand_in_images: int = 4, batch_size: int = 4, num_workers: int = 0, seed: int = 0,
                 pin_memory: bool = False) -> None:
        super().__init__(batch_size, num_workers, 0.1, seed, pin_memory)  # val_fraction unused: val = the subject
        if repeats < 1 or stand_in_images < 1:
            raise ValueError("repeats and stand_in_images must be >= 1")
        self.root, self.subject, self.instance_prompt = root, subject, str(instance_prompt)
        self.size, self.repeats, self.stand_in_images = int(size), int(repeats), int(stand_in_images)

    def subject_images(self) -> Tensor:
        if self.root is None:
            log.info("DreamBoothSubjectsDataModule: root is null, using %d crops of skimage 'chelsea' (a cat) as a "
                     "stand-in subject with the prompt %r", self.stand_in_images, self.instance_prompt)
            return stand_in_subject(self.size, self.stand_in_images)
        folder = Path(self.root).expanduser()
        if self.subject is not None:
            folder = folder / self.subject
        if not folder.is_dir():
            raise FileNotFoundError(f"DreamBoothSubjectsDataModule: subject folder {folder} does not exist")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
        if not files:
            subjects = sorted(p.name for p in folder.iterdir() if p.is_dir())
            hint = f"; set data.init_args.subject to one of {subjects}" if subjects else ""
            raise FileNotFoundError(f"DreamBoothSubjectsDataModule: no images in {folder}{hint}")
        if not 3 <= len(files) <= 5:
            log.warning("DreamBoothSubjectsDataModule: %d images in %s (DreamBooth uses 3-5)", len(files), folder)
        return torch.stack([_cover_crop(read_image(p), self.size) for p in files])

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        images = self.subject_images()
        return _SubjectImages(images, self.instance_prompt, self.repeats), _SubjectImages(images, self.instance_prompt)


__all__ = ["DreamBoothSubjectsDataModule", "stand_in_subject"]

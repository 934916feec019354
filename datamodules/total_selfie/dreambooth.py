"""Two-concept DreamBooth data for Total Selfie's appearance refinement (thesis 000, Ch. 3, supplement §3.5.6).

"We randomly resize the face selfie I_f from a resolution of 350 to 450 and apply random zero-padding to
create the augmented image with a resolution of 512. The same operation is performed for the shoes selfie
I_s, but with resizing resolution from 400 to 500. We generate 50 augmented images for I_f and I_s
respectively", captioned "a sks face" and "a hta shoes". Batches: ``image`` and ``caption`` (the
``ScaledLDMDreamBooth`` contract). The ranges scale with ``size`` (350/512 ... 450/512 of it).
``capture: null`` uses the embedded stick-figure capture (a stand-in).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from datamodules._common import EmbeddedDataModule, sample_rng
from datamodules.total_selfie.embedded import embedded_capture
from datamodules.total_selfie.layouts import find_image
from datamodules.predict_inputs import load_image_tensor

CONCEPTS = {"face": ("a sks face", (350, 450)), "shoes": ("a hta shoes", (400, 500))}


def pad_augment(image: torch.Tensor, side: int, size: int, rng: Any) -> torch.Tensor:
    """Resize ``image`` to ``side`` (square) and zero-pad (black, -1) at a random place to ``size``."""
    small = F.interpolate(image[None].float(), size=(side, side), mode="bilinear", align_corners=False, antialias=True)[0]
    out = -torch.ones(3, size, size)
    top, left = int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1))
    out[:, top:top + side, left:left + side] = small.clamp(-1, 1)
    return out


class _Augmented(Dataset):
    def __init__(self, images: dict[str, torch.Tensor], size: int, per_concept: int, seed: int, split: str) -> None:
        self.images, self.size, self.per_concept, self.seed, self.split = images, size, per_concept, seed, split

    def __len__(self) -> int:
        return self.per_concept * len(CONCEPTS)

    def __getitem__(self, index: int) -> dict[str, Any]:
        concept = list(CONCEPTS)[index % len(CONCEPTS)]
        prompt, (low, high) = CONCEPTS[concept]
        rng = sample_rng(self.seed, self.split, index)
        side = int(round(rng.integers(low, high + 1) * self.size / 512))
        return {"image": pad_augment(self.images[concept], min(side, self.size), self.size, rng), "caption": prompt}


class TotalSelfieDreamBoothDataModule(EmbeddedDataModule):
    """50 + 50 augmented face / shoe selfies of one capture (module docstring).

    Args:
        capture: the capture folder (``face.*``, ``shoes.*``; use the undistorted face and the shoe crop
            that ``predict`` writes as ``<capture>__face.png`` / ``__shoes.png`` when available).
        size: training resolution (512). per_concept: augmented images per concept (50).
    """

    def __init__(self, capture: Optional[str] = None, size: int = 512, per_concept: int = 50, batch_size: int = 4,
                 num_workers: int = 0, seed: int = 0, pin_memory: bool = False) -> None:
        super().__init__(batch_size, num_workers, 0.1, seed, pin_memory)
        self.capture, self.size, self.per_concept = capture, int(size), int(per_concept)

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        if self.capture is None:
            cap = embedded_capture(self.seed, 0, self.size, self.size)
            images = {"face": cap["face"], "shoes": cap["shoes"]}
        else:
            folder = Path(self.capture)
            images = {c: load_image_tensor(find_image(folder, c)) for c in CONCEPTS}
        return (_Augmented(images, self.size, self.per_concept, self.seed, "train"),
                _Augmented(images, self.size, 1, self.seed, "val"))


__all__ = ["CONCEPTS", "TotalSelfieDreamBoothDataModule", "pad_augment"]

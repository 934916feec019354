"""Two-concept DreamBooth data for Total Selfie's appearance refinement (thesis 000, Ch. 3, supplement §3.5.6).

"We randomly resize the face selfie I_f from a resolution of 350 to 450 and apply random zero-padding to
create the augmented image with a resolution of 512. The same operation is performed for the shoes selfie
I_s, but with resizing resolution from 400 to 500. We generate 50 augmented images for I_f and I_s
respectively", captioned "a sks face" and "a hta shoes". Batches: ``image`` and ``caption`` (the
``ScaledLDMDreamBooth`` contract). The ranges scale with ``size`` (350/512 ... 450/512 of it).
``capture: null`` uses the embedded stick-figure capture (a stand-in).

``concepts: selfies`` is the data of Table 3.1's *DreamBooth* baseline (§3.3, "Comparison to Baseline" (4):
"we use four selfies (with augmentation) as reference images"): all four selfies, one subject. [GAP] The
thesis gives neither the prompt nor the augmentation of that baseline: here "a photo of sks person" and the
face's resize range (350-450 of 512) with the same zero-padding, ``per_concept`` images per selfie.
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
BASELINE_PROMPT = "a photo of sks person"
BASELINE_CONCEPTS = {name: (BASELINE_PROMPT, (350, 450)) for name in ("face", "upper", "lower", "shoes")}
CONCEPT_SETS = {"refinement": CONCEPTS, "selfies": BASELINE_CONCEPTS}


def pad_augment(image: torch.Tensor, side: int, size: int, rng: Any) -> torch.Tensor:
    """Resize ``image`` to ``side`` (square) and zero-pad (black, -1) at a random place to ``size``."""
    small = F.interpolate(image[None].float(), size=(side, side), mode="bilinear", align_corners=False, antialias=True)[0]
    out = -torch.ones(3, size, size)
    top, left = int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1))
    out[:, top:top + side, left:left + side] = small.clamp(-1, 1)
    return out


class _Augmented(Dataset):
    def __init__(self, images: dict[str, torch.Tensor], size: int, per_concept: int, seed: int, split: str,
                 concepts: Optional[dict] = None) -> None:
        self.images, self.size, self.per_concept, self.seed, self.split = images, size, per_concept, seed, split
        self.concepts = CONCEPTS if concepts is None else concepts

    def __len__(self) -> int:
        return self.per_concept * len(self.concepts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        concept = list(self.concepts)[index % len(self.concepts)]
        prompt, (low, high) = self.concepts[concept]
        rng = sample_rng(self.seed, self.split, index)
        side = int(round(rng.integers(low, high + 1) * self.size / 512))
        return {"image": pad_augment(self.images[concept], min(side, self.size), self.size, rng), "caption": prompt}


class TotalSelfieDreamBoothDataModule(EmbeddedDataModule):
    """50 + 50 augmented face / shoe selfies of one capture (module docstring).

    Args:
        capture: the capture folder (``face.*``, ``shoes.*``; use the undistorted face and the shoe crop
            that ``predict`` writes as ``<capture>__face.png`` / ``__shoes.png`` when available).
        size: training resolution (512). per_concept: augmented images per concept (50).
        concepts: ``refinement`` (face + shoes, two prompts; §3.5.6) or ``selfies`` (the four selfies as one
            subject: the DreamBooth baseline of Table 3.1).
    """

    def __init__(self, capture: Optional[str] = None, size: int = 512, per_concept: int = 50, batch_size: int = 4,
                 num_workers: int = 0, seed: int = 0, pin_memory: bool = False, concepts: str = "refinement") -> None:
        super().__init__(batch_size, num_workers, 0.1, seed, pin_memory)
        if concepts not in CONCEPT_SETS:
            raise ValueError(f"data.init_args.concepts={concepts!r} is not one of {list(CONCEPT_SETS)}")
        self.capture, self.size, self.per_concept = capture, int(size), int(per_concept)
        self.concept_set = CONCEPT_SETS[concepts]

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        if self.capture is None:
            cap = embedded_capture(self.seed, 0, self.size, self.size)
            images = {c: cap[c] for c in self.concept_set}
        else:
            folder = Path(self.capture)
            images = {c: load_image_tensor(find_image(folder, c)) for c in self.concept_set}
        return (_Augmented(images, self.size, self.per_concept, self.seed, "train", self.concept_set),
                _Augmented(images, self.size, 1, self.seed, "val", self.concept_set))


__all__ = ["BASELINE_CONCEPTS", "BASELINE_PROMPT", "CONCEPTS", "CONCEPT_SETS", "TotalSelfieDreamBoothDataModule", "pad_augment"]

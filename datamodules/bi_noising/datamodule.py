"""Bi-Noising restoration pairs (thesis 001 Ch. 8, §8.4): colourisation, 4x SR, deraining, turbulence.

Batches (``docs/architecture.md``, "Batches")::

    image      float32 [B, 3, S, S] in [-1, 1]   clean target y0
    degraded   float32 [B, 3, s, s] in [-1, 1]   the observation x0 as a user has it (SR: S/4)
    condition  float32 [B, 3, S, S] in [-1, 1]   the conditional model's input (tasks.condition)
    name       list[str]

``source``: ``embedded`` (the default; also whenever ``root`` is null) degrades crops of the
scikit-image photos (:mod:`datamodules.photos`; train/validation from disjoint strips) or, with
``embedded_images: faces``, scikit-image's bundled LFW faces (``lfw_subset``: 200 grey 25x25
faces, resized and replicated to RGB; not usable for colourisation, an error), with the task's
degradation fixed by the seed. ``faces`` / ``rain800`` / ``rain200l`` / ``pairs`` read the
published layouts of :mod:`datamodules.bi_noising.layouts` (resized to ``size``, bicubic).
The validation split of a benchmark is its test split (the thesis reports test numbers).
``predict_root`` lists the user's degraded images for ``predict``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules._common import EmbeddedDataModule
from datamodules.bi_noising import layouts
from datamodules.bi_noising.tasks import SR_FACTOR, bicubic, check_task, condition, degrade
from datamodules.lfg_shadow.transforms import load_rgb
from datamodules.predict_inputs import UserInputsPredictMixin

log = logging.getLogger(__name__)

SOURCES = ("embedded", *layouts.LAYOUTS)


def _item(task: str, clean: Tensor, degraded: Optional[Tensor], name: str, size: int, seed: int) -> dict[str, Any]:
    clean = bicubic(clean, (size, size)) if tuple(clean.shape[-2:]) != (size, size) else clean
    if degraded is None:
        degraded = degrade(task, clean, torch.Generator().manual_seed(seed))
    elif task == "sr":
        degraded = bicubic(degraded, (size // SR_FACTOR, size // SR_FACTOR))
    else:
        degraded = bicubic(degraded, (size, size))
    return {"image": clean, "degraded": degraded, "condition": condition(task, degraded, size), "name": name}


class CleanImages(Dataset):
    """Clean images (tensors or files) degraded on access with a per-item seed."""

    def __init__(self, task: str, sources: list[Any], size: int, seed: int, split: str) -> None:
        self.task, self.sources, self.size, self.seed, self.split = task, sources, size, seed, split

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> dict[str, Any]:
        source = self.sources[index]
        clean, name = (load_rgb(source), source.stem) if isinstance(source, Path) else (source, f"{self.split}_{index:05d}")
        offset = 0 if self.split == "train" else 1_000_000
        return _item(self.task, clean, None, name, self.size, self.seed * 7_919 + offset + index)


class DegradedPairs(Dataset):
    """``(name, degraded file, clean file)`` pairs, or Rain800 side-by-side files."""

    def __init__(self, task: str, pairs: list[Any], size: int, clean_side: str = "left") -> None:
        self.task, self.pairs, self.size, self.clean_side = task, pairs, size, clean_side

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        entry = self.pairs[index]
        if isinstance(entry, Path):  # Rain800: one file, two halves
            both = load_rgb(entry)
            w = both.shape[-1] // 2
            left, right = both[..., :w], both[..., w: 2 * w]
            clean, rainy = (left, right) if self.clean_side == "left" else (right, left)
            return _item(self.task, clean, rainy, entry.stem, self.size, 0)
        name, degraded_path, clean_path = entry
        clean, degraded = load_rgb(clean_path), load_rgb(degraded_path)
        if self.task != "sr" and tuple(clean.shape) != tuple(degraded.shape):
            raise ValueError(f"{degraded_path} is {degraded.shape[-1]}x{degraded.shape[-2]} but its target {clean_path} "
                             f"is {clean.shape[-1]}x{clean.shape[-2]}")
        return _item(self.task, clean, degraded, name, self.size, 0)


class BiNoisingDataModule(UserInputsPredictMixin, EmbeddedDataModule):
    """Restoration pairs for one task (module docstring).

    Args:
        task: ``colorization``, ``sr``, ``derain`` or ``turbulence``.
        source: ``embedded``, ``faces``, ``rain800``, ``rain200l`` or ``pairs``.
        root: dataset folder (``faces``: the FFHQ folder); ``None`` selects the embedded default.
        test_root: ``faces`` only: the CelebA-HQ folder (first 3,000 files are the test split).
        size: model resolution S (256 in the thesis).
        embedded_images: ``photos`` or ``faces`` (scikit-image's LFW subset).
        photos, crops_per_image, val_crops_per_image: the embedded photo crops.
        rain800_clean_side: which half of a Rain800 file is clean (``left`` / ``right``).
        predict_root: the user's degraded images for ``predict``: a file, a list, a folder or a manifest.
        batch_size, num_workers, val_fraction, seed, pin_memory: as :class:`EmbeddedDataModule`.
    """

    STAND_IN = "embedded photos with synthetic degradations (stand-in for CelebA-HQ / Rain200L)"  # the results rows' ``dataset`` when ``root`` is null (metrics.results_rows.dataset_field)

    def __init__(
        self,
        task: str = "colorization",
        source: str = "embedded",
        root: Optional[str] = None,
        test_root: Optional[str] = None,
        size: int = 256,
        embedded_images: str = "photos",
        photos: Optional[list[str]] = None,
        crops_per_image: int = 8,
        val_crops_per_image: int = 2,
        rain800_clean_side: str = "left",
        predict_root: Union[str, list[str], None] = None,
        batch_size: int = 8,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, pin_memory)
        check_task(task)
        if source not in SOURCES:
            raise ValueError(f"data.source={source!r} is not one of {list(SOURCES)}")
        if source != "embedded" and root is None:
            log.info("BiNoisingDataModule: data.root is null, so the embedded default is used")
            source = "embedded"
        if source == "embedded" and root is not None:
            raise ValueError(f"data.root={root!r} is set but data.source is 'embedded'; name the layout in data.source")
        if source == "faces" and test_root is None:
            raise ValueError("data.source='faces' needs data.test_root (the CelebA-HQ folder) besides data.root (FFHQ)")
        if embedded_images not in ("photos", "faces"):
            raise ValueError(f"data.embedded_images={embedded_images!r} is not one of ['photos', 'faces']")
        if embedded_images == "faces" and task == "colorization" and source == "embedded":
            raise ValueError("data.embedded_images='faces' (grey LFW faces) has no colour targets; use 'photos' for colorization")
        if rain800_clean_side not in ("left", "right"):
            raise ValueError(f"data.rain800_clean_side={rain800_clean_side!r} is not 'left' or 'right'")
        if size % SR_FACTOR or size < 8:
            raise ValueError(f"data.size={size} must be >= 8 and divisible by {SR_FACTOR}")
        self.task, self.source, self.root, self.test_root, self.size = task, source, root, test_root, int(size)
        self.embedded_images, self.photos = embedded_images, photos
        self.crops_per_image, self.val_crops_per_image = int(crops_per_image), int(val_crops_per_image)
        self.rain800_clean_side, self.predict_root = rain800_clean_side, predict_root
        self.save_hyperparameters()

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        if self.source == "embedded":
            return self._embedded()
        if self.source == "faces":
            return (CleanImages(self.task, layouts.face_files(self.root, "train"), self.size, self.seed, "train"),
                    CleanImages(self.task, layouts.face_files(self.test_root, "test"), self.size, self.seed, "test"))
        if self.source == "rain800":
            make = lambda split: DegradedPairs(self.task, layouts.rain800_files(self.root, split), self.size,  # noqa: E731
                                               self.rain800_clean_side)
        elif self.source == "rain200l":
            make = lambda split: DegradedPairs(self.task, layouts.rain200l_pairs(self.root, split), self.size)  # noqa: E731
        else:
            make = lambda split: DegradedPairs(self.task, layouts.paired_files(self.root, split), self.size)  # noqa: E731
        return make("train"), make("test")

    def _embedded(self) -> tuple[Dataset, Dataset]:
        if self.embedded_images == "faces":
            import skimage.data

            faces = torch.from_numpy(skimage.data.lfw_subset()).float()[:, None].expand(-1, 3, -1, -1) * 2 - 1
            faces = bicubic(faces, (self.size, self.size))
            n_val = max(1, round(len(faces) * max(self.val_fraction, 0.1)))
            return (CleanImages(self.task, list(faces[:-n_val]), self.size, self.seed, "train"),
                    CleanImages(self.task, list(faces[-n_val:]), self.size, self.seed, "val"))
        from datamodules.photos import PhotoCropsDataModule

        photos = PhotoCropsDataModule(size=self.size, crops_per_image=self.crops_per_image,
                                      val_crops_per_image=self.val_crops_per_image, images=self.photos,
                                      short_side=max(self.size * 2, 64), hflip=False, seed=self.seed,
                                      val_fraction=max(self.val_fraction, 0.25))
        train, val = photos.build_datasets()
        clean = lambda ds: [ds[i]["image"] for i in range(len(ds))]  # noqa: E731
        return (CleanImages(self.task, clean(train), self.size, self.seed, "train"),
                CleanImages(self.task, clean(val), self.size, self.seed, "val"))

    def user_predict_dataset(self) -> Optional[Dataset]:
        """The user's degraded images (``lightning_modules.bi_noising.predict``), else ``None``."""
        if self.predict_root is None:
            return None
        from lightning_modules.bi_noising.predict import PredictInputs

        return PredictInputs(self.predict_root)


__all__ = ["BiNoisingDataModule", "CleanImages", "DegradedPairs", "SOURCES"]

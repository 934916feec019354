"""Paired folders for the D2SM extensions (thesis 001, Ch. 9, §9.4.2-9.4.3).

* ``task="sr"`` (face SR, DICNet setting: CelebA / Helen): ``root/{train,test}/`` hold HR faces;
  each is resized to ``hr_size`` (128) and bicubic-downsampled by ``scale`` (8) to the input.
* ``task="dehaze"`` (I-HAZE / O-HAZE): ``root/{train,test}/{hazy,GT}/`` with files paired by
  name after removing ``input_suffix`` / ``target_suffix`` from the stems (``01_indoor_hazy`` ~
  ``01_indoor_GT``); train takes random ``crop`` crops, test whole images.
A file without its partner is an error naming it. ``root: null`` selects the embedded default
(photo crops with bicubic x``scale`` or synthetic haze, :mod:`datamodules.d2sm.embedded`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from datamodules.d2sm.base import IMAGE_EXTENSIONS, RestorationDataModule, image_tensor
from datamodules.d2sm.degradations import bicubic_downsample
from datamodules.d2sm.embedded import embedded_datasets
from datamodules.image_folder import find_images


def paired_files(input_dir: Path, target_dir: Path, input_suffix: str, target_suffix: str) -> list[tuple[Path, Path]]:
    """Match files of two folders by stem (suffixes removed); errors name an unmatched file."""
    def key(path: Path, suffix: str) -> str:
        return path.stem[: -len(suffix)] if suffix and path.stem.endswith(suffix) else path.stem

    for folder in (input_dir, target_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"paired data: folder {folder} not found")
    targets = {key(p, target_suffix): p for p in find_images(target_dir, IMAGE_EXTENSIONS, False)}
    pairs = []
    for path in find_images(input_dir, IMAGE_EXTENSIONS, False):
        match = targets.get(key(path, input_suffix))
        if match is None:
            raise FileNotFoundError(f"paired data: no target in {target_dir} for input {path}")
        pairs.append((path, match))
    return pairs


class FaceSRPairs(Dataset):
    def __init__(self, files: list[Path], hr_size: int, scale: int, hflip: bool) -> None:
        self.files, self.hr_size, self.scale, self.hflip = files, int(hr_size), int(scale), hflip

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        hr = image_tensor(self.files[index])
        if tuple(hr.shape[-2:]) != (self.hr_size, self.hr_size):
            hr = F.interpolate(hr[None], size=(self.hr_size, self.hr_size), mode="bicubic", antialias=True,
                               align_corners=False)[0].clamp(-1, 1)
        if self.hflip and bool(torch.rand(()) < 0.5):
            hr = hr.flip(-1)
        return {"image": hr, "input": bicubic_downsample(hr, self.scale)}


class DehazePairs(Dataset):
    def __init__(self, pairs: list[tuple[Path, Path]], crop: Optional[int]) -> None:
        self.pairs, self.crop = pairs, crop

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        hazy, clean = (image_tensor(p) for p in self.pairs[index])
        if hazy.shape != clean.shape:
            raise ValueError(f"dehaze pair sizes differ: {self.pairs[index][0]} {tuple(hazy.shape)} vs "
                             f"{self.pairs[index][1]} {tuple(clean.shape)}")
        if self.crop is not None:
            top = int(torch.randint(0, clean.shape[-2] - self.crop + 1, ()))
            left = int(torch.randint(0, clean.shape[-1] - self.crop + 1, ()))
            hazy = hazy[:, top : top + self.crop, left : left + self.crop]
            clean = clean[:, top : top + self.crop, left : left + self.crop]
        return {"image": clean, "input": hazy}


class PairedRestorationDataModule(RestorationDataModule):
    """Face SR or dehazing pairs (module docstring)."""

    STAND_IN = "embedded photos with synthetic degradations (stand-in for CelebA / I-HAZE pairs)"  # the results rows' ``dataset`` on embedded data (metrics.results_rows.dataset_field)

    def __init__(self, root: Optional[str] = None, task: str = "sr", hr_size: int = 128, scale: int = 8, crop: Optional[int] = 256,
                 input_subdir: str = "hazy", target_subdir: str = "GT", input_suffix: str = "_hazy",
                 target_suffix: str = "_GT", train_split: str = "train", val_split: str = "test",
                 batch_size: int = 32, val_batch_size: int = 1, num_workers: int = 8, seed: int = 0,
                 predict_inputs: Optional[Sequence[str]] = None, predict_sigma: Optional[float] = None,
                 embedded_images: Optional[list[str]] = None, embedded_crops_per_image: int = 16,
                 embedded_val_crops_per_image: int = 2) -> None:
        super().__init__(batch_size, val_batch_size, num_workers, seed, predict_inputs, predict_sigma)
        self.embedded = dict(images=embedded_images, crops_per_image=embedded_crops_per_image,
                             val_crops_per_image=embedded_val_crops_per_image)
        if task not in ("sr", "dehaze"):
            raise ValueError(f"task must be 'sr' or 'dehaze', received {task!r}")
        self.root, self.task, self.hr_size, self.scale, self.crop = root, task, hr_size, scale, crop
        self.subdirs, self.suffixes = (input_subdir, target_subdir), (input_suffix, target_suffix)
        self.splits = (train_split, val_split)

    @property
    def is_embedded(self) -> bool:
        return self.root is None

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        if self.root is None:
            size = self.hr_size if self.task == "sr" else int(self.crop or 64)
            return embedded_datasets(self.task, size, self.scale, short_side=max(256, size), sigma_max=0.0,
                                     val_sigmas=(), seed=self.seed, **self.embedded)  # type: ignore[arg-type]
        root = Path(self.root).expanduser()
        if self.task == "sr":
            train, val = (find_images(root / s, IMAGE_EXTENSIONS, False) for s in self.splits)
            return FaceSRPairs(train, self.hr_size, self.scale, True), FaceSRPairs(val, self.hr_size, self.scale, False)
        train, val = (paired_files(root / s / self.subdirs[0], root / s / self.subdirs[1], *self.suffixes)
                      for s in self.splits)
        return DehazePairs(train, self.crop), DehazePairs(val, None)


__all__ = ["DehazePairs", "FaceSRPairs", "PairedRestorationDataModule", "paired_files"]

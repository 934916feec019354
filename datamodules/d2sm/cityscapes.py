"""Cityscapes denoising with semantic labels (thesis 001, Ch. 9, §9.4.1, Table 9.1).

Published layout (cityscapes-dataset.com, ``leftImg8bit_trainvaltest.zip`` + ``gtFine``, with
``labelTrainIds`` made by cityscapesScripts' ``createTrainIdLabelImgs.py``)::

    root/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    root/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png

Train: random ``crop`` x ``crop`` crops (512) with a random flip, sigma ~ U[0, ``sigma_max``]
per image, noisy on the fly. Val / test: full images at each of ``val_sigmas`` (25, 35, 50)
with seeded noise (``datamodules.d2sm.degradations``). A missing label file is an error naming it.
``root: null`` selects the embedded default (:mod:`datamodules.d2sm.embedded`, ``embedded_*`` args).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from datamodules.d2sm.base import RestorationDataModule, image_tensor
from datamodules.d2sm.degradations import add_gaussian_noise, seeded_gaussian_noise
from datamodules.d2sm.embedded import embedded_datasets

IMAGE_SUFFIX, LABEL_SUFFIX = "_leftImg8bit.png", "_gtFine_labelTrainIds.png"


def cityscapes_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """``(image, labelTrainIds)`` paths of a split; errors name the missing folder or label file."""
    image_dir = root / "leftImg8bit" / split
    if not image_dir.is_dir():
        raise FileNotFoundError(f"Cityscapes: {image_dir} not found (expected root/leftImg8bit/{split}/<city>/*{IMAGE_SUFFIX})")
    images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
    if not images:
        raise FileNotFoundError(f"Cityscapes: no *{IMAGE_SUFFIX} files under {image_dir}/<city>/")
    pairs = []
    for image in images:
        label = root / "gtFine" / split / image.parent.name / image.name.replace(IMAGE_SUFFIX, LABEL_SUFFIX)
        if not label.is_file():
            raise FileNotFoundError(f"Cityscapes: label file {label} is missing for {image} "
                                    "(run cityscapesScripts createTrainIdLabelImgs.py to make labelTrainIds)")
        pairs.append((image, label))
    return pairs


def read_label(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path), dtype=np.int64).copy())


class NoisyTrainCrops(Dataset):
    """Random crop + flip of a clean image, sigma ~ U[0, sigma_max] (torch's global generator)."""

    def __init__(self, pairs: list[tuple[Path, Path]], crop: int, sigma_max: float) -> None:
        self.pairs, self.crop, self.sigma_max = pairs, int(crop), float(sigma_max)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_path, label_path = self.pairs[index]
        image, label = image_tensor(image_path), read_label(label_path)
        height, width = image.shape[-2:]
        if height < self.crop or width < self.crop:
            raise ValueError(f"Cityscapes image {image_path} ({height}x{width}) is smaller than crop {self.crop}")
        top = int(torch.randint(0, height - self.crop + 1, ()))
        left = int(torch.randint(0, width - self.crop + 1, ()))
        image = image[:, top : top + self.crop, left : left + self.crop]
        label = label[top : top + self.crop, left : left + self.crop]
        if bool(torch.rand(()) < 0.5):
            image, label = image.flip(-1), label.flip(-1)
        sigma = float(torch.rand(())) * self.sigma_max
        return {"image": image, "input": add_gaussian_noise(image, sigma), "sigma": torch.tensor(sigma),
                "label": label}


class NoisyValImages(Dataset):
    """Every (image, sigma) pair with seeded noise, image-major (so ``limit_val_batches`` keeps all sigmas);
    optional centre crop (``None``: full image)."""

    def __init__(self, pairs: list[tuple[Path, Path]], sigmas: Sequence[float], seed: int,
                 crop: Optional[int] = None) -> None:
        self.pairs, self.sigmas, self.seed, self.crop = pairs, [float(s) for s in sigmas], int(seed), crop

    def __len__(self) -> int:
        return len(self.pairs) * len(self.sigmas)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_index, sigma = index // len(self.sigmas), self.sigmas[index % len(self.sigmas)]  # image-major order
        image_path, label_path = self.pairs[image_index]
        image, label = image_tensor(image_path), read_label(label_path)
        if self.crop is not None:
            top, left = (image.shape[-2] - self.crop) // 2, (image.shape[-1] - self.crop) // 2
            image = image[:, top : top + self.crop, left : left + self.crop]
            label = label[top : top + self.crop, left : left + self.crop]
        return {"image": image, "input": seeded_gaussian_noise(image, sigma, self.seed, image_index),
                "sigma": torch.tensor(sigma), "label": label}


class CityscapesDenoisingDataModule(RestorationDataModule):
    """Noisy Cityscapes with trainId labels (module docstring).

    Args:
        root: Cityscapes folder (``leftImg8bit/`` and ``gtFine/``).
        crop: train crop (512), sigma_max: training noise range (75).
        val_sigmas: evaluation noise levels (25, 35, 50); val_crop: centre crop for validation (``None``: full).
        val_limit: use only the first n val images (quick validation; ``None``: all 500).
        batch_size (64 in the thesis), val_batch_size, num_workers, seed, predict_inputs, predict_sigma.
    """

    STAND_IN = "embedded noisy photos with synthetic labels (stand-in for Cityscapes)"  # the results rows' ``dataset`` on embedded data (metrics.results_rows.dataset_field)

    def __init__(self, root: Optional[str] = None, crop: int = 512, sigma_max: float = 75.0,
                 val_sigmas: Sequence[float] = (25.0, 35.0, 50.0), val_crop: Optional[int] = None,
                 val_limit: Optional[int] = None, batch_size: int = 64, val_batch_size: int = 1,
                 num_workers: int = 8, seed: int = 0, predict_inputs: Optional[Sequence[str]] = None,
                 predict_sigma: Optional[float] = None, embedded_images: Optional[list[str]] = None,
                 embedded_crops_per_image: int = 16, embedded_val_crops_per_image: int = 2) -> None:
        super().__init__(batch_size, val_batch_size, num_workers, seed, predict_inputs, predict_sigma)
        self.root, self.crop, self.sigma_max = root, int(crop), float(sigma_max)
        self.val_sigmas, self.val_crop, self.val_limit = list(val_sigmas), val_crop, val_limit
        self.embedded = dict(images=embedded_images, crops_per_image=embedded_crops_per_image,
                             val_crops_per_image=embedded_val_crops_per_image)

    @property
    def is_embedded(self) -> bool:
        return self.root is None

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        if self.root is None:
            return embedded_datasets("denoise", self.crop, 1, short_side=max(256, self.crop), sigma_max=self.sigma_max,
                                     val_sigmas=self.val_sigmas, seed=self.seed, **self.embedded)  # type: ignore[arg-type]
        root = Path(self.root).expanduser()
        val = cityscapes_pairs(root, "val")
        if self.val_limit is not None:
            val = val[: int(self.val_limit)]
        return (NoisyTrainCrops(cityscapes_pairs(root, "train"), self.crop, self.sigma_max),
                NoisyValImages(val, self.val_sigmas, self.seed, self.val_crop))


__all__ = ["CityscapesDenoisingDataModule", "NoisyTrainCrops", "NoisyValImages", "cityscapes_pairs", "read_label"]

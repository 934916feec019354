"""Embedded default for D2SM (``root: null``): scikit-image photos with synthetic label maps.

Clean crops come from :class:`datamodules.photos.PhotoCropsDataModule` (train and val from
disjoint strips of each photo). Their label maps are **synthetic** (no segmentation labels
ship offline): a pixel's class is its luminance bin (6) x coarse hue bin (3) of the clean crop,
18 of the 19 trainIds, with a 2-pixel ignore (255) border, so the mIoU code path runs end to
end; the numbers mean nothing for Cityscapes. Degradations follow the real tasks: AWGN
(sigma ~ U[0, 75] for train, seeded ``val_sigmas`` for val), bicubic x``scale`` for SR,
synthetic scattering-model haze for dehazing.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.d2sm.base import RestorationDataModule
from datamodules.d2sm.degradations import add_gaussian_noise, bicubic_downsample, seeded_gaussian_noise, synthetic_haze
from datamodules.photos import PhotoCropsDataModule


def synthetic_labels(image: Tensor, border: int = 2) -> Tensor:
    """``[3, H, W]`` in [-1, 1] -> int64 ``[H, W]``: luminance bin (6) x hue bin (3), 255 on the border."""
    unit = (image + 1.0) * 0.5
    r, g, b = unit
    luminance = 0.299 * r + 0.587 * g + 0.114 * b
    hue = torch.stack([r, g, b]).argmax(0)  # dominant channel as a 3-way hue
    label = (luminance * 6).long().clamp(0, 5) * 3 + hue
    if border > 0:
        label[:border], label[-border:], label[:, :border], label[:, -border:] = 255, 255, 255, 255
    return label


class EmbeddedRestorationPairs(Dataset):
    def __init__(self, clean: Tensor, task: str, train: bool, sigma_max: float, sigmas: Sequence[float],
                 scale: int, seed: int) -> None:
        self.clean, self.task, self.train = clean, task, train
        self.sigma_max, self.sigmas, self.scale, self.seed = float(sigma_max), [float(s) for s in sigmas], scale, seed

    def __len__(self) -> int:
        return len(self.clean) * (len(self.sigmas) if (self.task == "denoise" and not self.train) else 1)

    def __getitem__(self, index: int) -> dict[str, Any]:
        evaluate_sigmas = self.task == "denoise" and not self.train
        image_index = index // len(self.sigmas) if evaluate_sigmas else index  # image-major, like Cityscapes val
        image = self.clean[image_index]
        item: dict[str, Any] = {"image": image}
        if self.task == "denoise":
            item["label"] = synthetic_labels(image)
            if self.train:
                sigma = float(torch.rand(())) * self.sigma_max
                item["input"] = add_gaussian_noise(image, sigma)
            else:
                sigma = self.sigmas[index % len(self.sigmas)]
                item["input"] = seeded_gaussian_noise(image, sigma, self.seed, image_index)
            item["sigma"] = torch.tensor(sigma)
        elif self.task == "sr":
            item["input"] = bicubic_downsample(image, self.scale)
        else:
            item["input"] = synthetic_haze(image, self.seed + (0 if self.train else 1), index)
        return item


def embedded_datasets(task: str, size: int, scale: int, crops_per_image: int, val_crops_per_image: int,
                      images: Optional[list[str]], short_side: Optional[int], sigma_max: float,
                      val_sigmas: Sequence[float], seed: int) -> tuple[Dataset, Dataset]:
    """Train / val datasets of the embedded default (used by every D2SM DataModule with ``root: null``)."""
    photos = PhotoCropsDataModule(size=size, crops_per_image=crops_per_image, val_crops_per_image=val_crops_per_image,
                                  images=images, short_side=short_side, hflip=True, seed=seed)
    train, val = photos.build_datasets()
    return tuple(EmbeddedRestorationPairs(d.tensors["image"], task, d is train, sigma_max, val_sigmas,  # type: ignore[attr-defined]
                                          scale, seed) for d in (train, val))  # type: ignore[return-value]


class EmbeddedD2SMDataModule(RestorationDataModule):
    """Photo crops with synthetic labels and the task's degradation (module docstring).

    Args:
        task: ``denoise``, ``sr`` or ``dehaze``; size: crop side; scale: SR factor.
        crops_per_image, val_crops_per_image, images, short_side: :class:`PhotoCropsDataModule`.
        sigma_max, val_sigmas: noise levels (denoise); batch_size, val_batch_size, num_workers, seed.
        predict_inputs, predict_sigma: the user's images for ``predict``.
    """

    is_embedded = True

    def __init__(self, task: str = "denoise", size: int = 64, scale: int = 8, crops_per_image: int = 16,
                 val_crops_per_image: int = 2, images: Optional[list[str]] = None, short_side: Optional[int] = 256,
                 sigma_max: float = 75.0, val_sigmas: Sequence[float] = (25.0, 35.0, 50.0), batch_size: int = 8,
                 val_batch_size: int = 8, num_workers: int = 0, seed: int = 0,
                 predict_inputs: Optional[Sequence[str]] = None, predict_sigma: Optional[float] = None) -> None:
        super().__init__(batch_size, val_batch_size, num_workers, seed, predict_inputs, predict_sigma)
        if task not in ("denoise", "sr", "dehaze"):
            raise ValueError(f"task must be 'denoise', 'sr' or 'dehaze', received {task!r}")
        self.root = None
        self.args = dict(task=task, size=size, scale=int(scale), crops_per_image=crops_per_image,
                         val_crops_per_image=val_crops_per_image, images=images, short_side=short_side,
                         sigma_max=sigma_max, val_sigmas=list(val_sigmas), seed=seed)

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        return embedded_datasets(**self.args)


__all__ = ["EmbeddedD2SMDataModule", "EmbeddedRestorationPairs", "embedded_datasets", "synthetic_labels"]

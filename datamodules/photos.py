"""Crops of the real photographs that ship inside scikit-image (``skimage.data``).

Only images that load without a download are used by default (measured on this
project's machines, ``../shared/ENVIRONMENT.md``). Each photo is split
*spatially*: a strip on its right side is reserved for validation, so train and
validation crops never share a pixel even when only one photo is used.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from datamodules._common import EmbeddedDataModule, TensorDictDataset, sample_rng, uint8_to_unit

log = logging.getLogger(__name__)

#: Colour photographs of ``skimage.data`` that load offline (synthetic ones such as
#: ``colorwheel`` and ``logo`` are left out; ``cat`` is the same photo as ``chelsea``).
DEFAULT_PHOTOS: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "stereo_motorcycle",
)


def load_skimage_photo(name: str) -> np.ndarray:
    """``skimage.data.<name>()`` as ``uint8 [H, W, 3]`` RGB.

    Grey images are replicated to RGB, an alpha channel is composited on white,
    and loaders that return several images (``stereo_motorcycle``) give their first.
    """
    import skimage.data

    loader = getattr(skimage.data, name, None)
    if loader is None or not callable(loader) or name.startswith("_"):
        raise ValueError(f"skimage.data has no image called {name!r}; offline colour photos are {DEFAULT_PHOTOS}")
    try:
        image = loader()
    except Exception as error:  # noqa: BLE001 - the download helpers raise many types
        raise RuntimeError(
            f"skimage.data.{name}() could not be loaded without a download ({type(error).__name__}: {error}); "
            f"use images that ship with scikit-image, e.g. {DEFAULT_PHOTOS}"
        ) from error
    if isinstance(image, tuple):
        image = image[0]
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    elif image.dtype != np.uint8:
        image = np.clip(image * (255.0 if image.max() <= 1.0 else 1.0), 0, 255).round().astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        image = (image[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"skimage.data.{name}() is not a single image (shape {image.shape})")
    return image


def resize_short_side(image: np.ndarray, short_side: int) -> np.ndarray:
    """Resize (bicubic, antialiased by PIL when shrinking) so the shorter side is ``short_side``."""
    height, width = image.shape[:2]
    scale = short_side / min(height, width)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(new_size, Image.BICUBIC))


class RandomPhotoCrops(Dataset):
    """A fresh random crop (and optional flip) of a photo's train region at every read."""

    def __init__(self, regions: list[torch.Tensor], crops_per_image: int, size: int, hflip: bool) -> None:
        self.regions = regions  # uint8 [3, H, W_train] each
        self.crops_per_image = crops_per_image
        self.size = size
        self.hflip = hflip

    def __len__(self) -> int:
        return len(self.regions) * self.crops_per_image

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        region = self.regions[index // self.crops_per_image]
        top = int(torch.randint(0, region.shape[1] - self.size + 1, ()))
        left = int(torch.randint(0, region.shape[2] - self.size + 1, ()))
        crop = uint8_to_unit(region[:, top : top + self.size, left : left + self.size])
        if self.hflip and bool(torch.rand(()) < 0.5):
            crop = crop.flip(-1)
        return {"image": crop}


class PhotoCropsDataModule(EmbeddedDataModule):
    """Square crops of scikit-image's sample photographs.

    Batches: ``{"image": float32 [B, 3, size, size] in [-1, 1]}``.

    Every photo is first resized so its shorter side is ``short_side``. The
    rightmost ``max(size, ceil(width * val_fraction))`` columns form the
    validation strip; train crops lie entirely left of it. Crop positions (and,
    for train, horizontal flips) are drawn once from the seed, so both splits
    are fixed tensors: the same seed gives identical crops, another seed others.

    Args:
        size: side length of the square crops, in pixels.
        crops_per_image: train crops taken from each photo.
        val_crops_per_image: validation crops taken from each photo's strip.
        images: names of ``skimage.data`` loaders to use; ``None`` uses the
            colour photos that load offline (:data:`DEFAULT_PHOTOS`).
        short_side: each photo's shorter side after resizing, before cropping
            (``None`` keeps the native resolution; larger values give more
            zoomed-in crops).
        hflip: randomly mirror half of the train crops (chosen by the seed).
        resample_train_crops: draw a fresh train crop position (and flip) at every
            read from torch's global generator (reproducible under
            ``lightning.seed_everything(..., workers=True)``) instead of the fixed
            seeded crops; an epoch still has ``crops_per_image`` reads per photo.
            Validation crops stay fixed.
        batch_size: crops per batch.
        num_workers: DataLoader worker processes (0 = main process).
        val_fraction: width share of each photo reserved for validation
            (at least ``size`` columns).
        seed: seed of the crop positions, flips and train order.
        pin_memory: pin host memory in the loaders.
    """

    def __init__(
        self,
        size: int = 64,
        crops_per_image: int = 64,
        val_crops_per_image: int = 8,
        images: list[str] | None = None,
        short_side: int | None = 256,
        hflip: bool = True,
        resample_train_crops: bool = False,
        batch_size: int = 32,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, pin_memory)
        if crops_per_image < 1 or val_crops_per_image < 1:
            raise ValueError("crops_per_image and val_crops_per_image must be >= 1")
        if short_side is not None and short_side < size:
            raise ValueError(f"short_side ({short_side}) must be at least the crop size ({size})")
        self.size = int(size)
        self.crops_per_image = int(crops_per_image)
        self.val_crops_per_image = int(val_crops_per_image)
        self.images: tuple[str, ...] = tuple(images) if images is not None else DEFAULT_PHOTOS
        if not self.images:
            raise ValueError("images is empty: name at least one skimage.data photo or pass None for the defaults")
        self.short_side = short_side
        self.hflip = bool(hflip)
        self.resample_train_crops = bool(resample_train_crops)
        self.save_hyperparameters()

    def _val_width(self, photo: np.ndarray, name: str) -> int:
        """Columns of the validation strip; checks that both parts fit a crop."""
        height, width = photo.shape[:2]
        val_width = max(self.size, math.ceil(width * self.val_fraction))
        if height < self.size or width - val_width < self.size:
            raise ValueError(
                f"photo {name!r} ({height}x{width} after resizing) is too small for {self.size}px crops "
                f"plus a {val_width}-column validation strip; raise short_side or lower size"
            )
        return val_width

    def _crops(self, photo: np.ndarray, name: str, split: str, photo_index: int, count: int) -> torch.Tensor:
        height, width = photo.shape[:2]
        val_width = self._val_width(photo, name)
        if split == "train":
            x_low, x_high = 0, width - val_width - self.size
        else:
            x_low, x_high = width - val_width, width - self.size
        rng = sample_rng(self.seed, split, photo_index)
        ys = rng.integers(0, height - self.size + 1, size=count)
        xs = rng.integers(x_low, x_high + 1, size=count)
        flips = rng.random(count) < 0.5 if (split == "train" and self.hflip) else np.zeros(count, dtype=bool)
        crops = np.stack(
            [photo[y : y + self.size, x : x + self.size] for y, x in zip(ys.tolist(), xs.tolist())]
        )  # [count, s, s, 3]
        crops[flips] = crops[flips][:, :, ::-1]
        return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2)

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        train, val, train_regions = [], [], []
        shapes = []
        for photo_index, name in enumerate(self.images):
            photo = load_skimage_photo(name)
            if self.short_side is not None:
                photo = resize_short_side(photo, self.short_side)
            shapes.append(f"{name} {photo.shape[0]}x{photo.shape[1]}")
            train.append(self._crops(photo, name, "train", photo_index, self.crops_per_image))
            val.append(self._crops(photo, name, "val", photo_index, self.val_crops_per_image))
            train_part = photo[:, : photo.shape[1] - self._val_width(photo, name)]
            train_regions.append(torch.from_numpy(np.ascontiguousarray(train_part)).permute(2, 0, 1))
        log.info(
            "using the embedded scikit-image photos (%d images: %s): %d train + %d val crops of %dx%d per photo",
            len(self.images),
            ", ".join(shapes),
            self.crops_per_image,
            self.val_crops_per_image,
            self.size,
            self.size,
        )
        val_dataset = TensorDictDataset({"image": uint8_to_unit(torch.cat(val))})
        if self.resample_train_crops:
            return RandomPhotoCrops(train_regions, self.crops_per_image, self.size, self.hflip), val_dataset
        return TensorDictDataset({"image": uint8_to_unit(torch.cat(train))}), val_dataset


__all__ = ["DEFAULT_PHOTOS", "PhotoCropsDataModule", "RandomPhotoCrops", "load_skimage_photo", "resize_short_side"]

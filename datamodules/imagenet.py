"""ImageNet-1K in its published folder layout, for AlignTok (thesis 000, Ch. 7 §7.3) and any class-folder set.

Layout: ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG`` (the validation images
sorted into class folders, e.g. with the usual ``valprep.sh``); labels are the sorted wnids
(0..999). Train images: the shorter edge resized to ``size`` (bicubic, antialiased), then a
random ``size x size`` crop (the thesis's "resize the shorter edge to 256 and random-crop
256x256"); validation: centre crop. Horizontal flips are off by default (the thesis does not
mention them). Any other image folder works too (``labels_from_subfolders: false`` for
unlabelled tokenizer data).

Embedded default (``root: null``): ``embedded: photos`` uses crops of scikit-image's bundled
photographs (``PhotoCropsDataModule``) labelled by photo (8 classes), ``embedded: digits``
scikit-learn's digits in RGB with their 10 classes; both at ``size`` (64 px in the tiny
configs), no download.
"""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch.utils.data import Dataset

from datamodules.image_folder import DEFAULT_EXTENSIONS, ImageFolderDataModule
from datamodules.photos import DEFAULT_PHOTOS, PhotoCropsDataModule


class LabelledByBlock(Dataset):
    """Adds ``label = index // per_class`` to a dataset whose items come in class blocks."""

    def __init__(self, dataset: Dataset, per_class: int) -> None:
        self.dataset, self.per_class = dataset, int(per_class)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict:
        item = dict(self.dataset[index])
        item["label"] = torch.tensor(index // self.per_class, dtype=torch.long)
        return item


class ImageNetDataModule(ImageFolderDataModule):
    """ImageNet (or any class-folder dataset) at ``size``; bundled photos/digits when ``root`` is null.

    Args:
        root: the ImageNet folder (``train/``, ``val/``); ``None``: embedded data.
        size: crop side (256 in the thesis).
        crop: ``random`` for training crops (validation always centre).
        labels_from_subfolders: class labels from the wnid folders.
        hflip: random horizontal flips of train images.
        embedded: ``photos`` or ``digits`` (used only when ``root`` is null).
        crops_per_image, val_crops_per_image: embedded photo crops per photo.
        batch_size, num_workers, seed, pin_memory, val_fraction, extensions, recursive,
            predict_inputs, predict_fit, num_samples, labels: as in ``ImageFolderDataModule``
            (``predict_inputs``: the user's images for a tokenizer's ``predict``, every one
            reconstructed at its own size; ``num_samples`` / ``labels``: a generator's samples).
    """

    STAND_IN = "embedded photo crops (stand-in for ImageNet)"  # the results rows' ``dataset`` when ``root`` is null (metrics.results_rows.dataset_field)

    def __init__(
        self,
        root: Optional[str] = None,
        size: int = 256,
        crop: str = "random",
        labels_from_subfolders: bool = True,
        hflip: bool = False,
        embedded: str = "photos",
        crops_per_image: int = 32,
        val_crops_per_image: int = 4,
        val_fraction: float = 0.1,
        extensions: list[str] = list(DEFAULT_EXTENSIONS),  # noqa: B006
        recursive: bool = True,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        pin_memory: bool = False,
        predict_inputs: Union[str, list[str], None] = None,
        predict_fit: str = "pad",
        num_samples: Optional[int] = None,
        labels: Optional[list[int]] = None,
    ) -> None:
        if embedded not in ("photos", "digits"):
            raise ValueError(f"embedded must be 'photos' or 'digits', got {embedded!r}")
        super().__init__(
            root=root, size=size, crop=crop, val_fraction=val_fraction, extensions=extensions,
            recursive=recursive, labels_from_subfolders=labels_from_subfolders, channels=3, hflip=hflip,
            batch_size=batch_size, num_workers=num_workers, seed=seed, pin_memory=pin_memory,
            predict_inputs=predict_inputs, predict_fit=predict_fit, num_samples=num_samples, labels=labels,
        )
        self.embedded = embedded
        self.crops_per_image = int(crops_per_image)
        self.val_crops_per_image = int(val_crops_per_image)

    @property
    def num_classes(self) -> int:
        if self.root is None:
            return len(DEFAULT_PHOTOS) if self.embedded == "photos" else 10
        return len(self.classes)

    def _embedded(self):
        if self.embedded == "digits":
            return super()._embedded()
        photos = PhotoCropsDataModule(
            size=self.height, crops_per_image=self.crops_per_image, val_crops_per_image=self.val_crops_per_image,
            hflip=self.hflip, resample_train_crops=self.crop == "random", seed=self.seed,
        )
        train, val = photos.build_datasets()
        self.classes = list(photos.images)
        if not self.labels_from_subfolders:
            return train, val
        return LabelledByBlock(train, self.crops_per_image), LabelledByBlock(val, self.val_crops_per_image)

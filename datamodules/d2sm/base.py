"""Shared loaders of the D2SM DataModules and the user-input ``predict`` reader (thesis 001, Ch. 9).

Batches (every task): ``image`` = clean target ``[B, 3, H, W]`` in [-1, 1]; ``input`` = the
degraded image (noisy / low-resolution / hazy); denoising adds ``sigma`` ``[B]`` (0..255 scale);
Cityscapes and the embedded data add ``label`` ``[B, H, W]`` (trainIds, 255 = ignore).

``predict_inputs`` (files, lists, folders, manifests: ``datamodules.predict_inputs.expand_inputs``)
are restored at their own size (the restorers are fully convolutional; same-size batches, every
input processed: ``UserInputsPredictMixin``); ``predict_sigma`` gives the noise level for all of
them, ``None`` lets the module estimate it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules._common import collate_dicts, uint8_to_unit
from datamodules.image_folder import read_image
from datamodules.predict_inputs import UserInputsPredictMixin, expand_inputs, unique_names

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def image_tensor(path: Path) -> torch.Tensor:
    """An image file as float32 ``[3, H, W]`` in [-1, 1] (errors name the file)."""
    return uint8_to_unit(torch.from_numpy(np.asarray(read_image(path, 3)).copy()).permute(2, 0, 1))


class PredictImages(Dataset):
    """The user's images for ``predict``: ``input``, ``name`` (unique output stem), ``path``, ``sigma``."""

    def __init__(self, inputs: Sequence[str], sigma: Optional[float]) -> None:
        self.files = expand_inputs(inputs, key="data.predict_inputs", extensions=IMAGE_EXTENSIONS)
        self.names, self.sigma = unique_names(self.files), sigma

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"input": image_tensor(self.files[index]), "name": self.names[index],
                                "path": str(self.files[index])}
        item["sigma"] = torch.tensor(float("nan") if self.sigma is None else float(self.sigma))
        return item


class RestorationDataModule(UserInputsPredictMixin, L.LightningDataModule):
    """Loaders for ``(train, val)`` datasets built by subclasses; predict reads ``predict_inputs``."""

    STAND_IN = "embedded photos with synthetic degradations (stand-in)"  # the results rows' ``dataset`` on embedded data (metrics.results_rows.dataset_field)

    def __init__(self, batch_size: int, val_batch_size: int, num_workers: int, seed: int,
                 predict_inputs: Optional[Sequence[str]], predict_sigma: Optional[float]) -> None:
        super().__init__()
        if batch_size < 1 or val_batch_size < 1:
            raise ValueError(f"batch_size and val_batch_size must be >= 1, received {batch_size}, {val_batch_size}")
        self.batch_size, self.val_batch_size = int(batch_size), int(val_batch_size)
        self.num_workers, self.seed = int(num_workers), int(seed)
        self.predict_inputs, self.predict_sigma = predict_inputs, predict_sigma
        self.train_dataset: Optional[Dataset] = None
        self.val_dataset: Optional[Dataset] = None

    def build_datasets(self) -> tuple[Dataset, Dataset]:  # pragma: no cover - abstract
        raise NotImplementedError

    def setup(self, stage: Optional[str] = None) -> None:
        if stage == "predict" and self.predict_inputs:
            return
        if self.train_dataset is None:
            self.train_dataset, self.val_dataset = self.build_datasets()

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, drop_last=shuffle,
                          num_workers=self.num_workers, collate_fn=collate_dicts,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        return self._loader(self.train_dataset, self.batch_size, True)  # type: ignore[arg-type]

    def val_dataloader(self) -> DataLoader:
        self.setup("validate")
        return self._loader(self.val_dataset, self.val_batch_size, False)  # type: ignore[arg-type]

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    predict_inputs_key = "data.predict_inputs"
    predict_batch_size = 1  # full-size photos: one per batch (same-size batches would be allowed)

    def user_predict_dataset(self) -> Optional[Dataset]:
        return PredictImages(self.predict_inputs, self.predict_sigma) if self.predict_inputs else None

    def split_predict_dataloader(self) -> DataLoader:
        return self.val_dataloader()


__all__ = ["IMAGE_EXTENSIONS", "PredictImages", "RestorationDataModule", "image_tensor"]

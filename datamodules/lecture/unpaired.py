"""Unpaired two-domain data for CycleGAN (lecture seed 002 lines 1307-1379; Zhu et al. 2017).

Published layout (horse2zebra, monet2photo, summer2winter_yosemite, ... as the CycleGAN authors
distribute them): ``root/trainA``, ``root/trainB``, ``root/testA``, ``root/testB``. An epoch walks
domain A in order and draws the B image at random (the authors' ``unaligned`` loader), so the
pairs carry no correspondence. Images are resized to ``size`` (bicubic) and flipped at random in
training (the authors' 286-resize + 256-crop jitter is left out: a documented simplification). A
missing or empty side is an error naming the folder.

Embedded pair (``root: null``): domain A = the bundled digits (white on black), domain B = other
digits (disjoint source images) inverted and tinted (a dark digit on a coloured paper), both as
three-channel images; the labels ride along (``label_a``, ``label_b``) for the label-preservation
metric, never for training.

Batches: ``{"image_a": [B, 3, S, S], "image_b": [B, 3, S, S]}`` (+ ``label_a``/``label_b`` when
embedded); ``"image"`` repeats ``image_b`` so distribution metrics of the evaluation callback see
domain B. ``predict`` translates the user's files (``predict_root``) A->B (or B->A, the model's
``predict_direction``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from datamodules._common import EmbeddedDataModule, split_indices
from datamodules.embedded_digits import load_digits_images
from datamodules.image_folder import DEFAULT_EXTENSIONS, find_images, normalise_extensions, read_image
from datamodules.lecture.predict_inputs import PredictImageFiles
from datamodules.predict_inputs import UserInputsPredictMixin

log = logging.getLogger(__name__)

#: The tint of embedded domain B's paper (RGB in [-1, 1]): a warm yellow.
PAPER_TINT = (0.9, 0.7, -0.2)


def to_domain_b(images: torch.Tensor) -> torch.Tensor:
    """Digits [B, 1|3, H, W] in [-1, 1] -> inverted, tinted RGB: ink dark, paper ``PAPER_TINT``."""
    ink = (images[:, :1] + 1) / 2  # 1 where the stroke is
    paper = torch.tensor(PAPER_TINT, dtype=images.dtype).view(1, 3, 1, 1)
    return paper * (1 - ink) + (-1.0) * ink


class _UnpairedFiles(Dataset):
    def __init__(self, files_a: list[Path], files_b: list[Path], size: int, train: bool, seed: int) -> None:
        self.files_a, self.files_b, self.size, self.train, self.seed = files_a, files_b, size, train, seed

    def __len__(self) -> int:
        return len(self.files_a)

    def _load(self, path: Path) -> torch.Tensor:
        image = read_image(path, 3)
        image = image.resize((self.size, self.size), Image.BICUBIC) if image.size != (self.size, self.size) else image
        x = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div(127.5).sub(1.0)
        return x.flip(-1) if self.train and torch.rand(()) < 0.5 else x

    def __getitem__(self, index: int) -> dict:
        if self.train:
            b_index = int(torch.randint(len(self.files_b), ()))
        else:
            b_index = int(np.random.default_rng([self.seed, index]).integers(len(self.files_b)))
        image_b = self._load(self.files_b[b_index])
        return {"image_a": self._load(self.files_a[index]), "image_b": image_b, "image": image_b}


class _UnpairedTensors(Dataset):
    def __init__(self, a: torch.Tensor, labels_a: torch.Tensor, b: torch.Tensor, labels_b: torch.Tensor, seed: int) -> None:
        self.a, self.labels_a, self.b, self.labels_b = a, labels_a, b, labels_b
        self.order = torch.randperm(len(b), generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, index: int) -> dict:
        j = int(self.order[index % len(self.b)])
        return {"image_a": self.a[index], "image_b": self.b[j], "image": self.b[j],
                "label_a": self.labels_a[index], "label_b": self.labels_b[j]}


class UnpairedDataModule(UserInputsPredictMixin, EmbeddedDataModule):
    """Two unpaired domains (module docstring).

    Args:
        root: folder with trainA/trainB (and testA/testB); ``None`` = the embedded digit domains.
        size: image side (CycleGAN: 256).
        predict_root: folder or files of the user's images for ``predict``.
    """

    STAND_IN = "embedded digit domains, plain and inverted (stand-in for unpaired sets)"  # the results rows' ``dataset`` when ``root`` is null (metrics.results_rows.dataset_field)

    def __init__(self, root: Optional[str] = None, size: int = 256, predict_root: Optional[Union[str, list[str]]] = None,
                 batch_size: int = 1, num_workers: int = 0, val_fraction: float = 0.1, seed: int = 0) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, False)
        self.root, self.size, self.predict_root = root, int(size), predict_root
        self.save_hyperparameters()

    def _side(self, name: str) -> list[Path]:
        folder = Path(self.root).expanduser() / name
        if not folder.is_dir():
            raise FileNotFoundError(f"data.root: unpaired folder {folder} is missing (layout: trainA, trainB, testA, testB)")
        try:
            return find_images(folder, normalise_extensions(DEFAULT_EXTENSIONS), True)
        except ValueError as error:
            raise ValueError(f"data.root: unpaired side {folder} is empty ({error})") from error

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        if self.root is None:
            images, labels = load_digits_images(self.size)
            images = images.expand(-1, 3, -1, -1)
            train_idx, val_idx = split_indices(len(images), self.val_fraction, self.seed)
            halves = []
            for idx in (train_idx, val_idx):
                a, b = idx[0::2], idx[1::2]  # disjoint source digits per domain: no pairs exist
                halves.append(_UnpairedTensors(images[a].contiguous(), labels[a], to_domain_b(images[b]), labels[b], self.seed))
            log.info("UnpairedDataModule: embedded digits (A) vs inverted tinted digits (B) at %dpx", self.size)
            return halves[0], halves[1]
        root = Path(self.root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"data.root: unpaired dataset folder {root} does not exist")
        train = _UnpairedFiles(self._side("trainA"), self._side("trainB"), self.size, True, self.seed)
        val = _UnpairedFiles(self._side("testA"), self._side("testB"), self.size, False, self.seed)
        return train, val

    def user_predict_dataset(self):
        """The user's own images (``predict_root``: files, folders, manifests), else ``None``."""
        return None if self.predict_root is None else PredictImageFiles(self.predict_root, 3)


__all__ = ["PAPER_TINT", "UnpairedDataModule", "to_domain_b"]

"""A generic DataModule over any folder of images, with the embedded digits when ``root`` is null.

Layouts understood:

* ``root/train/...`` and ``root/val/...`` (and optionally ``root/test/...``):
  those folders are the splits, as given.
* Anything else: every image under ``root`` (recursively by default) is found,
  sorted by relative path and split into train/val by a seeded permutation.

With ``labels_from_subfolders`` the first folder below the split root is the
class name (torchvision ``ImageFolder``'s convention: ``root/<class>/**/img``);
classes are sorted names, indices 0..C-1, listed in :attr:`ImageFolderDataModule.classes`.

Bad input fails loudly: a missing ``root`` raises ``FileNotFoundError`` with
the path, a folder without matching images ``ValueError`` naming the folder and
the extensions searched, and an unreadable or corrupt image
:class:`ImageReadError` naming the file when it is loaded (never a silent skip).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from datamodules._common import EmbeddedDataModule, TensorDictDataset, as_hw, collate_dicts, split_indices
from datamodules.embedded_digits import load_digits_images
from datamodules.predict_inputs import FIT_MODES, PredictImages, expand_inputs, predict_loader

log = logging.getLogger(__name__)

DEFAULT_EXTENSIONS: tuple[str, ...] = ("png", "jpg", "jpeg", "webp")


class ImageReadError(RuntimeError):
    """An image file could not be opened or decoded; ``path`` names it."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot read image file {path}: {reason}")
        self.path = path


def normalise_extensions(extensions: Sequence[str]) -> tuple[str, ...]:
    """``('PNG', '.jpg')`` -> ``('.png', '.jpg')`` (lower case, with the dot)."""
    if isinstance(extensions, str):
        extensions = [extensions]
    result = tuple(sorted({"." + ext.lower().lstrip(".") for ext in extensions if ext.strip(".")}))
    if not result:
        raise ValueError("extensions is empty: give at least one file extension, e.g. ('png', 'jpg')")
    return result


def find_images(folder: Path, extensions: tuple[str, ...], recursive: bool) -> list[Path]:
    """Image files under ``folder`` with a matching extension, sorted by relative path.

    Hidden files and anything inside hidden folders (names starting with ``.``) are ignored.
    Raises ``ValueError`` naming the folder and the extensions when nothing matches.
    """
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    files = [
        path
        for path in candidates
        if path.suffix.lower() in extensions
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    ]
    if not files:
        raise ValueError(
            f"no images found in folder {folder} (extensions searched: {', '.join(extensions)}; "
            f"recursive={recursive})"
        )
    return sorted(files, key=lambda path: path.relative_to(folder).as_posix())


def read_image(path: Path, channels: int) -> Image.Image:
    """Open and fully decode ``path`` as RGB (``channels=3``) or grey (``channels=1``).

    Transparency is composited on white; 16-bit images are scaled to 8 bits.
    Any failure raises :class:`ImageReadError` naming the file.
    """
    try:
        with Image.open(path) as opened:
            opened.load()
            image = opened.copy()
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        raise ImageReadError(path, f"{type(error).__name__}: {error}") from error
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        array = np.asarray(image, dtype=np.float32)
        peak = 65535.0 if array.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(array * (255.0 / peak), 0, 255).round().astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return image.convert("RGB" if channels == 3 else "L")


def resize_to_cover(image: Image.Image, height: int, width: int) -> Image.Image:
    """Resize (bicubic; PIL antialiases when shrinking) so the image covers ``height x width``."""
    scale = max(height / image.height, width / image.width)
    size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    return image if size == image.size else image.resize(size, Image.BICUBIC)


class ImageFileDataset(Dataset):
    """Images read from files on access: resize to cover ``size``, then a centre or random crop.

    Random crops and flips use torch's global generator (reproducible under
    ``lightning.seed_everything(..., workers=True)``).
    """

    def __init__(
        self,
        files: Sequence[Path],
        labels: Sequence[int] | None,
        height: int,
        width: int,
        channels: int,
        random_crop: bool,
        hflip: bool,
    ) -> None:
        self.files = list(files)
        self.labels = None if labels is None else torch.as_tensor(list(labels), dtype=torch.long)
        self.height, self.width, self.channels = height, width, channels
        self.random_crop, self.hflip = random_crop, hflip

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        path = self.files[index]
        image = resize_to_cover(read_image(path, self.channels), self.height, self.width)
        spare_x, spare_y = image.width - self.width, image.height - self.height
        if self.random_crop:
            left = int(torch.randint(0, spare_x + 1, ()).item())
            top = int(torch.randint(0, spare_y + 1, ()).item())
        else:
            left, top = spare_x // 2, spare_y // 2
        array = np.asarray(image.crop((left, top, left + self.width, top + self.height)), dtype=np.float32)
        if array.ndim == 2:
            array = array[:, :, None]
        tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))) / 127.5 - 1.0
        if self.hflip and bool(torch.rand(()) < 0.5):
            tensor = tensor.flip(-1)
        sample = {"image": tensor}
        if self.labels is not None:
            sample["label"] = self.labels[index]
        return sample


class ImageFolderDataModule(EmbeddedDataModule):
    """Any folder of images (``root``), or scikit-learn's digits when ``root`` is null.

    Batches: ``{"image": float32 [B, channels, H, W] in [-1, 1]}`` plus ``"label": int64 [B]``
    when ``labels_from_subfolders`` is set.

    Split: if ``root/train`` and ``root/val`` are folders they are the splits
    (``root/test``, if present, feeds ``test_dataloader``; otherwise test reads
    val). Otherwise all images under ``root`` are sorted by relative path and
    ``round(N * val_fraction)`` of them, chosen by a seeded permutation, form
    the validation split.

    Args:
        root: folder of images; ``None`` uses the embedded scikit-learn digits
            (1797 images, upsampled bilinearly and replicated to ``channels``;
            their classes are the labels).
        size: output size, an int for squares or ``(height, width)``; images are
            resized (bicubic, antialiased) to cover it, then cropped.
        crop: ``"center"`` or ``"random"``; random crops apply to the train split
            only, validation/test/predict always use centre crops.
        val_fraction: share of the images held out for validation when the
            folder has no ``train``/``val`` sub-folders.
        extensions: file extensions to read (case-insensitive, with or without the dot).
        recursive: search sub-folders too.
        labels_from_subfolders: add ``label`` from the first sub-folder name
            below the split root (sorted class names -> 0..C-1).
        channels: 3 for RGB, 1 for grey.
        hflip: randomly mirror train images horizontally.
        batch_size: images per batch.
        num_workers: DataLoader worker processes (0 = main process).
        seed: seed of the train/val split and of the train shuffling order.
        pin_memory: pin host memory in the loaders.
        predict_inputs: what ``predict`` processes: image files, folders (recursive) or manifests
            (``.txt`` one path per line, ``.json`` list), every one of them, at its own aspect
            ratio (``datamodules.predict_inputs``); ``None`` predicts on the validation split.
        predict_fit: how a predict input reaches ``size``: ``"pad"`` (resize to fit, pad; the
            output is cropped back) or ``"stretch"`` (resize; the output is resized back).
        num_samples, labels: sampling requests for generative modules' ``predict`` (see
            ``DigitsDataModule``).
    """

    def __init__(
        self,
        root: str | None = None,
        size: int | tuple[int, int] = 64,
        crop: str = "center",
        val_fraction: float = 0.1,
        extensions: list[str] = list(DEFAULT_EXTENSIONS),  # noqa: B006 - jsonargparse shows the default list
        recursive: bool = True,
        labels_from_subfolders: bool = False,
        channels: int = 3,
        hflip: bool = False,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        pin_memory: bool = False,
        predict_inputs: str | list[str] | None = None,
        predict_fit: str = "pad",
        num_samples: int | None = None,
        labels: list[int] | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, pin_memory)
        if predict_fit not in FIT_MODES:
            raise ValueError(f"predict_fit must be one of {list(FIT_MODES)}, got {predict_fit!r}")
        self.predict_inputs = [predict_inputs] if isinstance(predict_inputs, str) else predict_inputs
        self.predict_fit = predict_fit
        self.predict_num_samples, self.predict_labels = num_samples, labels
        if crop not in ("center", "random"):
            raise ValueError(f"crop must be 'center' or 'random', got {crop!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.root = None if root is None else Path(root).expanduser()
        self.height, self.width = as_hw(size)
        self.crop = crop
        self.extensions = normalise_extensions(extensions)
        self.recursive = bool(recursive)
        self.labels_from_subfolders = bool(labels_from_subfolders)
        self.channels = int(channels)
        self.hflip = bool(hflip)
        self.classes: list[str] = []
        self.test_dataset: Dataset | None = None
        self.save_hyperparameters()

    # -- building -----------------------------------------------------------------------------
    def _class_of(self, path: Path, split_root: Path) -> str:
        parts = path.relative_to(split_root).parts
        if len(parts) < 2:
            raise ValueError(
                f"labels_from_subfolders=True but image {path} is not inside a class sub-folder of {split_root}"
            )
        return parts[0]

    def _dataset(self, files: list[Path], split_root: Path, train: bool) -> ImageFileDataset:
        labels = None
        if self.labels_from_subfolders:
            labels = [self.classes.index(self._class_of(path, split_root)) for path in files]
        return ImageFileDataset(
            files,
            labels,
            self.height,
            self.width,
            self.channels,
            random_crop=train and self.crop == "random",
            hflip=train and self.hflip,
        )

    def _embedded(self) -> tuple[Dataset, Dataset]:
        images, labels = load_digits_images(max(self.height, self.width))
        if (self.height, self.width) != tuple(images.shape[-2:]):
            top, left = (images.shape[-2] - self.height) // 2, (images.shape[-1] - self.width) // 2
            images = images[:, :, top : top + self.height, left : left + self.width]
        images = images.expand(-1, self.channels, -1, -1).contiguous()
        log.info(
            "root is null: using the embedded scikit-learn digits (%d images, upsampled to %dx%d, %d channel(s)%s)",
            len(images),
            self.height,
            self.width,
            self.channels,
            ", digit classes as labels" if self.labels_from_subfolders else "",
        )
        self.classes = [str(digit) for digit in range(10)]
        train_idx, val_idx = split_indices(len(images), self.val_fraction, self.seed)
        splits = []
        for idx in (train_idx, val_idx):
            tensors = {"image": images[idx]}
            if self.labels_from_subfolders:
                tensors["label"] = labels[idx]
            splits.append(TensorDictDataset(tensors))
        return splits[0], splits[1]

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        if self.root is None:
            return self._embedded()
        root = self.root
        if not root.exists():
            raise FileNotFoundError(f"image folder root does not exist: {root}")
        if not root.is_dir():
            raise NotADirectoryError(f"image folder root is not a directory: {root}")
        train_root, val_root, test_root = root / "train", root / "val", root / "test"
        if train_root.is_dir() and val_root.is_dir():
            train_files = find_images(train_root, self.extensions, self.recursive)
            val_files = find_images(val_root, self.extensions, self.recursive)
            test_files = find_images(test_root, self.extensions, self.recursive) if test_root.is_dir() else None
            roots = {"train": train_root, "val": val_root, "test": test_root}
            layout = "train/val folders" + (" + test folder" if test_files else "")
        else:
            files = find_images(root, self.extensions, self.recursive)
            train_idx, val_idx = split_indices(len(files), self.val_fraction, self.seed)
            train_files = [files[i] for i in train_idx.tolist()]
            val_files = [files[i] for i in val_idx.tolist()]
            test_files = None
            roots = {"train": root, "val": root, "test": root}
            layout = f"one folder split with val_fraction={self.val_fraction}, seed={self.seed}"
        if self.labels_from_subfolders:
            found = {self._class_of(path, roots["train"]) for path in train_files}
            found |= {self._class_of(path, roots["val"]) for path in val_files}
            found |= {self._class_of(path, roots["test"]) for path in test_files or []}
            self.classes = sorted(found)
        train = self._dataset(train_files, roots["train"], train=True)
        val = self._dataset(val_files, roots["val"], train=False)
        self.test_dataset = self._dataset(test_files, roots["test"], train=False) if test_files else None
        log.info(
            "image folder %s (%s): %d train / %d val%s images (extensions %s) -> %dx%d, %s crop%s",
            root,
            layout,
            len(train_files),
            len(val_files),
            f" / {len(test_files)} test" if test_files else "",
            ", ".join(self.extensions),
            self.height,
            self.width,
            self.crop,
            f", {len(self.classes)} classes from sub-folders" if self.labels_from_subfolders else "",
        )
        return train, val

    def predict_dataloader(self):
        """Every file of ``predict_inputs`` (fitted to ``size``, see ``predict_fit``), else the base behaviour."""
        if not self.predict_inputs:
            return super().predict_dataloader()
        files = expand_inputs(self.predict_inputs, key="data.predict_inputs", extensions=self.extensions)
        dataset = PredictImages(files, self.height, self.width, self.predict_fit, self.channels)
        log.info("predict: %d input images from %s, fitted to %dx%d by %s", len(files), self.predict_inputs,
                 self.height, self.width, self.predict_fit)
        return predict_loader(dataset, [(self.height, self.width)] * len(files), self.batch_size, collate_dicts,
                              self.num_workers, getattr(self, "trainer", None), "data.predict_inputs")

    def test_dataloader(self):
        """``root/test`` when it exists, otherwise the validation split."""
        if self.train_dataset is None:
            self.setup("test")
        if self.test_dataset is not None:
            return self._loader(self.test_dataset, shuffle=False)
        return super().test_dataloader()


__all__ = ["DEFAULT_EXTENSIONS", "ImageFolderDataModule", "ImageReadError", "find_images", "read_image"]

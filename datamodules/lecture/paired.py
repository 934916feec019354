"""Paired image-to-image data for pix2pix (lecture seed 002 lines 1190-1229; Isola et al. 2017).

Published layout (facades, maps, cityscapes, edges2shoes, edges2handbags, night2day as
distributed by the pix2pix authors): ``root/{train,val,test}/*.jpg``, each file one image with A
on the left half and B on the right (width = 2 x height). ``direction="AtoB"`` translates the left
half into the right one (``"BtoA"`` the other way; facades' labels->photo is BtoA). Each half is
resized to ``size`` (bicubic) and train pairs are flipped horizontally together with probability
1/2 (pix2pix also jitters by resizing to 286 and cropping 256: left out, a documented
simplification). A file whose width is not twice its height is an error naming the file. Without
``val/`` the ``test/`` split validates.

Embedded tasks (``root: null``), made from the bundled data (digest B3): the target ``image`` is a
digits image (``base="digits"``) or a crop of the scikit-image photos (``base="photos"``; photos are resized to a short side of max(256, 2 x size) so that a crop and the
validation strip both fit), the
``source`` a deterministic function of it:

* ``edges2image``: Sobel gradient magnitude of the grey image, scaled to [-1, 1];
* ``grey2colour``: the luma (Rec. 601) replicated to three channels (photos; digits are grey);
* ``sr2x``: bicubic 2x down- then up-sampling (pix2pix needs equal input/output sizes);
* ``inpaint_centre``: the centre square of half the side set to 0 (mid-grey).

Batches: ``{"source": [B, C, S, S], "image": [B, C, S, S]}`` in [-1, 1] (three channels). With
``predict_root`` set, ``predict`` reads the user's own files instead (:mod:`predict_inputs`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from datamodules._common import EmbeddedDataModule, TensorDictDataset
from datamodules.digits import DigitsDataModule
from datamodules.image_folder import DEFAULT_EXTENSIONS, find_images, normalise_extensions, read_image
from datamodules.lecture.predict_inputs import PredictImageFiles
from datamodules.predict_inputs import UserInputsPredictMixin
from datamodules.photos import PhotoCropsDataModule

log = logging.getLogger(__name__)

PAIRED_TASKS = ("edges2image", "grey2colour", "sr2x", "inpaint_centre")


def _grey(images: Tensor) -> Tensor:
    if images.shape[1] == 1:
        return images
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)


def make_paired_source(task: str, images: Tensor) -> Tensor:
    """The task's input for target ``images`` ``[B, C, H, W]`` in [-1, 1] (module docstring)."""
    if task == "edges2image":
        grey = _grey(images)
        kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=images.dtype)
        kernels = torch.stack([kx, kx.t()])[:, None]
        grad = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernels)
        magnitude = grad.pow(2).sum(1, keepdim=True).sqrt()
        peak = magnitude.flatten(1).amax(1).clamp_min(1e-6).view(-1, 1, 1, 1)
        source = magnitude / peak * 2 - 1
    elif task == "grey2colour":
        source = _grey(images)
    elif task == "sr2x":
        h, w = images.shape[-2:]
        low = F.interpolate(images, size=(h // 2, w // 2), mode="bicubic", align_corners=False, antialias=True)
        source = F.interpolate(low, size=(h, w), mode="bicubic", align_corners=False).clamp(-1, 1)
    elif task == "inpaint_centre":
        h, w = images.shape[-2:]
        source = images.clone()
        source[..., h // 4: h // 4 + h // 2, w // 4: w // 4 + w // 2] = 0.0
    else:
        raise ValueError(f"data.task={task!r} is not one of {list(PAIRED_TASKS)}")
    return source.expand(-1, images.shape[1], -1, -1).contiguous() if source.shape[1] == 1 else source


def split_side_by_side(path: Path, image: Image.Image) -> tuple[Image.Image, Image.Image]:
    """The A (left) and B (right) halves of a pix2pix pair; a width other than 2 x height is an error."""
    width, height = image.size
    if width != 2 * height:
        raise ValueError(
            f"paired image {path} is {width}x{height}: the pix2pix layout puts A|B side by side, so its width "
            f"must be twice its height"
        )
    half = width // 2
    return image.crop((0, 0, half, height)), image.crop((half, 0, width, height))


def _to_tensor(image: Image.Image, size: int) -> Tensor:
    image = image.resize((size, size), Image.BICUBIC) if image.size != (size, size) else image
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(127.5).sub(1.0)


class SideBySideDataset(Dataset):
    """Files in the A|B layout -> ``{"source", "image", "name"}`` (module docstring)."""

    def __init__(self, files: Sequence[Path], size: int, direction: str, train: bool) -> None:
        self.files, self.size, self.direction, self.train = list(files), int(size), direction, bool(train)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        path = self.files[index]
        a, b = split_side_by_side(path, read_image(path, 3))
        source, target = (a, b) if self.direction == "AtoB" else (b, a)
        source, target = _to_tensor(source, self.size), _to_tensor(target, self.size)
        if self.train and torch.rand(()) < 0.5:
            source, target = source.flip(-1), target.flip(-1)
        return {"source": source, "image": target, "name": path.stem}


class PairedDataModule(UserInputsPredictMixin, EmbeddedDataModule):
    """pix2pix pairs from the published layout or an embedded task (module docstring).

    Args:
        root: dataset folder with ``train/`` and ``val/`` (or ``test/``); ``None`` = embedded task.
        task: embedded task, one of :data:`PAIRED_TASKS`.
        base: ``"digits"`` or ``"photos"`` for the embedded targets.
        size: image side (pix2pix: 256).
        direction: ``"AtoB"`` or ``"BtoA"`` (folder layout only).
        predict_root: a folder (or list of files) of the user's own source images for ``predict``.
        crops_per_image: photo crops per photo and split-share (embedded photos only).
    """

    STAND_IN = "embedded edge/colour pairs of digits or photos (stand-in for pix2pix pairs)"  # the results rows' ``dataset`` when ``root`` is null (metrics.results_rows.dataset_field)

    def __init__(self, root: Optional[str] = None, task: str = "edges2image", base: str = "photos", size: int = 256,
                 direction: str = "AtoB", predict_root: Optional[Union[str, list[str]]] = None,
                 crops_per_image: int = 64, batch_size: int = 1, num_workers: int = 0, val_fraction: float = 0.1,
                 seed: int = 0) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, False)
        if task not in PAIRED_TASKS:
            raise ValueError(f"data.task={task!r} is not one of {list(PAIRED_TASKS)}")
        if base not in ("digits", "photos"):
            raise ValueError(f"data.base={base!r} is not 'digits' or 'photos'")
        if direction not in ("AtoB", "BtoA"):
            raise ValueError(f"data.direction={direction!r} is not 'AtoB' or 'BtoA'")
        self.root, self.task, self.base, self.size = root, task, base, int(size)
        self.direction, self.predict_root, self.crops_per_image = direction, predict_root, int(crops_per_image)
        self.save_hyperparameters()

    def _embedded_targets(self) -> tuple[Tensor, Tensor]:
        if self.base == "digits":
            source = DigitsDataModule(size=self.size, channels=3, val_fraction=self.val_fraction, seed=self.seed)
        else:
            source = PhotoCropsDataModule(size=self.size, crops_per_image=self.crops_per_image,
                                          val_crops_per_image=max(1, self.crops_per_image // 8),
                                          short_side=max(256, 2 * self.size), seed=self.seed)
        train, val = source.build_datasets()
        return train.tensors["image"], val.tensors["image"]

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        if self.root is None:
            datasets = []
            for images in self._embedded_targets():
                datasets.append(TensorDictDataset({"source": make_paired_source(self.task, images), "image": images}))
            log.info("PairedDataModule: embedded task %s on %s at %dpx", self.task, self.base, self.size)
            return datasets[0], datasets[1]
        root = Path(self.root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"data.root: paired dataset folder {root} does not exist")
        extensions = normalise_extensions(DEFAULT_EXTENSIONS)
        if not (root / "train").is_dir():
            raise FileNotFoundError(f"data.root: {root} has no train/ folder (pix2pix layout: train/, val/, test/)")
        val_dir = root / "val" if (root / "val").is_dir() else root / "test"
        if not val_dir.is_dir():
            raise FileNotFoundError(f"data.root: {root} has neither val/ nor test/")
        train = SideBySideDataset(find_images(root / "train", extensions, True), self.size, self.direction, True)
        val = SideBySideDataset(find_images(val_dir, extensions, True), self.size, self.direction, False)
        return train, val

    def test_dataloader(self):
        if self.root is not None and (Path(self.root).expanduser() / "test").is_dir():
            files = find_images(Path(self.root).expanduser() / "test", normalise_extensions(DEFAULT_EXTENSIONS), True)
            return self._loader(SideBySideDataset(files, self.size, self.direction, False), shuffle=False)
        return super().test_dataloader()

    def user_predict_dataset(self):
        """The user's own images (``predict_root``: files, folders, manifests), else ``None``."""
        return None if self.predict_root is None else PredictImageFiles(self.predict_root, 3)


__all__ = ["PAIRED_TASKS", "PairedDataModule", "SideBySideDataset", "make_paired_source", "split_side_by_side"]

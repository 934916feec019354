"""Shadow-removal data for LFG-Diffusion (thesis 001 Ch. 7 §7.4): benchmarks, instance synthesis, embedded default.

Batches are dicts (``docs/architecture.md``, "Batches")::

    image      float32 [B, 3, S, S] in [-1, 1]  shadow-free ground truth y_0
    shadow     float32 [B, 3, S, S] in [-1, 1]  shadow image x
    mask       float32 [B, 1, S, S] in {0, 1}   shadow mask, dilated by k (the model's input m)
    eval_mask  float32 [B, 1, S, S] in {0, 1}   the mask as given (the evaluation's shadow region)
    name       list[str]                        file stem (or a generated id)

``source`` chooses where triplets come from:

* ``embedded`` (the default, no download; also whenever ``root`` is null): crops of the scikit-image sample photos
  (:mod:`datamodules.photos`, train and validation from disjoint strips of each photo) with
  synthetic shadows cast on them (:mod:`datamodules.lfg_shadow.synshadow`), fixed by the seed.
* ``istd`` / ``aistd`` / ``srd`` / ``desoba`` / ``folder``: the published layouts of
  :mod:`datamodules.lfg_shadow.layouts` under ``root``; every image is resized to ``size``
  (bicubic; masks nearest) and the train split is flipped / rotated at random.
* ``synthetic``: SynShadow-style instance triplets cast on every image under ``root`` (any folder
  of shadow-free photos, searched recursively), for instance-level training; validation uses the
  last ``val_fraction`` of the files.

The validation split of a benchmark is its test split (the benchmarks have no validation split;
the thesis reports test numbers). ``predict_root`` lists the user's own inputs for ``predict``
(:mod:`lightning_modules.lfg_shadow.predict`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules._common import EmbeddedDataModule, sample_rng
from datamodules.predict_inputs import UserInputsPredictMixin
from datamodules.lfg_shadow.layouts import IMAGE_SUFFIXES, LAYOUTS, triplet_paths
from datamodules.lfg_shadow.synshadow import SynShadowConfig, cast_shadows
from datamodules.lfg_shadow.transforms import augment_triplet, dilate_mask, load_mask, load_rgb, resize_image, resize_mask

log = logging.getLogger(__name__)

SOURCES = ("embedded", "synthetic", *LAYOUTS)


def _triplet(shadow: Tensor, mask: Tensor, free: Tensor, name: str, size: Optional[int], dilation: int) -> dict[str, Any]:
    if size is not None:
        shadow, free, mask = resize_image(shadow, size), resize_image(free, size), resize_mask(mask, size)
    return {"image": free, "shadow": shadow, "mask": dilate_mask(mask, dilation), "eval_mask": mask, "name": name}


class FolderTriplets(Dataset):
    """Triplets of a benchmark layout, read from disk on access."""

    def __init__(self, root: str, layout: str, split: str, size: Optional[int], dilation: int, augment: bool,
                 binarize_threshold: Optional[float]) -> None:
        self.items = triplet_paths(root, layout, split)
        self.size, self.dilation, self.augment, self.threshold = size, dilation, augment, binarize_threshold

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        name, shadow_path, mask_path, free_path = self.items[index]
        shadow, free, mask = load_rgb(shadow_path), load_rgb(free_path), load_mask(mask_path, self.threshold)
        for other, path in ((free, free_path), (mask, mask_path)):
            if tuple(other.shape[-2:]) != tuple(shadow.shape[-2:]):
                raise ValueError(f"{path} is {other.shape[-1]}x{other.shape[-2]} but its shadow image {shadow_path} "
                                 f"is {shadow.shape[-1]}x{shadow.shape[-2]}")
        item = _triplet(shadow, mask, free, name, self.size, 0)
        if self.augment:
            item.update(augment_triplet({k: item[k] for k in ("image", "shadow", "eval_mask")}))
        item["mask"] = dilate_mask(item["eval_mask"], self.dilation)
        return item


class SyntheticTriplets(Dataset):
    """SynShadow-style triplets cast on fixed shadow-free images (``uint8 [N, 3, H, W]`` or file paths)."""

    def __init__(self, sources: Sequence[Any], split: str, seed: int, size: Optional[int], dilation: int,
                 config: SynShadowConfig, augment: bool) -> None:
        self.sources, self.split, self.seed = list(sources), split, seed
        self.size, self.dilation, self.config, self.augment = size, dilation, config, augment

    def __len__(self) -> int:
        return len(self.sources)

    def _image(self, index: int) -> tuple[Tensor, str]:
        source = self.sources[index]
        if isinstance(source, Path):
            image = load_rgb(source)
            return (resize_image(image, self.size) if self.size else image), source.stem
        return source.float() / 127.5 - 1.0, f"{self.split}_{index:05d}"

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, name = self._image(index)
        rng = sample_rng(self.seed, self.split, index)
        unit = ((image.permute(1, 2, 0).numpy() + 1.0) * 0.5).astype(np.float32)
        shadow, mask, truth = cast_shadows(unit, rng, self.config)
        to_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() * 2.0 - 1.0  # noqa: E731
        item = _triplet(to_tensor(shadow), torch.from_numpy(mask)[None], to_tensor(truth), name, None, 0)
        if self.augment:
            item.update(augment_triplet({k: item[k] for k in ("image", "shadow", "eval_mask")}))
        item["mask"] = dilate_mask(item["eval_mask"], self.dilation)
        return item


class ShadowRemovalDataModule(UserInputsPredictMixin, EmbeddedDataModule):
    """Shadow-removal triplets (module docstring).

    Args:
        source: ``embedded``, ``synthetic``, ``istd``, ``aistd``, ``srd``, ``desoba`` or ``folder``.
        root: dataset folder; ``None`` selects the embedded default whatever ``source`` says.
        size: model resolution; 256 in the thesis (§7.4, "interpolate ... 256x256").
        mask_dilation: ``k`` of the mask dilation (21, §7.4); 0 or 1 disables it.
        augment: random flips / 90-degree rotations of the train split.
        binarize_threshold: threshold non-binary masks (0..255) instead of rejecting them.
        photos: ``skimage.data`` names for the embedded source (``None``: the default photos).
        crops_per_image / val_crops_per_image: embedded crops per photo.
        synshadow: :class:`SynShadowConfig` fields for the synthetic shadows.
        predict_root: the user's shadow images for ``predict``: a file, a list, a folder or a manifest
            (masks ``<stem>_mask.<ext>`` beside them, or ``predict_mask_root/<stem>.<ext>``).
        predict_mask_root: optional separate folder of the predict masks.
        batch_size, num_workers, val_fraction, seed, pin_memory: as :class:`EmbeddedDataModule`.
    """

    STAND_IN = "embedded synthetic shadows on photos (stand-in for ISTD / AISTD)"  # the results rows' ``dataset`` when ``root`` is null (metrics.results_rows.dataset_field)

    def __init__(
        self,
        source: str = "embedded",
        root: Optional[str] = None,
        size: int = 256,
        mask_dilation: int = 21,
        augment: bool = True,
        binarize_threshold: Optional[float] = None,
        photos: Optional[list[str]] = None,
        crops_per_image: int = 8,
        val_crops_per_image: int = 2,
        synshadow: Optional[dict[str, Any]] = None,
        predict_root: Union[str, list[str], None] = None,
        predict_mask_root: Optional[str] = None,
        batch_size: int = 8,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, pin_memory)
        if source not in SOURCES:
            raise ValueError(f"data.source={source!r} is not one of {list(SOURCES)}")
        if source != "embedded" and root is None:
            log.info("ShadowRemovalDataModule: data.root is null, so the embedded default is used (data.source=%r "
                     "applies once root names the dataset folder)", source)
            source = "embedded"
        if source == "embedded" and root is not None:
            raise ValueError(f"data.root={root!r} is set but data.source is 'embedded'; choose the layout in data.source")
        if size < 8:
            raise ValueError(f"data.size must be >= 8, got {size}")
        self.source, self.root, self.size = source, root, int(size)
        self.mask_dilation, self.augment, self.binarize_threshold = int(mask_dilation), bool(augment), binarize_threshold
        self.photos, self.crops_per_image, self.val_crops_per_image = photos, int(crops_per_image), int(val_crops_per_image)
        self.synshadow = SynShadowConfig(**(synshadow or {}))
        self.predict_root, self.predict_mask_root = predict_root, predict_mask_root
        self.save_hyperparameters()

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        if self.source == "embedded":
            return self._embedded()
        if self.source == "synthetic":
            files = sorted(p for p in Path(self.root).expanduser().rglob("*")
                           if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
            if len(files) < 2:
                raise FileNotFoundError(f"data.root {self.root} needs at least two shadow-free images for source='synthetic'")
            n_val = max(1, round(len(files) * self.val_fraction))
            return (SyntheticTriplets(files[:-n_val], "train", self.seed, self.size, self.mask_dilation, self.synshadow, self.augment),
                    SyntheticTriplets(files[-n_val:], "val", self.seed, self.size, self.mask_dilation, self.synshadow, False))
        log.info("ShadowRemovalDataModule: %s layout under %s", self.source, self.root)
        return (FolderTriplets(self.root, self.source, "train", self.size, self.mask_dilation, self.augment, self.binarize_threshold),
                FolderTriplets(self.root, self.source, "test", self.size, self.mask_dilation, False, self.binarize_threshold))

    def _embedded(self) -> tuple[Dataset, Dataset]:
        from datamodules.photos import PhotoCropsDataModule

        log.info("ShadowRemovalDataModule: root is null -> embedded synthetic shadows on scikit-image photos")
        photos = PhotoCropsDataModule(size=self.size, crops_per_image=self.crops_per_image,
                                      val_crops_per_image=self.val_crops_per_image, images=self.photos,
                                      short_side=max(self.size * 2, 64), hflip=False, seed=self.seed,
                                      val_fraction=max(self.val_fraction, 0.25))
        train, val = photos.build_datasets()
        to_uint8 = lambda ds: [((ds[i]["image"] + 1) * 127.5).round().to(torch.uint8) for i in range(len(ds))]  # noqa: E731
        return (SyntheticTriplets(to_uint8(train), "train", self.seed, None, self.mask_dilation, self.synshadow, self.augment),
                SyntheticTriplets(to_uint8(val), "val", self.seed, None, self.mask_dilation, self.synshadow, False))

    def user_predict_dataset(self) -> Optional[Dataset]:
        """The user's shadow images and masks (``lightning_modules.lfg_shadow.predict``), else ``None``."""
        if self.predict_root is None:
            return None
        from lightning_modules.lfg_shadow.predict import PredictInputs

        return PredictInputs(self.predict_root, self.predict_mask_root, self.binarize_threshold)


__all__ = ["FolderTriplets", "SOURCES", "ShadowRemovalDataModule", "SyntheticTriplets"]

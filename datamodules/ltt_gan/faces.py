"""``TurbulenceFaceDataModule``: LTT-GAN's data (thesis 001 Ch. 6, §6.4).

* train: FFHQ (``root``: a folder of aligned faces, 512x512 in the paper; other sizes are resized
  to ``size``), each read degraded on the fly with :class:`ElasticAug` (``degradation``:
  ``full`` = the 800k config, ``ablation`` = the 80k ablation config) after a random horizontal
  flip; the per-read generator is seeded from torch's global RNG (reproducible under
  ``seed_everything(..., workers=True)``);
* validation / test: ``paired_root`` in the CelebAHQ100 layout (:func:`paired_folder`), else the
  held-out faces (``val_fraction`` of ``root``) or embedded crops degraded once with a fixed
  per-item seed (``seed`` + index), so every epoch sees the same pairs;
* test also yields an identity set when ``identity_root`` is given (:func:`identity_pairs`):
  a second test loader with ``{"input", "identity", "role"}`` items (``role`` 0 = probe,
  1 = gallery reference);
* predict: ``predict_root`` (file, list, folder or manifest; any size) brought to
  ``size x size`` with ``predict_fit`` (``stretch`` by default: the inputs are face crops);
* embedded default (``root: null``): the bundled scikit-image photos (``astronaut`` is a face)
  cut into crops: stand-in data, results rows say so.

The P2S turbulence simulator (Mao et al. 2021) that builds CelebAHQ100 is not ported: give
CelebAHQ100 pre-simulated as ``paired_root``.

Batches: ``{"input": degraded [B, 3, S, S], "image": clean [B, 3, S, S]}`` in [-1, 1].
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules._common import EmbeddedDataModule, collate_dicts, split_indices
from datamodules.ltt_gan.elastic_aug import ElasticAug, ElasticAugConfig
from datamodules.ltt_gan.identity import identity_pairs, paired_folder
from datamodules.predict_inputs import IMAGE_EXTENSIONS, load_image_tensor

log = logging.getLogger(__name__)


def _load_face(path: Path, size: int) -> Tensor:
    image = load_image_tensor(path)
    if tuple(image.shape[-2:]) != (size, size):
        image = F.interpolate(image[None], size=(size, size), mode="bicubic", align_corners=False,
                              antialias=True)[0].clamp(-1, 1)
    return image


class DegradedFaces(Dataset):
    """Clean faces (tensors or files) -> ``{"input": ElasticAug(face), "image": face}``."""

    def __init__(self, faces: Sequence[Any], size: int, degrade: ElasticAug, train: bool, seed: int) -> None:
        self.faces, self.size, self.degrade, self.train, self.seed = list(faces), size, degrade, train, seed

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        face = self.faces[index]
        clean = _load_face(face, self.size) if isinstance(face, (str, Path)) else face
        if self.train:
            generator = torch.Generator().manual_seed(int(torch.randint(2 ** 62, ())))
            if float(torch.rand((), generator=generator)) < 0.5:
                clean = clean.flip(-1)
        else:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        degraded = self.degrade((clean + 1) * 0.5, generator) * 2 - 1
        return {"input": degraded.float(), "image": clean.float()}


class PairedFaces(Dataset):
    def __init__(self, pairs: Sequence[tuple[Path, Path]], size: int) -> None:
        self.pairs, self.size = list(pairs), size

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        degraded, clean = self.pairs[index]
        return {"input": _load_face(degraded, self.size), "image": _load_face(clean, self.size), "name": degraded.stem}


class IdentityFaces(Dataset):
    """Probe (role 0, restored before embedding) and gallery (role 1, embedded as is) faces."""

    def __init__(self, probes: Sequence[tuple[Path, str]], gallery: Sequence[tuple[Path, str]], size: int) -> None:
        self.items = [(p, i, 0) for p, i in probes] + [(p, i, 1) for p, i in gallery]
        self.size = size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path, identity, role = self.items[index]
        return {"input": _load_face(path, self.size), "identity": identity, "role": role, "name": path.stem}


class TurbulenceFaceDataModule(EmbeddedDataModule):
    """FFHQ + ElasticAug / CelebAHQ100 pairs / identity sets / embedded faces (module docstring).

    Args:
        root: FFHQ folder (images found recursively); ``None``: embedded photos.
        size: face size (512).
        degradation: ``full`` or ``ablation`` (the two [code] parameter sets).
        degradation_overrides: fields of :class:`ElasticAugConfig` to change (tiny configs).
        paired_root: CelebAHQ100-layout folder for validation and test.
        identity_root: ``probe/`` + ``gallery/`` folder with id-prefixed names (test only).
        identity_separator: separator after the identity prefix ("_").
        predict_root: the user's degraded faces for ``predict``.
        predict_fit: ``stretch`` or ``pad`` (:func:`datamodules.predict_inputs.fit_to_canvas`).
        embedded_images, embedded_crops_per_image, embedded_val_crops_per_image, embedded_short_side:
            the embedded default (:class:`datamodules.photos.PhotoCropsDataModule`).
        batch_size, num_workers, val_fraction, seed: loaders (batch 12 in the paper, over 4 GPUs).
    """

    STAND_IN = "embedded photos with ElasticAug turbulence (stand-in for FFHQ / CelebAHQ100)"  # the results rows' ``dataset`` when ``root`` is null (metrics.results_rows.dataset_field)

    def __init__(self, root: Optional[str] = None, size: int = 512, degradation: str = "full",
                 degradation_overrides: Optional[dict[str, Any]] = None, paired_root: Optional[str] = None,
                 identity_root: Optional[str] = None, identity_separator: str = "_",
                 predict_root: Optional[Any] = None, predict_fit: str = "stretch",
                 embedded_images: Optional[list[str]] = None, embedded_crops_per_image: int = 16,
                 embedded_val_crops_per_image: int = 2, embedded_short_side: Optional[int] = None,
                 batch_size: int = 3, num_workers: int = 0, val_fraction: float = 0.01, seed: int = 0) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed)
        if degradation not in ("full", "ablation"):
            raise ValueError(f"data.degradation={degradation!r} is not 'full' or 'ablation'")
        config = getattr(ElasticAugConfig, degradation)()
        for key, value in (degradation_overrides or {}).items():
            if not hasattr(config, key):
                raise ValueError(f"data.degradation_overrides: unknown ElasticAug field {key!r}")
            setattr(config, key, value)
        self.degrade = ElasticAug(config)
        self.root, self.size = root, int(size)
        self.paired_root, self.identity_root, self.identity_separator = paired_root, identity_root, identity_separator
        self.predict_root, self.predict_fit = predict_root, predict_fit
        self.embedded_images = embedded_images
        self.embedded_crops_per_image, self.embedded_val_crops_per_image = embedded_crops_per_image, embedded_val_crops_per_image
        self.embedded_short_side = embedded_short_side
        self.uses_embedded_data = root is None

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        if self.root is None:
            from datamodules.photos import PhotoCropsDataModule

            photos = PhotoCropsDataModule(size=self.size, crops_per_image=self.embedded_crops_per_image,
                                          val_crops_per_image=self.embedded_val_crops_per_image,
                                          images=self.embedded_images,
                                          short_side=self.embedded_short_side or max(256, 2 * self.size),
                                          hflip=False, seed=self.seed)
            train_set, val_set = photos.build_datasets()
            train_faces = [train_set[i]["image"] for i in range(len(train_set))]
            val_faces = [val_set[i]["image"] for i in range(len(val_set))]
            log.info("LTT-GAN: embedded scikit-image photos as stand-in faces (%d train, %d val)",
                     len(train_faces), len(val_faces))
        else:
            root = Path(self.root)
            if not root.is_dir():
                raise FileNotFoundError(f"data.root {self.root!r} (the FFHQ folder) does not exist")
            files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
            if len(files) < 2:
                raise ValueError(f"data.root {self.root!r} holds {len(files)} images; need at least 2")
            train_idx, val_idx = split_indices(len(files), self.val_fraction, self.seed)
            train_faces, val_faces = [files[i] for i in train_idx], [files[i] for i in val_idx]
        train = DegradedFaces(train_faces, self.size, self.degrade, True, self.seed)
        if self.paired_root is not None:
            val: Dataset = PairedFaces(paired_folder(self.paired_root), self.size)
        else:
            val = DegradedFaces(val_faces, self.size, self.degrade, False, self.seed)
        return train, val

    def test_dataloader(self) -> Any:
        paired = self._loader(self.val_dataset, shuffle=False)
        if self.identity_root is None:
            return paired
        probes, gallery = identity_pairs(self.identity_root, self.identity_separator)
        identity = DataLoader(IdentityFaces(probes, gallery, self.size), batch_size=self.batch_size,
                              collate_fn=collate_dicts, num_workers=self.num_workers)
        return [paired, identity]

    def predict_dataloader(self) -> DataLoader:
        if self.predict_root is None:
            return self._loader(self.val_dataset, shuffle=False)
        from datamodules.predict_inputs import PredictImages, expand_inputs, predict_loader

        files = expand_inputs(self.predict_root, key="data.predict_root")
        dataset = PredictImages(files, self.size, self.size, mode=self.predict_fit)
        return predict_loader(dataset, [(self.size, self.size)] * len(files), self.batch_size, collate_dicts,
                              trainer=getattr(self, "trainer", None), key="data.predict_root")


__all__ = ["DegradedFaces", "IdentityFaces", "PairedFaces", "TurbulenceFaceDataModule"]

"""DeepFashion In-shop pose-transfer pairs in their published layout (seed 003 Sec. 4.1; digest 002-003 A6).

Layout under ``root`` (the PATN split in the DPTN/CFLD release; the files keep the "fasion" spelling)::

    fasion-resize-pairs-train.csv        from,to                      (101,966 pairs)
    fasion-resize-pairs-test.csv         from,to                      (8,570 pairs)
    fasion-resize-annotation-train.csv   name:keypoints_y:keypoints_x (':'-separated; JSON lists of 18 ints)
    fasion-resize-annotation-test.csv
    train_highres/<name>                 images, flattened names (generate_fashion_datasets.py)
    test_highres/<name>

Keypoints are in the 256x176 (H x W) frame, OpenPose-18 order, -1 for a missing joint; batches
carry them as ``(x, y)`` float pixels with ``keypoint_frame = (256, 176)``.

Batches (train/val): ``source_image``, ``target_image`` float32 ``[B, 3, S, S]`` in [-1, 1],
resized (bicubic, antialiased) to the square ``load_size`` the model is trained at (512 [R]);
``source_keypoints``, ``target_keypoints`` ``[B, 18, 2]``; ``keypoint_frame`` ``[B, 2]``.
Test batches add ``target_image_eval`` (the target at ``target_eval_size``: 256x176 or 512x352) and
``name`` (``from___to``, for prediction files).

``root: null`` selects the embedded default: synthetic clothed stick figures of
``datamodules.stick_figures`` (same keypoint conventions, no download), and says so in the log.
The FID reference of the paper's protocol is the *training* images; :meth:`fid_real_dataloader`
yields them at ``target_eval_size`` (``image`` key) so their statistics can be computed once.

:class:`PoseTransferRequests` is the ``predict`` input: the user's own source images and target
poses (an 18-keypoint file or an image whose pose the model's detector extracts), with optional
mask-based style transfer and style interpolation.
"""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any, Optional, Sequence

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules._common import GeneratedDataset, as_hw, collate_dicts, split_counts
from datamodules.resumable import ResumableSampler, apply_resume_state, resume_state
from datamodules.predict_inputs import placement_for, predict_loader, unique_names
from datamodules.stick_figures import StickFigurePairs

log = logging.getLogger(__name__)

KEYPOINT_FRAME = (256, 176)
NUM_JOINTS = 18
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _resize(image: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(image[None], size=size, mode="bicubic", antialias=True, align_corners=False)[0].clamp(-1, 1)


def load_image(path: Path) -> Tensor:
    """An RGB image file -> float32 ``[3, H, W]`` in [-1, 1]; a missing/corrupt file is named in the error."""
    try:
        with Image.open(path) as handle:
            array = np.asarray(handle.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, ValueError) as error:
        raise OSError(f"cannot read image '{path}': {error}") from error
    return torch.from_numpy(array).permute(2, 0, 1).float().div(127.5).sub(1.0)


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """``fasion-resize-pairs-*.csv`` (header ``from,to``) -> list of (from, to) names."""
    if not path.is_file():
        raise FileNotFoundError(f"DeepFashion pair list not found: '{path}' (DPTN/CFLD release, columns from,to)")
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or [c.strip() for c in rows[0][:2]] != ["from", "to"]:
        raise ValueError(f"'{path}': expected a header 'from,to', found {rows[:1]}")
    return [(r[0].strip(), r[1].strip()) for r in rows[1:] if len(r) >= 2]


def read_annotations(path: Path) -> dict[str, Tensor]:
    """``fasion-resize-annotation-*.csv`` (``name:keypoints_y:keypoints_x``) -> name -> ``[18, 2]`` (x, y), -1 missing."""
    if not path.is_file():
        raise FileNotFoundError(f"DeepFashion keypoint file not found: '{path}' (columns name:keypoints_y:keypoints_x)")
    out: dict[str, Tensor] = {}
    with open(path) as handle:
        header = handle.readline().strip().split(":")
        if header[:3] != ["name", "keypoints_y", "keypoints_x"]:
            raise ValueError(f"'{path}': expected header name:keypoints_y:keypoints_x, found {':'.join(header)}")
        for number, line in enumerate(handle, 2):
            if not line.strip():
                continue
            try:
                name, ys, xs = line.strip().split(":")
                y, x = json.loads(ys), json.loads(xs)
            except ValueError as error:
                raise ValueError(f"'{path}' line {number}: cannot parse '{line.strip()[:80]}' ({error})") from error
            if len(x) != NUM_JOINTS or len(y) != NUM_JOINTS:
                raise ValueError(f"'{path}' line {number}: expected {NUM_JOINTS} keypoints, got {len(x)}/{len(y)}")
            xy = torch.tensor([x, y], dtype=torch.float32).T
            missing = (xy[:, 0] < 0) | (xy[:, 1] < 0)
            xy[missing] = -1.0
            out[name.strip()] = xy
    return out


class DeepFashionPairs(Dataset):
    """Pairs of one split read from the published layout."""

    def __init__(
        self, root: Path, split: str, image_size: tuple[int, int], eval_size: Optional[tuple[int, int]], image_dir: str
    ) -> None:
        self.root, self.split, self.image_size, self.eval_size = root, split, image_size, eval_size
        self.image_dir = root / image_dir.format(split=split)
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"DeepFashion image folder not found: '{self.image_dir}'")
        self.pairs = read_pairs(root / f"fasion-resize-pairs-{split}.csv")
        self.keypoints = read_annotations(root / f"fasion-resize-annotation-{split}.csv")
        unknown = sorted({n for pair in self.pairs for n in pair if n not in self.keypoints})
        if unknown:
            raise KeyError(f"{len(unknown)} pair image(s) have no keypoints in the {split} annotation file, e.g. {unknown[:3]}")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        src, tgt = self.pairs[index]
        source, target = load_image(self.image_dir / src), load_image(self.image_dir / tgt)
        item: dict[str, Any] = {
            "source_image": _resize(source, self.image_size),
            "target_image": _resize(target, self.image_size),
            "source_keypoints": self.keypoints[src],
            "target_keypoints": self.keypoints[tgt],
            "keypoint_frame": torch.tensor(KEYPOINT_FRAME, dtype=torch.float32),
        }
        if self.eval_size is not None:
            item["target_image_eval"] = _resize(target, self.eval_size)
            item["name"] = f"{Path(src).stem}___{Path(tgt).stem}"
        return item


class DeepFashionImages(Dataset):
    """Every image of a split folder at ``size`` (``image`` key): the FID real set of the protocol."""

    def __init__(self, folder: Path, size: tuple[int, int]) -> None:
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {"image": _resize(load_image(self.files[index]), self.size)}


class _EmbeddedPairs:
    """Stick-figure pairs with the DeepFashion batch keys (picklable for workers)."""

    def __init__(self, size: tuple[int, int], split: str, seed: int, test: bool) -> None:
        self.make = StickFigurePairs(size[0], size[1], 2, split, seed)
        self.size, self.test = size, test

    def __call__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = dict(self.make(index))
        item["keypoint_frame"] = torch.tensor(self.size, dtype=torch.float32)
        if self.test:
            item["target_image_eval"] = item["target_image"]
            item["name"] = f"pair{index:05d}"
        return item


class DeepFashionDataModule(L.LightningDataModule):
    """DeepFashion In-shop pose-transfer pairs (published layout) or embedded stick figures (``root: null``).

    Args:
        root: dataset folder (layout in the module docstring); ``None`` = embedded stick figures.
        load_size: square side the source and target images are resized to (512 [R]).
        target_eval_size: ``(H, W)`` of the test targets (256x176 or 512x352).
        image_dir: image folder pattern (``{split}_highres``).
        val_pairs: number of test pairs used for validation (the release has no val split).
        embedded_size: ``(H, W)`` of the stick figures; ``embedded_samples``: pairs generated.
        batch_size, num_workers, seed, pin_memory: loader settings.
    """

    STAND_IN = "embedded stick figures (stand-in for DeepFashion pairs)"  # the results rows' ``dataset`` when ``root`` is null (metrics.results_rows.dataset_field)

    def __init__(
        self,
        root: Optional[str] = None,
        load_size: int = 512,
        target_eval_size: Sequence[int] = KEYPOINT_FRAME,
        image_dir: str = "{split}_highres",
        val_pairs: int = 64,
        embedded_size: int | Sequence[int] = (64, 44),
        embedded_samples: int = 2048,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.root = Path(root).expanduser() if root is not None else None
        self.image_size = (int(load_size), int(load_size))
        self.eval_size = as_hw(tuple(target_eval_size))
        self.image_dir = image_dir
        self.val_pairs = int(val_pairs)
        self.embedded_size = as_hw(embedded_size if isinstance(embedded_size, int) else tuple(embedded_size))
        self.embedded_samples = int(embedded_samples)
        self.batch_size, self.num_workers, self.seed, self.pin_memory = batch_size, num_workers, seed, pin_memory
        self.datasets: dict[str, Dataset] = {}
        self._train_sampler: Optional[ResumableSampler] = None
        self._resume_state: dict[str, Any] = {}

    def setup(self, stage: Optional[str] = None) -> None:
        if self.datasets:
            return
        if self.root is None:
            num_train, num_val = split_counts(self.embedded_samples, 0.1)
            log.info(
                "DeepFashionDataModule: root is null, using the embedded synthetic stick figures (no download): "
                "%d train / %d test pairs at %dx%d", num_train, num_val, *self.embedded_size,
            )
            self.datasets = {
                "train": GeneratedDataset(_EmbeddedPairs(self.embedded_size, "train", self.seed, False), num_train),
                "val": GeneratedDataset(_EmbeddedPairs(self.embedded_size, "val", self.seed, False), num_val),
                "test": GeneratedDataset(_EmbeddedPairs(self.embedded_size, "val", self.seed, True), num_val),
            }
            return
        train = DeepFashionPairs(self.root, "train", self.image_size, None, self.image_dir)
        test = DeepFashionPairs(self.root, "test", self.image_size, self.eval_size, self.image_dir)
        val = torch.utils.data.Subset(test, range(min(self.val_pairs, len(test))))
        self.datasets = {"train": train, "val": val, "test": test}
        log.info("DeepFashionDataModule: %d train / %d test pairs from %s", len(train), len(test), self.root)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        sampler = None
        if shuffle:  # resumable mid-epoch (datamodules/resumable.py): the order comes from (seed, epoch)
            sampler = self._train_sampler = ResumableSampler(len(self.datasets[split]), self.seed)
            apply_resume_state(sampler, self._resume_state, self.batch_size)
            self._resume_state = {}
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            sampler=sampler,
            # its own generator, so creating the iterator draws nothing from the global RNG
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
            num_workers=self.num_workers,
            collate_fn=collate_dicts,
            pin_memory=self.pin_memory,
            drop_last=shuffle and len(self.datasets[split]) > self.batch_size,  # drop_last in training [R]
            persistent_workers=self.num_workers > 0,
        )

    def state_dict(self) -> dict[str, Any]:
        """Where training stands in the train split (saved in every checkpoint) for an exact mid-epoch resume."""
        return resume_state(self.trainer) if self._train_sampler is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Make the next train epoch continue where the checkpointed run stopped (single process)."""
        self._resume_state = dict(state_dict or {})
        trainer = self.trainer
        if self._resume_state and trainer is not None and trainer.world_size > 1:
            log.warning("DeepFashionDataModule: exact mid-epoch resume is single-process only; with %d processes the "
                        "interrupted epoch restarts from its first batch.", trainer.world_size)
            self._resume_state = {}
        if self._train_sampler is not None:
            apply_resume_state(self._train_sampler, self._resume_state, self.batch_size)
            self._resume_state = {}

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def fid_real_dataloader(self) -> DataLoader:
        """The training images at ``eval_size``: the real set of the CFLD/PIDM/NTED FID protocol."""
        if self.root is None:
            raise ValueError("the FID real set of the protocol is DeepFashion's training split; root is null")
        dataset = DeepFashionImages(self.root / self.image_dir.format(split="train"), self.eval_size)
        return DataLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=collate_dicts)


# ---------------------------------------------------------------------------------------- predict inputs
def read_keypoint_file(path: Path) -> tuple[Tensor, Optional[tuple[int, int]]]:
    """An 18-keypoint file -> ``([18, 2] (x, y), frame (H, W) or None)``.

    Formats: ``.json`` with a list of 18 ``[x, y]`` or ``{"keypoints": [[x, y], ...], "frame": [H, W]}``
    or ``{"keypoints_x": [...], "keypoints_y": [...]}`` (DeepFashion's columns); ``.csv``/``.txt``
    with 18 lines ``x,y``. ``-1`` marks a missing joint.
    """
    frame = None
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            frame = tuple(int(v) for v in data["frame"]) if "frame" in data else None
            if "keypoints" in data:
                points = data["keypoints"]
            else:
                points = list(zip(data["keypoints_x"], data["keypoints_y"]))
        else:
            points = data
    else:
        points = [[float(v) for v in line.replace(";", ",").split(",")[:2]] for line in path.read_text().splitlines() if line.strip()]
    xy = torch.tensor(points, dtype=torch.float32)
    if xy.shape != (NUM_JOINTS, 2):
        raise ValueError(f"'{path}': expected {NUM_JOINTS} (x, y) keypoints, got shape {tuple(xy.shape)}")
    return xy, frame  # type: ignore[return-value]


class _Requests(Dataset):
    """One request per source, or per (source, alpha) of a style-interpolation sweep.

    Images are loaded at the square ``load_size`` (resized, "stretch" mapping of
    ``datamodules.predict_inputs``); ``placement`` records the source's own size, so the
    module maps the output back to it and the output keeps the source's aspect ratio.
    """

    def __init__(self, module: "PoseTransferRequests") -> None:
        self.m = module
        self.alphas = module.alphas if module.interpolation_sources else [None]
        pairs = [Path(f"{Path(s).stem}__{Path(module.target_for(i)).stem}") for i, s in enumerate(module.sources)]
        self.names = unique_names(pairs)

    def __len__(self) -> int:
        return len(self.m.sources) * len(self.alphas)

    def __getitem__(self, request: int) -> dict[str, Any]:
        m = self.m
        index, alpha = divmod(request, len(self.alphas))[0], self.alphas[request % len(self.alphas)]
        source_path = Path(m.sources[index])
        target_path = Path(m.target_for(index))
        source = load_image(source_path)
        item: dict[str, Any] = {"source_image": _resize(source, m.image_size)}
        item["placement"] = placement_for(source.shape[-2], source.shape[-1], *m.image_size, mode="stretch")
        if target_path.suffix.lower() in IMAGE_SUFFIXES:
            item["target_pose_image"] = _resize(load_image(target_path), m.image_size)
        else:
            keypoints, frame = read_keypoint_file(target_path)
            item["target_keypoints"] = keypoints
            item["keypoint_frame"] = torch.tensor(frame or m.keypoint_frame, dtype=torch.float32)
        if m.references:
            item["reference_image"] = _resize(load_image(Path(m.references[index])), m.image_size)
            mask = load_image(Path(m.masks[index]))[:1]
            item["mask"] = (_resize(mask, m.image_size) > 0).float()
        if alpha is not None:
            item["interpolation_source"] = _resize(load_image(Path(m.interpolation_sources[index])), m.image_size)
            item["interpolation_alpha"] = torch.tensor(float(alpha))
        item["name"] = self.names[index]
        item["path"] = str(source_path)
        return item


class PoseTransferRequests(L.LightningDataModule):
    """The user's own ``predict`` inputs: source images and target poses (keypoint files or images).

    Args:
        sources: source image files.
        targets: one target per source (or one for all): an 18-keypoint file (``.json``/``.csv``/``.txt``,
            see :func:`read_keypoint_file`) or an image whose pose the model's ``pose_detector`` extracts.
            May be left out for mask-based style transfer: the target pose is then the reference's
            (seed 003 Sec. 4.6), from ``reference_poses`` when given, else detected on the reference image.
        keypoint_frame: ``(H, W)`` frame of keypoint files that do not state one (DeepFashion: 256x176).
        load_size: square side images are loaded at (the model resizes further as needed).
        references, masks: mask-based style transfer: per source a reference image (its pose is the
            target pose) and a mask image (white = take the source's appearance, black = keep the reference).
        reference_poses: optional 18-keypoint file per reference (its pose), used when ``targets`` is empty.
        interpolation_sources, alphas: style interpolation with a second source: every source is
            transferred at every ``alpha`` of the sweep, one file per alpha (``<name>__alpha0.50.png``).
        batch_size: requests per batch.
    """

    def __init__(
        self,
        sources: Sequence[str],
        targets: Optional[Sequence[str]] = None,
        keypoint_frame: Sequence[int] = KEYPOINT_FRAME,
        load_size: int = 512,
        references: Optional[Sequence[str]] = None,
        masks: Optional[Sequence[str]] = None,
        reference_poses: Optional[Sequence[str]] = None,
        interpolation_sources: Optional[Sequence[str]] = None,
        alphas: Sequence[float] = (0.5,),
        batch_size: int = 1,
    ) -> None:
        super().__init__()
        targets = list(targets or [])
        if not sources or (not targets and not references) or (targets and len(targets) not in (1, len(sources))):
            raise ValueError("give one target per source (or a single target for all sources); "
                             "only mask-based style transfer (references + masks) may leave targets out")
        if references is not None and (masks is None or len(references) != len(sources) or len(masks) != len(sources)):
            raise ValueError("mask-based style transfer needs one reference and one mask per source")
        if reference_poses is not None and (references is None or len(reference_poses) != len(sources)):
            raise ValueError("reference_poses needs one keypoint file per reference")
        if interpolation_sources is not None and len(interpolation_sources) != len(sources):
            raise ValueError("style interpolation needs one interpolation source per source")
        self.sources, self.targets = list(sources), targets
        self.reference_poses = list(reference_poses or [])
        self.keypoint_frame = tuple(keypoint_frame)
        self.image_size = (int(load_size), int(load_size))
        self.references, self.masks = list(references or []), list(masks or [])
        self.interpolation_sources, self.alphas = list(interpolation_sources or []), list(alphas)
        self.batch_size = batch_size
        self.root = "user inputs"

    def target_for(self, index: int) -> str:
        """The target pose file of request ``index``: the target, else the reference's pose (file or image)."""
        if self.targets:
            return self.targets[index if len(self.targets) > 1 else 0]
        return self.reference_poses[index] if self.reference_poses else self.references[index]

    def predict_dataloader(self) -> DataLoader:
        """Every request, batched (all at ``load_size``); no ``limit_predict_batches`` truncation."""
        requests = _Requests(self)
        return predict_loader(requests, [self.image_size] * len(requests), self.batch_size, collate_dicts,
                              trainer=getattr(self, "trainer", None), key="PoseTransferRequests")


__all__ = [
    "DeepFashionDataModule",
    "DeepFashionPairs",
    "PoseTransferRequests",
    "load_image",
    "read_annotations",
    "read_keypoint_file",
    "read_pairs",
]

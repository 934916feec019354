"""Painting time-lapses for Inverse Painting (thesis 000, Ch. 6, §6.7): the published layout and an
embedded default.

**Layout** (our reading of the official code's layout, digest §6.7 [code])::

    root/{train,val}/<painting>/
        {idx}_{mm:ss}.jpg      keyframes, idx increasing, mm:ss their time in the video
        white.jpg              optional start canvas (a white canvas is synthesised otherwise)
        target.json            optional {"target": "<frame file name>"}; default the last frame
        text.json              optional {"<frame file name>": "instruction"}: what was painted to reach
                               that frame (GT text p_t; the paper's LLaVA annotations, hand-corrected)

Frames after the target are ignored. The sequence is white canvas (time 0) + keyframes.
Images are resized to ``size`` (bilinear); [choice] the code pads to a multiple of 16 keeping the
aspect ratio, we resize (set ``size`` to your aspect ratio).

**Pairs** (training): every ``(i, j)`` with ``0 <= i < j <= min(i + window, K - 1)`` of a painting
(windowed pair sampling: the renderer config of the code has ``win_size 10``, the mask generator
``5``), giving ``canvas = I_i``, ``next = I_j``, ``target = I_T``, ``delta = t_j - t_i`` seconds and
``text`` = the instruction of frame ``i + 1`` ([choice]: the first thing painted after ``I_i``).
On the embedded data the exact step masks are also given: ``mask`` (pixels changed between ``i``
and ``j``) and ``unfinished`` (pixels where ``I_i`` differs from ``I_T``); on real data the
modules compute both with the difference-mask operator ``D`` (LPIPS, α = 0.2).

**Sequences** (``test``): whole paintings ``frames [K, 3, H, W]``, ``times [K]``, ``target``,
``text`` (K strings), ``name``. **Predict**: the user's finished paintings from
``predict_images`` (files or folders of images) as ``target`` + ``name``; without it, the
validation paintings' targets.

**Embedded default** (``root: null``): :class:`datamodules.paintings.LandscapeGenerator`'s
procedural stroke-by-stroke landscapes with timestamps and region labels (a documented stand-in
for the YouTube data, not the paper's data).

Batch keys: ``canvas``, ``next``, ``target`` ``[B, 3, H, W]`` in ``[-1, 1]``; ``delta`` ``[B]``;
``mask``, ``unfinished`` ``[B, 1, H, W]`` (embedded only); ``text`` list of ``B`` strings;
``instruction`` ``[B]`` vocabulary index (-1 when the word is not in ``vocabulary``).
"""
from __future__ import annotations

import json
import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules._common import EmbeddedDataModule, as_hw, collate_dicts, split_counts
from datamodules.predict_inputs import expand_inputs, image_size_of, placement_for, release_predict_limit, unique_names
from datamodules.paintings import PAINTING_VOCABULARY, LandscapeGenerator

log = logging.getLogger(__name__)

FRAME_NAME = re.compile(r"^(\d+)_(\d+):(\d{2})\.(jpg|jpeg|png)$", re.IGNORECASE)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")

#: LLaVA-style prompts of §6.3: the fine-tuning question of g_text and the annotation question.
INSTRUCTION_PROMPT = (
    "There are two images side by side. The left image is an intermediate stage of the painting on the right. "
    "What should be painted next? Answer in less than two words."
)
ANNOTATION_PROMPT = (
    "There are two images side by side. The right image is the next step of the painting on the left. "
    "What was added in the right image? Answer in less than two words."
)


def parse_frame_name(name: str) -> Optional[tuple[int, float]]:
    """``"{idx}_{mm:ss}.jpg"`` -> ``(idx, seconds)``; ``None`` for other names."""
    match = FRAME_NAME.match(name)
    if match is None:
        return None
    return int(match.group(1)), 60.0 * int(match.group(2)) + int(match.group(3))


def format_time(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def load_image(path: Path, size: tuple[int, int]) -> Tensor:
    """An image file -> float32 ``[3, H, W]`` in ``[-1, 1]`` resized to ``size``."""
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    tensor = torch.from_numpy(array).permute(2, 0, 1).contiguous()
    if tuple(tensor.shape[-2:]) != tuple(size):
        tensor = F.interpolate(tensor[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    return tensor.clamp(-1, 1)


class TimelapseFolder:
    """One painting folder of the published layout: frame files, times, text, target."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.name = self.folder.name
        frames = []
        for path in self.folder.iterdir():
            parsed = parse_frame_name(path.name)
            if parsed is not None:
                frames.append((parsed[0], parsed[1], path))
        if not frames:
            raise FileNotFoundError(f"{self.folder}: no keyframes named '{{idx}}_{{mm:ss}}.jpg'")
        frames.sort()
        target_name = None
        target_file = self.folder / "target.json"
        if target_file.is_file():
            target_name = json.loads(target_file.read_text())["target"]
        names = [p.name for _, _, p in frames]
        if target_name is not None:
            if target_name not in names:
                raise ValueError(f"{target_file}: target {target_name!r} is not one of the keyframes")
            frames = frames[: names.index(target_name) + 1]
        text_file = self.folder / "text.json"
        text = json.loads(text_file.read_text()) if text_file.is_file() else {}
        white = self.folder / "white.jpg"
        self.white: Optional[Path] = white if white.is_file() else None
        self.paths = [p for _, _, p in frames]
        self.times = [0.0] + [float(t) for _, t, _ in frames]
        self.text = ["none"] + [str(text.get(p.name, "")) for p in self.paths]

    def __len__(self) -> int:
        return len(self.paths) + 1

    def frames(self, size: tuple[int, int]) -> Tensor:
        white = load_image(self.white, size) if self.white is not None else torch.ones(3, *size)
        return torch.stack([white] + [load_image(p, size) for p in self.paths])


def _word_index(word: str, vocabulary: Sequence[str]) -> int:
    return vocabulary.index(word) if word in vocabulary else -1


class _PaintingSource:
    """Whole paintings by index, from folders or the procedural generator (small LRU cache)."""

    def __init__(self, folders: Optional[list[TimelapseFolder]], generator: Optional[LandscapeGenerator], length: int, size: tuple[int, int]) -> None:
        self.folders, self.generator, self.length, self.size = folders, generator, length, size
        self._get = lru_cache(maxsize=8)(self._load)

    def _load(self, index: int) -> dict[str, Any]:
        if self.folders is not None:
            folder = self.folders[index]
            frames = folder.frames(self.size)
            return {"frames": frames, "times": torch.tensor(folder.times), "text": folder.text, "name": folder.name}
        sample = self.generator(index)  # type: ignore[misc]
        return {
            "frames": sample["frames"],
            "times": sample["times"],
            "text": list(sample["text"]),
            "masks": sample["masks"],
            "name": f"{self.generator.split}_{index:05d}",  # type: ignore[union-attr]
        }

    def __call__(self, index: int) -> dict[str, Any]:
        return self._get(index)

    def num_frames(self, index: int) -> int:
        if self.folders is not None:
            return len(self.folders[index])
        return self.generator.num_strokes + 1  # type: ignore[union-attr]


class PairDataset(Dataset):
    """Windowed ``(I_i, I_j)`` pairs of every painting (see module docstring)."""

    def __init__(self, source: _PaintingSource, window: int, vocabulary: Sequence[str]) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.source, self.window, self.vocabulary = source, int(window), tuple(vocabulary)
        self.pairs: list[tuple[int, int, int]] = []
        for p in range(source.length):
            k = source.num_frames(p)
            for i in range(k - 1):
                for j in range(i + 1, min(i + self.window, k - 1) + 1):
                    self.pairs.append((p, i, j))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        p, i, j = self.pairs[index]
        painting = self.source(p)
        frames, times = painting["frames"], painting["times"]
        word = painting["text"][i + 1]
        item: dict[str, Any] = {
            "canvas": frames[i],
            "next": frames[j],
            "target": frames[-1],
            "delta": float(times[j] - times[i]),
            "text": word,
            "instruction": _word_index(word, self.vocabulary),
        }
        if "masks" in painting:
            item["mask"] = painting["masks"][i + 1 : j + 1].amax(0)
            item["unfinished"] = (frames[i] != frames[-1]).any(0, keepdim=True).float()
        return item


class SequenceDataset(Dataset):
    """Whole paintings (evaluation)."""

    def __init__(self, source: _PaintingSource) -> None:
        self.source = source

    def __len__(self) -> int:
        return self.source.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        painting = self.source(index)
        return {
            "frames": painting["frames"],
            "times": painting["times"].float(),
            "target": painting["frames"][-1],
            "text": painting["text"],
            "name": painting["name"],
        }


class TargetImages(Dataset):
    """The user's finished paintings for ``predict``: resized to the model's ``size`` ("stretch"
    mapping of ``datamodules.predict_inputs``); ``placement`` lets the module bring the time-lapse
    back to the painting's aspect ratio."""

    def __init__(self, paths: Sequence[Path], size: tuple[int, int]) -> None:
        self.paths, self.size = list(paths), size
        self.names = unique_names(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.paths[index]
        height, width = image_size_of(path)
        return {"target": load_image(path, self.size), "name": self.names[index], "path": str(path),
                "placement": placement_for(height, width, *self.size, mode="stretch")}


def _collate_lists(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return collate_dicts(samples)


class PaintingTimelapseDataModule(EmbeddedDataModule):
    """Painting time-lapse pairs (train/val), sequences (test) and targets (predict).

    Args:
        root: the layout's root (``train/`` and ``val/`` painting folders); ``null`` uses the
            embedded procedural paintings.
        size: image size (int or ``(H, W)``).
        window: maximum frame distance of a pair (10 renderer, 5 mask generator in the code).
        predict_images: finished paintings for ``predict``: image files, folders or manifests
            (``.txt`` / ``.json``), every one painted (no batch limit), at its aspect ratio.
        num_paintings, num_strokes, min_step_seconds, seconds_per_canvas: embedded data
            (``num_paintings`` in total, ``val_fraction`` of them validation).
        vocabulary: instruction words for the ``instruction`` index (the stand-in classifier).
        max_test_paintings: cap on test sequences (``null``: all).
    """

    STAND_IN = "embedded procedural paintings (stand-in for time-lapses)"  # the results rows' ``dataset`` when ``root`` is null (metrics.results_rows.dataset_field)

    def __init__(
        self,
        root: Optional[str] = None,
        size: int | Sequence[int] = 512,
        window: int = 10,
        predict_images: Union[str, list[str], None] = None,
        num_paintings: int = 256,
        num_strokes: int = 8,
        min_step_seconds: float = 6.0,
        seconds_per_canvas: float = 60.0,
        vocabulary: Sequence[str] = PAINTING_VOCABULARY,
        max_test_paintings: Optional[int] = None,
        batch_size: int = 1,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, pin_memory)
        self.root = root
        self.size = as_hw(size)
        self.window = int(window)
        self.predict_images = [predict_images] if isinstance(predict_images, str) else list(predict_images or [])
        self.num_paintings, self.num_strokes = int(num_paintings), int(num_strokes)
        self.min_step_seconds, self.seconds_per_canvas = float(min_step_seconds), float(seconds_per_canvas)
        self.vocabulary = tuple(vocabulary)
        self.max_test_paintings = max_test_paintings
        self.sources: dict[str, _PaintingSource] = {}
        self.save_hyperparameters()

    def _sources(self) -> dict[str, _PaintingSource]:
        if self.sources:
            return self.sources
        if self.root is None:
            num_train, num_val = split_counts(self.num_paintings, self.val_fraction)
            for split, length in (("train", num_train), ("val", num_val)):
                generator = LandscapeGenerator(self.size[0], self.size[1], self.num_strokes, self.min_step_seconds, self.seconds_per_canvas, split, self.seed)
                self.sources[split] = _PaintingSource(None, generator, length, self.size)
            log.info("painting time-lapses: embedded procedural paintings (%d train / %d val), no download", num_train, num_val)
        else:
            root = Path(self.root).expanduser()
            for split in ("train", "val"):
                folder = root / split
                if not folder.is_dir():
                    raise FileNotFoundError(
                        f"data.init_args.root: '{folder}' not found; expected root/{{train,val}}/<painting>/{{idx}}_{{mm:ss}}.jpg "
                        "(docs/inverse_painting.md, 'Data'), or root: null for the embedded paintings"
                    )
                paintings = [TimelapseFolder(p) for p in sorted(folder.iterdir()) if p.is_dir()]
                if not paintings:
                    raise FileNotFoundError(f"{folder}: no painting folders")
                self.sources[split] = _PaintingSource(paintings, None, len(paintings), self.size)
        return self.sources

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        sources = self._sources()
        return PairDataset(sources["train"], self.window, self.vocabulary), PairDataset(sources["val"], self.window, self.vocabulary)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:  # type: ignore[override]
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers, collate_fn=_collate_lists,
            pin_memory=self.pin_memory, generator=generator if shuffle else None, persistent_workers=self.num_workers > 0,
        )

    def test_dataloader(self) -> DataLoader:
        source = self._sources()["val"]
        dataset: Dataset = SequenceDataset(source)
        if self.max_test_paintings is not None:
            dataset = torch.utils.data.Subset(dataset, range(min(len(dataset), int(self.max_test_paintings))))
        return DataLoader(dataset, batch_size=1, shuffle=False, num_workers=self.num_workers, collate_fn=_collate_lists)

    def predict_dataloader(self) -> DataLoader:
        if self.predict_images:
            paths = expand_inputs(self.predict_images, key="data.init_args.predict_images", extensions=IMAGE_SUFFIXES)
            release_predict_limit(getattr(self, "trainer", None), len(paths), "data.init_args.predict_images")
            dataset: Dataset = TargetImages(paths, self.size)
        else:
            dataset = SequenceDataset(self._sources()["val"])
            if self.max_test_paintings is not None:
                dataset = torch.utils.data.Subset(dataset, range(min(len(dataset), int(self.max_test_paintings))))
        return DataLoader(dataset, batch_size=1, shuffle=False, num_workers=self.num_workers, collate_fn=_collate_lists)


__all__ = [
    "ANNOTATION_PROMPT",
    "INSTRUCTION_PROMPT",
    "PaintingTimelapseDataModule",
    "PairDataset",
    "SequenceDataset",
    "TimelapseFolder",
    "format_time",
    "parse_frame_name",
]

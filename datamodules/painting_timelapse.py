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
Official layout (``root/{split}/rgb/<video>/`` + ``last_aligned_frame_inv.json`` + ``text/<video>/*.json``):
convert it once with ``python -m datamodules.painting_timelapse_convert SRC DST``.

**Size** (``fit``): ``"pad"`` (default) keeps the painting's aspect ratio: the long side is resized to
``size`` and the rest is padded with black, as the official ``dataset.py`` pads (``pad_to_16``:
zeros, i.e. black, on the bottom/right at native size; [choice] here centred on a fixed canvas so
batches stack); ``"stretch"`` resizes both sides (the older behaviour).

**Pairs** (training): consecutive keyframes ``(I_{i-1}, I_i)`` of every painting, which is what the
official ``dataset.py`` samples (``cur`` and ``cur + 1`` of the candidate list; it never reads its
``win_size`` setting) and what gives the chapter's 7,261 pairs from 265 videos (§6.7: 27 frames per
painting on average). ``window`` > 1 (an option, not the paper) adds every ``(i, j)`` with
``0 < j - i <= window``. Each pair gives ``canvas = I_i``, ``next = I_j``, ``target = I_T``,
``delta = t_j - t_i`` seconds and ``text`` = the instruction of frame ``i + 1`` ([choice] for
``window`` > 1: the first thing painted after ``I_i``).
On the embedded data the exact step masks are also given: ``mask`` (pixels changed between ``i``
and ``j``) and ``unfinished`` (pixels where ``I_i`` differs from ``I_T``); on real data the
modules compute both with the difference-mask operator ``D`` (LPIPS, α = 0.2).
The train loader is resumable mid-epoch (``datamodules/resumable.py``, the suite's base loader).

**Sequences** (``test``): whole paintings ``frames [K, 3, H, W]``, ``times [K]``, ``target``,
``text`` (K strings), ``name``. **Predict**: the user's finished paintings from
``predict_images`` (files, folders or manifests; every one, any size, at its aspect ratio) as
``target``, ``name``, ``path``, ``placement`` plus what the single-step stages need: ``canvas``
(white, or the files of ``predict_canvases`` in the same order), ``delta`` (``predict_interval``
seconds) and ``text`` (``predict_text``, omitted when null: the renderer then drops the text
condition as in training); without ``predict_images``, the validation paintings' targets.

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
from datamodules.predict_inputs import expand_inputs, fit_to_canvas, placement_for, release_predict_limit, unique_names
from datamodules.paintings import PAINTING_VOCABULARY, LandscapeGenerator

log = logging.getLogger(__name__)

FRAME_NAME = re.compile(r"^(\d+)_(\d+):(\d{2})\.(jpg|jpeg|png)$", re.IGNORECASE)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")

#: The two question prompts of §6.3 (supplementary, seed 000 ~line 1731), verbatim. ``p``: g_text's question,
#: asked about [I_{t-1} | I_T] (the left image is the intermediate stage). ``p'``: the GT-annotation question,
#: asked about [I_{t-1} | I_t] (the official data_processing/run_llava uses the same words).
INSTRUCTION_PROMPT = (
    "There are two images side by side. The left image is an intermediate stage in a painting process of the "
    "right image. Please tell me what content should be painted next? The answer should be less than 2 words."
)
ANNOTATION_PROMPT = (
    "There are two images side by side. The right image is the next step of the left image in the painting "
    "process of a painting. Please tell me what is added to right image? The answer should be less than 2 words."
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


FIT_MODES = ("pad", "stretch")


def read_rgb(path: Path) -> Tensor:
    """An image file -> float32 ``[3, h, w]`` in ``[-1, 1]`` at its own size (names the file on failure)."""
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    except OSError as error:
        raise RuntimeError(f"cannot read image file {path}: {error}") from error
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def fit_image(tensor: Tensor, size: tuple[int, int], fit: str = "pad") -> Tensor:
    """``[3, h, w]`` -> ``[3, *size]``: ``"pad"`` keeps the aspect ratio (black border), ``"stretch"`` resizes."""
    if fit not in FIT_MODES:
        raise ValueError(f"data.init_args.fit must be one of {list(FIT_MODES)}, got {fit!r}")
    if tuple(tensor.shape[-2:]) == tuple(size):
        return tensor.clamp(-1, 1)
    canvas, _ = fit_to_canvas(tensor, size[0], size[1], mode=fit, fill=-1.0, interpolation="bilinear")
    return canvas.clamp(-1, 1)


def load_image(path: Path, size: tuple[int, int], fit: str = "pad") -> Tensor:
    """An image file -> float32 ``[3, H, W]`` in ``[-1, 1]`` brought to ``size`` (:func:`fit_image`)."""
    return fit_image(read_rgb(path), size, fit)


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

    def frames(self, size: tuple[int, int], fit: str = "pad") -> Tensor:
        images = [read_rgb(p) for p in self.paths]
        white = read_rgb(self.white) if self.white is not None else torch.ones_like(images[-1])
        return torch.stack([fit_image(image, size, fit) for image in [white] + images])


def _word_index(word: str, vocabulary: Sequence[str]) -> int:
    return vocabulary.index(word) if word in vocabulary else -1


class _PaintingSource:
    """Whole paintings by index, from folders or the procedural generator (small LRU cache)."""

    def __init__(self, folders: Optional[list[TimelapseFolder]], generator: Optional[LandscapeGenerator], length: int,
                 size: tuple[int, int], fit: str = "pad") -> None:
        self.folders, self.generator, self.length, self.size, self.fit = folders, generator, length, size, fit
        self._get = lru_cache(maxsize=8)(self._load)

    def _load(self, index: int) -> dict[str, Any]:
        if self.folders is not None:
            folder = self.folders[index]
            frames = folder.frames(self.size, self.fit)
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
    """Consecutive ``(I_{i-1}, I_i)`` pairs of every painting (``window`` 1), or all within ``window``."""

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
    """The user's finished paintings for ``predict`` (``datamodules.predict_inputs``): each brought
    to the model's ``size`` by ``fit`` ("pad" keeps its aspect ratio), with the ``placement`` that
    maps outputs back, a start ``canvas`` (white, or the matching file of ``canvases``), ``delta``
    and, when given, ``text`` (one string for all, or one per input)."""

    def __init__(self, paths: Sequence[Path], size: tuple[int, int], fit: str = "pad",
                 canvases: Optional[Sequence[Path]] = None, interval: float = 20.0,
                 text: Union[str, Sequence[str], None] = None) -> None:
        self.paths, self.size, self.fit = list(paths), size, fit
        self.names = unique_names(self.paths)
        if canvases is not None and len(canvases) != len(self.paths):
            raise ValueError(f"data.init_args.predict_canvases names {len(canvases)} files for {len(self.paths)} "
                             "predict_images; give one canvas per painting (same order) or none (white canvases)")
        if text is not None and not isinstance(text, str) and len(text) != len(self.paths):
            raise ValueError(f"data.init_args.predict_text has {len(text)} entries for {len(self.paths)} predict_images; "
                             "give one string for all or one per painting")
        self.canvases = list(canvases) if canvases is not None else None
        self.interval, self.text = float(interval), text

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.paths[index]
        image = read_rgb(path)
        height, width = int(image.shape[-2]), int(image.shape[-1])
        canvas = read_rgb(self.canvases[index]) if self.canvases is not None else torch.ones_like(image)
        item: dict[str, Any] = {
            "target": fit_image(image, self.size, self.fit), "canvas": fit_image(canvas, self.size, self.fit),
            "delta": self.interval, "name": self.names[index], "path": str(path),
            "placement": placement_for(height, width, *self.size, mode=self.fit),
        }
        if self.text is not None:
            item["text"] = self.text if isinstance(self.text, str) else str(self.text[index])
        return item


class ValidationTargets(Dataset):
    """``predict`` without ``predict_images``: the validation paintings' targets, each with its
    white start canvas (frame 0), ``delta`` and GT first instruction, named after the painting."""

    def __init__(self, sequences: Dataset, interval: float) -> None:
        self.sequences, self.interval = sequences, float(interval)

    def __len__(self) -> int:
        return len(self.sequences)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.sequences[index]
        return {"target": item["target"], "canvas": item["frames"][0], "delta": self.interval,
                "text": item["text"][1] if len(item["text"]) > 1 else "", "frames": item["frames"],
                "times": item["times"], "name": item["name"]}


def _collate_lists(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return collate_dicts(samples)


class PaintingTimelapseDataModule(EmbeddedDataModule):
    """Painting time-lapse pairs (train/val), sequences (test) and targets (predict).

    Args:
        root: the layout's root (``train/`` and ``val/`` painting folders); ``null`` uses the
            embedded procedural paintings.
        size: image size (int or ``(H, W)``).
        window: maximum frame distance of a pair; 1 (default) = consecutive keyframes, as the
            official ``dataset.py`` samples (its configs' ``win_size`` is never read).
        fit: ``"pad"`` (keep the aspect ratio, black border; default) or ``"stretch"``.
        predict_images: finished paintings for ``predict``: image files, folders or manifests
            (``.txt`` / ``.json``), every one processed (no batch limit), at its aspect ratio.
        predict_canvases: optional current canvases for the single-step stages (renderer, mask and
            text generators), one per painting in the same order; default white canvases.
        predict_interval: ``Δt`` in seconds given to the single-step stages (20, §6.6).
        predict_text: instruction(s) for the renderer / mask generator (one string or one per
            painting); null: the renderer drops the text condition, the mask generator uses "".
        num_paintings, num_strokes, min_step_seconds, seconds_per_canvas: embedded data
            (``num_paintings`` in total, ``val_fraction`` of them validation).
        vocabulary: instruction words for the ``instruction`` index (the stand-in classifier).
        max_test_paintings: cap on test sequences (``null``: all).
        test_items: what ``test`` reads from the validation split: ``"sequences"`` (whole paintings,
            the chained model's Table 6.1 protocol) or ``"pairs"`` (GT consecutive pairs, the stage
            configs' single-update analysis, §6.9).
    """

    STAND_IN = "embedded procedural paintings (stand-in for time-lapses)"  # the results rows' ``dataset`` when ``root`` is null (metrics.results_rows.dataset_field)

    def __init__(
        self,
        root: Optional[str] = None,
        size: int | Sequence[int] = 512,
        window: int = 1,
        fit: str = "pad",
        predict_images: Union[str, list[str], None] = None,
        predict_canvases: Union[str, list[str], None] = None,
        predict_interval: float = 20.0,
        predict_text: Union[str, list[str], None] = None,
        num_paintings: int = 256,
        num_strokes: int = 8,
        min_step_seconds: float = 6.0,
        seconds_per_canvas: float = 60.0,
        vocabulary: Sequence[str] = PAINTING_VOCABULARY,
        max_test_paintings: Optional[int] = None,
        test_items: str = "sequences",
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
        if fit not in FIT_MODES:
            raise ValueError(f"data.init_args.fit must be one of {list(FIT_MODES)}, got {fit!r}")
        self.fit = fit
        self.predict_images = [predict_images] if isinstance(predict_images, str) else list(predict_images or [])
        self.predict_canvases = [predict_canvases] if isinstance(predict_canvases, str) else (
            list(predict_canvases) if predict_canvases else None)
        self.predict_interval = float(predict_interval)
        self.predict_text = predict_text
        self.num_paintings, self.num_strokes = int(num_paintings), int(num_strokes)
        self.min_step_seconds, self.seconds_per_canvas = float(min_step_seconds), float(seconds_per_canvas)
        self.vocabulary = tuple(vocabulary)
        self.max_test_paintings = max_test_paintings
        if test_items not in ("sequences", "pairs"):
            raise ValueError(f"data.init_args.test_items must be 'sequences' or 'pairs', got {test_items!r}")
        self.test_items = test_items
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
                self.sources[split] = _PaintingSource(paintings, None, len(paintings), self.size, self.fit)
        return self.sources

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        sources = self._sources()
        return PairDataset(sources["train"], self.window, self.vocabulary), PairDataset(sources["val"], self.window, self.vocabulary)

    def test_dataloader(self) -> DataLoader:
        if self.test_items == "pairs":
            return self.val_dataloader()
        source = self._sources()["val"]
        dataset: Dataset = SequenceDataset(source)
        if self.max_test_paintings is not None:
            dataset = torch.utils.data.Subset(dataset, range(min(len(dataset), int(self.max_test_paintings))))
        return DataLoader(dataset, batch_size=1, shuffle=False, num_workers=self.num_workers, collate_fn=_collate_lists)

    def predict_dataloader(self) -> DataLoader:
        if self.predict_images:
            paths = expand_inputs(self.predict_images, key="data.init_args.predict_images", extensions=IMAGE_SUFFIXES)
            release_predict_limit(getattr(self, "trainer", None), len(paths), "data.init_args.predict_images")
            canvases = None
            if self.predict_canvases is not None:
                canvases = expand_inputs(self.predict_canvases, key="data.init_args.predict_canvases", extensions=IMAGE_SUFFIXES)
            dataset: Dataset = TargetImages(paths, self.size, self.fit, canvases, self.predict_interval, self.predict_text)
        else:
            dataset = SequenceDataset(self._sources()["val"])
            if self.max_test_paintings is not None:
                dataset = torch.utils.data.Subset(dataset, range(min(len(dataset), int(self.max_test_paintings))))
            dataset = ValidationTargets(dataset, self.predict_interval)
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

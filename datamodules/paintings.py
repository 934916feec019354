"""Procedural stroke-by-stroke landscape paintings: an embedded stand-in for painting time-lapses.

Inverse Painting (thesis 000, Ch. 6, §6.7) trains on YouTube time-lapses of
acrylic landscapes: a white canvas, then keyframes about 20 s apart that add
the sky, then mountains, ground, water, trees and finally details, back to
front, until the finished painting. This module imitates that process without
any download:

1. A random landscape is described as ordered **layers** (``sky``, ``clouds``,
   ``mountain``, ``ground``, ``water``, ``tree``, ``detail``: the closed
   vocabulary of instructions), each a region mask with a textured colour
   field. The target painting is the layers composited back to front.
2. Starting from a white canvas, each **step** paints one piece of one layer
   (large layers are split into several strokes, top to bottom or left to
   right), so the sequence goes coarse to fine, background first.
3. A layer later overpainted is still painted underneath (the sky behind a
   tree), except at pixels where its colour would move the canvas *away* from
   the final colour: there the painter leaves the canvas as it is for the later
   layer. Hence every pixel's distance to the target never grows, the L2
   distance of the frames to the target is non-increasing, and the last frame
   equals the target exactly.
4. Each step's **mask** is the set of pixels it changed (the thesis' GT mask
   ``M_t = D(I_t, I_{t-1})``, exact here instead of LPIPS-thresholded) and its
   **time** grows with the painted area (``min_step_seconds +
   seconds_per_canvas * area``, jittered), giving intervals near the paper's
   ~20 s mean.

This is a documented test surrogate for the real data, not the paper's data.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from datamodules._common import EmbeddedDataModule, GeneratedDataset, as_hw, sample_rng, split_counts

log = logging.getLogger(__name__)

#: Instruction vocabulary; index 0 ("none") is the white canvas, which no step painted.
PAINTING_VOCABULARY: tuple[str, ...] = ("none", "sky", "clouds", "mountain", "ground", "water", "tree", "detail")
#: Layers that every painting has; the others are optional.
REQUIRED_LAYERS = ("sky", "ground")
#: Axis along which a layer is cut into strokes: 0 = rows (top to bottom), 1 = columns (left to right).
_STROKE_AXIS = {"sky": 0, "clouds": 1, "mountain": 1, "ground": 0, "water": 0, "tree": 1, "detail": 1}


@dataclass
class Layer:
    label: str
    mask: np.ndarray  # bool [H, W]
    colour: np.ndarray  # float [H, W, 3] in [0, 1], used inside ``mask``


def smooth_noise(rng: np.random.Generator, height: int, width: int, cells: tuple[int, int]) -> np.ndarray:
    """Zero-mean smooth noise ``[H, W]`` (a coarse Gaussian grid upsampled bicubically): brush texture."""
    grid = torch.from_numpy(rng.normal(size=(1, 1, cells[0], cells[1])).astype(np.float32))
    return F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)[0, 0].numpy()


def _jitter(rng: np.random.Generator, colour: tuple[float, float, float], amount: float = 0.05) -> np.ndarray:
    return np.clip(np.asarray(colour) + rng.normal(0.0, amount, size=3), 0.0, 1.0)


def _gradient(top: np.ndarray, bottom: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per-pixel ``lerp(top, bottom, weight)`` with ``weight [H, W]`` in [0, 1]."""
    weight = np.clip(weight, 0.0, 1.0)[..., None]
    return top * (1.0 - weight) + bottom * weight


def _textured(colour: np.ndarray, noise: np.ndarray, strength: float) -> np.ndarray:
    return np.clip(colour + strength * noise[..., None], 0.0, 1.0)


class LandscapeGenerator:
    """Draws one random landscape as layers, then its painting process (picklable for workers)."""

    def __init__(
        self,
        height: int,
        width: int,
        num_strokes: int,
        min_step_seconds: float,
        seconds_per_canvas: float,
        split: str,
        seed: int,
    ) -> None:
        self.height = height
        self.width = width
        self.num_strokes = num_strokes
        self.min_step_seconds = min_step_seconds
        self.seconds_per_canvas = seconds_per_canvas
        self.split = split
        self.seed = seed

    # -- scene ---------------------------------------------------------------------------------
    def layers(self, rng: np.random.Generator) -> list[Layer]:
        """Random landscape layers in painting order (back to front, details last)."""
        h, w = self.height, self.width
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        v, u = (yy + 0.5) / h, (xx + 0.5) / w
        u_row = u[0]
        horizon = rng.uniform(0.42, 0.68)
        ground_line = horizon + 0.025 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * u_row + rng.uniform(0, 2 * np.pi))
        below_ground = v >= ground_line[None, :]
        texture = lambda cells, strength: smooth_noise(rng, h, w, cells) * strength  # noqa: E731

        palette = rng.choice(["day", "sunset", "overcast"], p=[0.55, 0.25, 0.2])
        sky_top, sky_horizon = {
            "day": ((0.22, 0.42, 0.82), (0.74, 0.85, 0.96)),
            "sunset": ((0.30, 0.24, 0.55), (0.98, 0.64, 0.34)),
            "overcast": ((0.52, 0.57, 0.64), (0.86, 0.86, 0.86)),
        }[palette]
        sky_top, sky_horizon = _jitter(rng, sky_top), _jitter(rng, sky_horizon)
        # The sky is painted down to just below the horizon (the ground overlaps its lower edge).
        sky_mask = v < ground_line[None, :] + 0.04
        sky = Layer("sky", sky_mask, _gradient(sky_top, sky_horizon, v / horizon))
        sky.colour = np.clip(sky.colour + texture((3, 4), 0.03)[..., None], 0, 1)
        optional: dict[str, Layer] = {}

        # Clouds: clusters of ellipses in the upper sky, lit from above.
        cloud_mask = np.zeros((h, w), bool)
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(0.08, 0.7) * horizon, rng.uniform(0.05, 0.95)
            for _ in range(rng.integers(3, 6)):
                ey, ex = cy + rng.normal(0, 0.03), cx + rng.normal(0, 0.07)
                ry, rx = rng.uniform(0.03, 0.07), rng.uniform(0.06, 0.14)
                cloud_mask |= ((v - ey) / ry) ** 2 + ((u - ex) / rx) ** 2 <= 1.0
        cloud_mask &= v < horizon
        cloud_light = _jitter(rng, (0.97, 0.96, 0.97), 0.02)
        cloud_shadow = _gradient(cloud_light, sky_horizon * 0.8 + 0.1, np.full((h, w), 0.5))
        optional["clouds"] = Layer("clouds", cloud_mask, _gradient(cloud_light, cloud_shadow, (v / horizon) * 1.3))

        # Mountains: a ridge of a few sines down to the horizon, hazier (closer to the sky) at the base.
        ridge = horizon - rng.uniform(0.12, 0.3) * np.ones_like(u_row)
        for _ in range(3):
            ridge -= rng.uniform(0.02, 0.08) * np.sin(2 * np.pi * rng.uniform(0.7, 3.5) * u_row + rng.uniform(0, 6.3))
        ridge = np.clip(ridge, 0.06, horizon - 0.02)
        mountain_mask = (v >= ridge[None, :]) & ~below_ground
        rock = _jitter(rng, [(0.36, 0.40, 0.55), (0.42, 0.36, 0.48), (0.40, 0.42, 0.40)][rng.integers(3)], 0.04)
        haze = rock * 0.5 + sky_horizon * 0.5
        depth = (v - ridge.min()) / max(horizon - ridge.min(), 1e-3)
        mountain_colour = _textured(_gradient(rock, haze, depth), smooth_noise(rng, h, w, (6, 12)), 0.05)
        optional["mountain"] = Layer("mountain", mountain_mask, mountain_colour)

        # Ground: from the wavy horizon down, darker and more saturated in front.
        field = [(0.42, 0.62, 0.28), (0.72, 0.62, 0.32), (0.30, 0.48, 0.22)][rng.integers(3)]
        far, near = _jitter(rng, field), _jitter(rng, field) * 0.7
        nearness = (v - horizon) / max(1.0 - horizon, 1e-3)
        ground_colour = _textured(_gradient(far, near, nearness), smooth_noise(rng, h, w, (8, 5)), 0.06)
        ground = Layer("ground", below_ground.copy(), ground_colour)

        # Water: a flat lake below the horizon reflecting the sky, with horizontal ripples.
        cy = horizon + (1 - horizon) * rng.uniform(0.25, 0.55)
        cx, rx, ry = rng.uniform(0.25, 0.75), rng.uniform(0.2, 0.45), rng.uniform(0.06, 0.14)
        water_mask = (((v - cy) / ry) ** 2 + ((u - cx) / rx) ** 2 <= 1.0) & below_ground
        water_base = _gradient(sky_horizon * 0.8, _jitter(rng, (0.20, 0.35, 0.60)), (v - cy + ry) / (2 * ry))
        water_colour = _textured(water_base, smooth_noise(rng, h, w, (max(2, h // 3), 3)), 0.05)
        optional["water"] = Layer("water", water_mask, water_colour)

        # Trees: trunk + round or pointed crown, larger nearer the viewer, far ones painted first.
        tree_mask = np.zeros((h, w), bool)
        tree_colour = np.zeros((h, w, 3))
        bases = sorted((rng.uniform(horizon + 0.03, 0.98), rng.uniform(0.04, 0.96)) for _ in range(rng.integers(1, 5)))
        for base_v, base_u in bases:
            size = 0.14 + 0.4 * (base_v - horizon) / max(1 - horizon, 1e-3)
            trunk_half, trunk_top = max(0.5 / w, 0.04 * size), base_v - 0.45 * size
            trunk = (np.abs(u - base_u) <= trunk_half) & (v >= trunk_top) & (v <= base_v)
            crown_v = base_v - 0.6 * size
            if rng.random() < 0.5:  # round deciduous crown
                crown = ((v - crown_v) / (0.3 * size)) ** 2 + ((u - base_u) / (0.22 * size * h / w)) ** 2 <= 1.0
                leaves = [(0.16, 0.40, 0.16), (0.78, 0.42, 0.12), (0.25, 0.5, 0.2)][rng.integers(3)]
            else:  # pine: a triangle
                top = base_v - 1.0 * size
                rel = (v - top) / max(0.75 * size, 1e-3)
                crown = (rel >= 0) & (rel <= 1) & (np.abs(u - base_u) <= rel * 0.2 * size * h / w)
                leaves = (0.10, 0.30, 0.18)
            shade = _gradient(_jitter(rng, leaves, 0.04), _jitter(rng, leaves, 0.04) * 0.6, (u - base_u) * 4 + 0.5)
            tree_colour[trunk] = _jitter(rng, (0.35, 0.22, 0.12), 0.03)
            tree_colour[crown] = shade[crown]
            tree_mask |= trunk | crown
        optional["tree"] = Layer("tree", tree_mask, _textured(tree_colour, smooth_noise(rng, h, w, (12, 12)), 0.04))

        # Details: grass blades and flower dots on the ground, the finest and last strokes.
        detail_mask = np.zeros((h, w), bool)
        detail_colour = np.zeros((h, w, 3))
        rows = np.arange(h)
        for _ in range(rng.integers(max(4, h * w // 400), max(8, h * w // 120))):
            x = int(rng.integers(0, w))
            y_min = int(np.ceil(ground_line[x] * h))
            if y_min >= h:
                continue
            y = int(rng.integers(y_min, h))
            if rng.random() < 0.5:  # flower dot
                colour = [(0.9, 0.2, 0.2), (0.95, 0.85, 0.2), (0.95, 0.95, 0.95), (0.6, 0.3, 0.8)][rng.integers(4)]
                dot = (np.abs(rows[:, None] - y) <= 0) & (np.abs(np.arange(w)[None, :] - x) <= 0)
            else:  # grass blade, 2-4 px tall
                colour = ground_colour[y, x] * 0.6
                dot = (rows[:, None] <= y) & (rows[:, None] > y - rng.integers(2, 5)) & (np.arange(w)[None, :] == x)
            detail_mask |= dot
            detail_colour[dot] = _jitter(rng, tuple(colour), 0.03)
        optional["detail"] = Layer("detail", detail_mask & below_ground, detail_colour)

        # Choose which optional layers appear; there can be no more layers than strokes.
        present = [name for name, layer in optional.items() if layer.mask.any() and rng.random() < 0.75]
        while len(present) + len(REQUIRED_LAYERS) > self.num_strokes:
            present.pop(int(rng.integers(len(present))))
        chosen = {"sky": sky, "ground": ground, **{name: optional[name] for name in present}}
        return [chosen[name] for name in PAINTING_VOCABULARY if name in chosen]

    # -- strokes -------------------------------------------------------------------------------
    def strokes(self, layers: list[Layer]) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Cut layers into exactly ``num_strokes`` pieces, giving extra strokes to the largest layers."""
        areas = np.array([layer.mask.sum() for layer in layers], dtype=np.float64)
        pieces = np.ones(len(layers), dtype=np.int64)
        for _ in range(self.num_strokes - len(layers)):
            pieces[int(np.argmax(areas / pieces))] += 1
        strokes = []
        for layer, count in zip(layers, pieces.tolist()):
            ys, xs = np.nonzero(layer.mask)
            # Painting order inside a layer: rows top to bottom or columns left to right, ties broken by the other.
            key = ys * self.width + xs if _STROKE_AXIS[layer.label] == 0 else xs * self.height + ys
            order = np.argsort(key, kind="stable")
            for chunk in np.array_split(order, count):
                piece = np.zeros_like(layer.mask)
                piece[ys[chunk], xs[chunk]] = True
                strokes.append((layer.label, piece, layer.colour))
        return strokes

    # -- one sample ----------------------------------------------------------------------------
    def __call__(self, index: int) -> dict:
        rng = sample_rng(self.seed, self.split, index)
        layers = self.layers(rng)
        h, w = self.height, self.width
        target = np.ones((h, w, 3))
        for layer in layers:
            target[layer.mask] = layer.colour[layer.mask]

        canvas = np.ones((h, w, 3))
        frames, masks, words, times = [canvas.copy()], [np.zeros((h, w), bool)], ["none"], [0.0]
        for label, piece, colour in self.strokes(layers):
            old, new, goal = canvas[piece], colour[piece], target[piece]
            # Paint everywhere in the piece except where it would move a pixel away from its final colour.
            accept = ((new - goal) ** 2).sum(-1) <= ((old - goal) ** 2).sum(-1)
            accept &= np.abs(new - old).max(-1) > 0
            ys, xs = np.nonzero(piece)
            ys, xs = ys[accept], xs[accept]
            canvas[ys, xs] = new[accept]
            changed = np.zeros((h, w), bool)
            changed[ys, xs] = True
            area = changed.mean()
            duration = (self.min_step_seconds + self.seconds_per_canvas * area) * rng.uniform(0.75, 1.25)
            frames.append(canvas.copy())
            masks.append(changed)
            words.append(label)
            times.append(times[-1] + duration)
        # Every pixel's last layer paints its exact target colour, so this holds by construction.
        if not np.array_equal(canvas, target):  # pragma: no cover - a broken invariant, not bad input
            raise RuntimeError(f"painting {self.split}/{index}: the last canvas differs from the target")

        frames_np = np.ascontiguousarray(np.stack(frames).transpose(0, 3, 1, 2), dtype=np.float32) * 2.0 - 1.0
        frames_t = torch.from_numpy(frames_np)
        return {
            "frames": frames_t,
            "times": torch.tensor(times, dtype=torch.float32),
            "target": frames_t[-1].clone(),
            "masks": torch.from_numpy(np.stack(masks)[:, None].astype(np.float32)),
            "instruction": torch.tensor([PAINTING_VOCABULARY.index(word) for word in words], dtype=torch.long),
            "text": words,
        }


class ProceduralPaintingsDataModule(EmbeddedDataModule):
    """Procedural landscape paintings with every intermediate canvas (Inverse Painting's data, embedded).

    Batches (``K = num_strokes + 1`` frames, the first the white canvas, the last the target):

    * ``frames``: float32 ``[B, K, 3, H, W]`` in ``[-1, 1]``; ``frames[:, 0]`` is all ``+1`` (white).
    * ``times``: float32 ``[B, K]`` seconds since the start, ``times[:, 0] = 0``, increasing.
    * ``target``: float32 ``[B, 3, H, W]``, equal to ``frames[:, -1]``.
    * ``masks``: float32 ``[B, K, 1, H, W]`` in {0, 1}: pixels changed by the step that made
      frame ``k`` (all zero for ``k = 0``).
    * ``instruction``: int64 ``[B, K]`` indices into :data:`PAINTING_VOCABULARY` (0 = "none" for
      the white canvas).
    * ``text``: a list of ``B`` lists of ``K`` words, the same instructions as strings.

    Paintings are generated on demand from ``(seed, split, index)``; train and
    validation use separate random streams.

    Args:
        size: canvas size, an int for squares or ``(height, width)``.
        num_strokes: painting steps per sequence (``K - 1``), at least 2 (sky and
            ground always appear); layers get more strokes the larger they are.
        num_samples: paintings in total; ``round(num_samples * val_fraction)``
            are validation paintings, the rest train paintings.
        min_step_seconds: time a step takes regardless of its size.
        seconds_per_canvas: extra time for painting the whole canvas area (a
            step's time grows with its changed area; both are jittered by +-25%).
        batch_size: paintings per batch.
        num_workers: DataLoader worker processes (0 = main process).
        val_fraction: share of ``num_samples`` used for validation.
        seed: seed of every painting and of the train order.
        pin_memory: pin host memory in the loaders.
    """

    vocabulary = PAINTING_VOCABULARY

    def __init__(
        self,
        size: int | tuple[int, int] = 64,
        num_strokes: int = 8,
        num_samples: int = 1024,
        min_step_seconds: float = 6.0,
        seconds_per_canvas: float = 60.0,
        batch_size: int = 16,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, pin_memory)
        if num_strokes < len(REQUIRED_LAYERS):
            raise ValueError(f"num_strokes must be >= {len(REQUIRED_LAYERS)} (sky and ground), got {num_strokes}")
        if min_step_seconds < 0 or seconds_per_canvas < 0:
            raise ValueError("min_step_seconds and seconds_per_canvas must be >= 0")
        self.height, self.width = as_hw(size)
        self.num_strokes = int(num_strokes)
        self.num_samples = int(num_samples)
        self.min_step_seconds = float(min_step_seconds)
        self.seconds_per_canvas = float(seconds_per_canvas)
        self.save_hyperparameters()

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        num_train, num_val = split_counts(self.num_samples, self.val_fraction)
        log.info(
            "using embedded procedural paintings (generated, no download): %d train / %d val landscapes at "
            "%dx%d, %d strokes each, vocabulary %s",
            num_train,
            num_val,
            self.height,
            self.width,
            self.num_strokes,
            PAINTING_VOCABULARY[1:],
        )
        datasets = []
        for split, length in (("train", num_train), ("val", num_val)):
            make = LandscapeGenerator(
                self.height,
                self.width,
                self.num_strokes,
                self.min_step_seconds,
                self.seconds_per_canvas,
                split,
                self.seed,
            )
            datasets.append(GeneratedDataset(make, length))
        return datasets[0], datasets[1]


def decode_instructions(instruction: Tensor) -> list[list[str]]:
    """``int64 [B, K]`` instruction indices -> lists of words from :data:`PAINTING_VOCABULARY`."""
    return [[PAINTING_VOCABULARY[i] for i in row] for row in instruction.tolist()]


__all__ = ["PAINTING_VOCABULARY", "LandscapeGenerator", "ProceduralPaintingsDataModule", "decode_instructions"]

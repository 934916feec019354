"""Embedded (no-download) fields for the four DiFT modalities (thesis 001 Ch. 4 §4.4; digest §3.7).

Every sample is a dict (``datamodules.dift.datamodule`` documents the keys) drawn from
``numpy.random.default_rng([seed, split, index])``:

* ``image``: the bundled scikit-learn digits, one view, grey replicated to RGB;
* ``video``: moving shapes (a coloured square or disc moving left/right/up/down) with the
  caption that says so; the caption's "T5" embedding is a **stand-in** (:func:`caption_embedding`:
  fixed random vectors per word, not T5) so text conditioning has something to learn from;
* ``views``: a procedural scene (two or three coloured spheres near the origin) ray-cast from
  random cameras on a sphere looking at the origin (OpenCV camera-to-world, normalised
  intrinsics), plus one extra input view for the one-shot condition;
* ``game``: a scripted sprite (a square on a ground strip) moved by random actions
  ``noop / right / left / jump``, with each frame's one-hot action (the action that produced it).
"""
from __future__ import annotations

import zlib

import numpy as np
import torch
from torch import Tensor

from datamodules._common import sample_rng

__all__ = ["GAME_ACTIONS", "caption_embedding", "look_at", "make_game", "make_video", "make_views", "render_spheres"]

GAME_ACTIONS = ("noop", "right", "left", "jump")
_COLOURS = {"red": (1.0, -0.8, -0.8), "green": (-0.8, 1.0, -0.8), "blue": (-0.8, -0.6, 1.0), "yellow": (1.0, 1.0, -0.8)}
_DIRECTIONS = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}


def caption_embedding(caption: str, dim: int, tokens: int) -> Tensor:
    """Stand-in for precomputed T5 embeddings: one fixed random vector per word, ``[tokens, dim]`` (zero padded)."""
    out = torch.zeros(tokens, dim)
    for i, word in enumerate(caption.lower().split()[:tokens]):
        gen = torch.Generator().manual_seed(zlib.crc32(word.encode()))
        out[i] = torch.randn(dim, generator=gen)
    return out


def make_video(index: int, split: str, seed: int, size: int, frames: int, text_dim: int, text_tokens: int) -> dict:
    rng = sample_rng(seed, split, index)
    colour = list(_COLOURS)[rng.integers(len(_COLOURS))]
    shape = ("square", "disc")[rng.integers(2)]
    direction = list(_DIRECTIONS)[rng.integers(len(_DIRECTIONS))]
    radius = max(1, size // 6)
    dy, dx = _DIRECTIONS[direction]
    y0, x0 = rng.integers(radius, size - radius, size=2)
    speed = max(1, size // 16)
    yy, xx = np.mgrid[:size, :size]
    video = np.full((frames, 3, size, size), -1.0, dtype=np.float32)
    for f in range(frames):
        cy = (y0 + dy * speed * f) % size
        cx = (x0 + dx * speed * f) % size
        if shape == "square":
            mask = (np.abs(yy - cy) <= radius) & (np.abs(xx - cx) <= radius)
        else:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        video[f][:, mask] = np.asarray(_COLOURS[colour], dtype=np.float32)[:, None]
    caption = f"a {colour} {shape} moving {direction}"
    views = torch.from_numpy(video)
    return {"views": views, "video": views, "frame_index": torch.arange(frames).float(), "caption": caption,
            "text": caption_embedding(caption, text_dim, text_tokens)}


def look_at(position: np.ndarray) -> np.ndarray:
    """OpenCV camera-to-world ``[4, 4]`` at ``position`` looking at the origin (world z up)."""
    forward = -position / np.linalg.norm(position)
    up = np.array([0.0, 0.0, 1.0])
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-6:
        right = np.array([1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, position
    return pose


def render_spheres(pose: np.ndarray, intrinsics: np.ndarray, size: int, centres: np.ndarray, radii: np.ndarray,
                   colours: np.ndarray) -> np.ndarray:
    """Ray-cast spheres with Lambert shading: ``[3, size, size]`` in [-1, 1] (background -1)."""
    v, u = np.mgrid[:size, :size]
    pix = np.stack([(u + 0.5) / size, (v + 0.5) / size, np.ones_like(u, dtype=float)], -1).reshape(-1, 3)
    dirs = (pose[:3, :3] @ (np.linalg.inv(intrinsics) @ pix.T)).T
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    origin = pose[:3, 3]
    image = np.full((size * size, 3), -1.0)
    depth = np.full(size * size, np.inf)
    light = np.array([0.4, -0.3, 0.85]) / np.linalg.norm([0.4, -0.3, 0.85])
    for c, r, col in zip(centres, radii, colours):
        oc = origin - c
        b = (dirs @ oc)
        disc = b**2 - (oc @ oc - r**2)
        hit = disc > 0
        t = -b - np.sqrt(np.where(hit, disc, 0))
        hit &= (t > 0) & (t < depth)
        points = origin + t[:, None] * dirs
        normal = (points - c) / r
        shade = 0.3 + 0.7 * np.clip(normal @ light, 0, 1)
        image[hit] = ((col[None] + 1) / 2 * shade[hit, None]) * 2 - 1
        depth[hit] = t[hit]
    return image.reshape(size, size, 3).transpose(2, 0, 1).astype(np.float32)


def _random_camera(rng: np.random.Generator, distance: float = 3.0) -> np.ndarray:
    azimuth, elevation = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 1.0)
    position = distance * np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
    return look_at(position)


DEFAULT_INTRINSICS = np.array([[1.2, 0.0, 0.5], [0.0, 1.2, 0.5], [0.0, 0.0, 1.0]])


def make_views(index: int, split: str, seed: int, size: int, views: int) -> dict:
    rng = sample_rng(seed, split, index)
    count = int(rng.integers(2, 4))
    centres = rng.uniform(-0.6, 0.6, size=(count, 3))
    radii = rng.uniform(0.35, 0.6, size=count)
    colours = rng.uniform(-1, 1, size=(count, 3))
    poses = [_random_camera(rng) for _ in range(views + 1)]
    images = [render_spheres(p, DEFAULT_INTRINSICS, size, centres, radii, colours) for p in poses]
    k = torch.from_numpy(DEFAULT_INTRINSICS).float()
    return {"views": torch.from_numpy(np.stack(images[1:])), "camera": torch.from_numpy(np.stack(poses[1:])).float(),
            "intrinsics": k.expand(views, 3, 3).clone(), "input_view": torch.from_numpy(images[0]),
            "input_camera": torch.from_numpy(poses[0]).float()}


def draw_game_frame(size: int, x: float, height: float) -> np.ndarray:
    frame = np.zeros((3, size, size), dtype=np.float32)
    frame[:] = np.array([-0.4, 0.2, 1.0], dtype=np.float32)[:, None, None]  # sky
    ground = size - max(2, size // 6)
    frame[:, ground:] = np.array([0.5, -0.2, -0.8], dtype=np.float32)[:, None, None]
    side = max(2, size // 6)
    top = int(round(ground - side - height))
    left = int(round(x)) % (size - side)
    frame[:, max(0, top): top + side, left: left + side] = np.array([1.0, -1.0, -1.0], dtype=np.float32)[:, None, None]
    return frame


def game_frames(size: int, actions: np.ndarray, x0: float = 1.0) -> np.ndarray:
    """Frames produced by ``actions`` (action ``i`` produces frame ``i`` from frame ``i - 1``)."""
    x, height, velocity = float(x0), 0.0, 0.0
    step, jump = max(1.0, size / 16), max(2.0, size / 5)
    frames = []
    for a in actions:
        if a == 1:
            x += step
        elif a == 2:
            x -= step
        elif a == 3 and height == 0.0:
            velocity = jump
        height = max(0.0, height + velocity)
        velocity = velocity - jump / 2 if height > 0 else 0.0
        frames.append(draw_game_frame(size, x, height))
    return np.stack(frames)


def make_game(index: int, split: str, seed: int, size: int, frames: int) -> dict:
    rng = sample_rng(seed, split, index)
    actions = rng.integers(0, len(GAME_ACTIONS), size=frames)
    actions[0] = 0
    video = torch.from_numpy(game_frames(size, actions, x0=float(rng.integers(0, size // 2))))
    one_hot = torch.nn.functional.one_hot(torch.from_numpy(actions).long(), len(GAME_ACTIONS)).float()
    return {"views": video, "frame_index": torch.arange(frames).float(), "actions": one_hot, "target": video[1:]}

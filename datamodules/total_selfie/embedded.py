"""Embedded Total Selfie data: stick-figure people in synthetic scenes (no download; a test surrogate).

Built on ``datamodules/stick_figures.py`` (clothed stick figures with OpenPose-18 keypoints). One
index gives a person (clothes, colours) in a full-body pose composited into a procedurally drawn
"place" (sky / floor gradient and a few boxes), with

* ``labels``: its exact human-parsing map in ATR label ids (drawn with label colours instead of
  clothes colours: hair 2, upper clothes 4, skirt 5, pants 6, shoes 9, face 11, arms / legs 14);
* the four selfies simulated from it by homography (``datamodules/total_selfie/homography.py``);
* ``mask`` (person box x1.1), ``foreground``, ``pose`` (Canny of the parsing map).

:func:`embedded_capture` draws a whole capture the same way: selfies, background, a photo
collection of the same person in other poses (plus one upper-body shot, which is not full-body)
and the ground-truth photo. Everything is a documented stand-in, never the paper's data.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from datamodules._common import sample_rng
from datamodules.stick_figures import draw_person, random_person, random_pose
from datamodules.total_selfie.homography import simulate_selfies
from lightning_modules.total_selfie.reference_selection import parsing_canny, person_box, scaled_box_mask

_LABEL_COLOURS = {"hair": 2, "shirt": 4, "skirt": 5, "pants": 6, "shoes": 9, "skin": 14}


def random_scene(rng: np.random.Generator, height: int, width: int) -> Tensor:
    """A "place": vertical sky/floor gradient and 3 boxes, ``[3, H, W]`` in [-1, 1]."""
    sky, floor = rng.integers(60, 230, 3), rng.integers(30, 200, 3)
    horizon = int(height * rng.uniform(0.45, 0.7))
    canvas = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(canvas)
    for y in range(height):
        colour = sky if y < horizon else floor
        shade = 0.8 + 0.2 * (y / max(1, height - 1))
        draw.line([(0, y), (width, y)], fill=tuple(int(c * shade) for c in colour))
    for _ in range(3):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, horizon + 1))
        draw.rectangle([x0, y0, x0 + int(rng.integers(2, max(3, width // 3))), y0 + int(rng.integers(2, max(3, height // 3)))],
                       fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return torch.from_numpy(np.asarray(canvas, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0)


def _full_body_pose(rng: np.random.Generator) -> Any:
    pose = random_pose(rng)
    pose.yaw = float(rng.normal(0.0, 0.15))
    pose.scale = float(rng.uniform(0.78, 0.86))
    pose.top = float(rng.uniform(0.05, 0.09))
    return pose


def label_map(person: Any, pose: Any, height: int, width: int) -> Tensor:
    """The exact parsing map (ATR ids) of ``person`` in ``pose`` (module docstring)."""
    from dataclasses import replace

    code = lambda v: (v, v, v)  # noqa: E731
    kind = "skirt" if person.bottoms_kind == "skirt" else "pants"
    coded = replace(person, skin=code(_LABEL_COLOURS["skin"]), hair=code(_LABEL_COLOURS["hair"]),
                    shirt=code(_LABEL_COLOURS["shirt"]), bottoms=code(_LABEL_COLOURS[kind]),
                    shoes=code(_LABEL_COLOURS["shoes"]), background=(0, 0, 0))
    image, keypoints = draw_person(coded, pose, height, width, supersample=1)
    labels = torch.round((image[0] + 1.0) * 127.5).long()
    labels[(labels == 20)] = 11  # eyes
    known = torch.zeros_like(labels, dtype=torch.bool)
    for value in (0, 2, 4, 5, 6, 9, 11, 14):
        known |= labels == value
    labels[~known] = 14
    neck_y = float(keypoints[1, 1]) if keypoints[1, 1] >= 0 else 0.0
    rows = torch.arange(height).view(-1, 1).expand(height, width)
    labels[(labels == 14) & (rows < neck_y)] = 11  # skin above the neck is the face
    return labels


def render(person: Any, pose: Any, scene: Tensor, height: int, width: int, supersample: int = 2) -> dict[str, Tensor]:
    """The person composited into ``scene``: image, labels, keypoints, foreground."""
    drawn, keypoints = draw_person(person, pose, height, width, supersample=supersample)
    labels = label_map(person, pose, height, width)
    fg = (labels > 0).float()[None]
    return {"image": drawn * fg + scene * (1 - fg), "labels": labels, "keypoints": keypoints, "foreground": fg}


def embedded_pair(seed: int, split: str, index: int, size: int, selfie_size: int) -> dict[str, Any]:
    """One synthetic training / evaluation pair (stand-in for the generated dataset)."""
    rng = sample_rng(seed, split, index)
    person, pose = random_person(rng), _full_body_pose(rng)
    scene = random_scene(rng, size, size)
    shot = render(person, pose, scene, size, size)
    mask = scaled_box_mask(person_box(shot["labels"]), size, size)
    return {
        "image": shot["image"], "background": scene, "mask": mask, "foreground": shot["foreground"],
        "foreground_image": shot["image"] * shot["foreground"] - (1 - shot["foreground"]),
        "pose": parsing_canny(shot["labels"]), "selfies": simulate_selfies(shot["image"], shot["keypoints"], selfie_size),
        "name": f"{split}{index:05d}",
    }


def embedded_capture(seed: int, index: int, size: int, selfie_size: int, num_photos: int = 3) -> dict[str, Any]:
    """One capture in the layout of ``layouts.read_capture_files`` (tensors instead of files)."""
    rng = sample_rng(seed, "val", 10_000 + index)
    person = random_person(rng)
    scene = random_scene(rng, size, size)
    gt = render(person, _full_body_pose(rng), scene, size, size)
    plain = torch.tensor(person.background, dtype=torch.float32).view(3, 1, 1).expand(3, size, size) / 127.5 - 1.0
    selfie_source = render(person, _full_body_pose(rng), plain, size, size)
    selfies = simulate_selfies(selfie_source["image"], selfie_source["keypoints"], selfie_size)
    # the collection: plain walls (so the stand-in parser can find the person), other poses
    photos = [render(person, _full_body_pose(rng), plain, size, size)["image"] for _ in range(num_photos)]
    close = random_pose(rng)
    close.scale, close.yaw = 1.7, 0.0  # upper-body shot: not a full-body photo
    photos.append(render(person, close, plain, size, size)["image"])
    return {
        "face": selfies[0], "upper": selfies[1], "lower": selfies[2], "shoes": selfies[3], "background": scene,
        "photos": photos, "photo_paths": [f"embedded/photo{i}" for i in range(len(photos))], "reference": None,
        "reference_path": None, "gt": gt["image"], "gt_labels": gt["labels"], "path": f"embedded capture {index}",
        "name": f"capture{index:03d}",
    }


__all__ = ["embedded_capture", "embedded_pair", "label_map", "random_scene", "render"]

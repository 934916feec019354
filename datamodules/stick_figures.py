"""Synthetic clothed stick figures with OpenPose-18 keypoints: an embedded stand-in for DeepFashion.

Pose-guided person image synthesis (papers 002-003, A6) trains on DeepFashion
In-shop pairs: the same person in two poses, with 18 keypoints per image in
OpenPose/COCO-18 order (0 nose, 1 neck, 2 R-shoulder, 3 R-elbow, 4 R-wrist,
5 L-shoulder, 6 L-elbow, 7 L-wrist, 8 R-hip, 9 R-knee, 10 R-ankle, 11 L-hip,
12 L-knee, 13 L-ankle, 14 R-eye, 15 L-eye, 16 R-ear, 17 L-ear) and -1 for a
missing joint, on 256x176 (H x W) images. This module draws people that follow
the same conventions without a download:

* A person (the identity) is a set of body proportions and clothes: skin and
  hair colour, shirt with short or long sleeves, trousers / shorts / skirt,
  shoes, and a plain light background.
* A pose is a yaw angle (front, three-quarter, profile, back) and limb angles;
  joints are placed in a simple 3-D body frame, rotated by the yaw and projected
  orthographically, and limbs are drawn far to near.
* Face keypoints that face away from the camera are missing (-1) as OpenPose
  reports them (the back view has ears but no nose or eyes; a profile one eye
  and one ear); joints outside the image (zoomed-in upper-body shots) are -1.

Keypoints are ``(x, y)`` in output pixels with OpenCV's convention (pixel
``(i, j)`` has its centre at ``x = i``, ``y = j``), floats, ``-1`` where missing.
Drawings are made at ``supersample`` times the size with PIL and reduced with a
box filter (antialiasing). This is a documented test surrogate, not DeepFashion.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor
from torch.utils.data import Dataset

from datamodules._common import EmbeddedDataModule, GeneratedDataset, as_hw, sample_rng, split_counts

log = logging.getLogger(__name__)

NUM_KEYPOINTS = 18
KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist", "r_hip",
    "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
)  # fmt: skip
#: OpenPose-18 limbs as (from, to) keypoint pairs (papers 002-003, A6).
OPENPOSE_LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip
MOTIONS: tuple[str, ...] = ("walk", "turn")

# Body frame: x to the person's left, y down (0 at the neck), z the direction the person faces;
# one unit is roughly the body height. Head centre and radius:
_HEAD_Y, _HEAD_R = -0.09, 0.062


@dataclass
class Person:
    """An identity: proportions and clothes (colours RGB 0..255)."""

    shoulder: float
    hip: float
    upper_arm: float
    forearm: float
    thigh: float
    shin: float
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    shirt: tuple[int, int, int]
    bottoms: tuple[int, int, int]
    shoes: tuple[int, int, int]
    background: tuple[int, int, int]
    long_sleeves: bool
    bottoms_kind: str  # "trousers" | "shorts" | "skirt"


@dataclass
class Pose:
    """Yaw (radians, 0 = facing the camera), limb angles (radians) and framing."""

    yaw: float
    arm_abduction: tuple[float, float]  # (right, left): 0 hangs down, pi/2 horizontal
    arm_swing: tuple[float, float]  # forward (+) / back (-)
    elbow: tuple[float, float]  # extra forward flexion of the forearm
    leg_abduction: tuple[float, float]
    leg_swing: tuple[float, float]
    knee: tuple[float, float]  # shin bends back by this much
    centre_x: float  # body centre, fraction of the width
    top: float  # head top, fraction of the height
    scale: float  # body height, fraction of the image height


def _colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(low, high, size=3))


def random_person(rng: np.random.Generator) -> Person:
    skins = [(255, 220, 185), (234, 192, 150), (198, 140, 100), (141, 85, 55), (95, 60, 40)]
    hairs = [(30, 20, 15), (90, 55, 30), (200, 160, 90), (150, 60, 30), (120, 120, 120)]
    skin = skins[rng.integers(len(skins))]
    return Person(
        shoulder=float(rng.uniform(0.09, 0.12)),
        hip=float(rng.uniform(0.06, 0.085)),
        upper_arm=float(rng.uniform(0.16, 0.18)),
        forearm=float(rng.uniform(0.14, 0.16)),
        thigh=float(rng.uniform(0.23, 0.25)),
        shin=float(rng.uniform(0.22, 0.24)),
        skin=tuple(int(np.clip(c + rng.integers(-10, 11), 0, 255)) for c in skin),
        hair=hairs[rng.integers(len(hairs))],
        shirt=_colour(rng),
        bottoms=_colour(rng, 0, 200),
        shoes=_colour(rng, 0, 120),
        background=tuple(int(c) for c in rng.integers(205, 256) - rng.integers(0, 20, size=3)),
        long_sleeves=bool(rng.random() < 0.5),
        bottoms_kind=str(rng.choice(["trousers", "shorts", "skirt"], p=[0.6, 0.2, 0.2])),
    )


def random_pose(rng: np.random.Generator) -> Pose:
    view = rng.choice(["front", "three_quarter", "side", "back"], p=[0.45, 0.25, 0.15, 0.15])
    yaw = {"front": 0.0, "three_quarter": math.pi / 4, "side": math.pi / 2, "back": math.pi}[view]
    yaw = (yaw * rng.choice([-1.0, 1.0]) + rng.normal(0.0, 0.12)) % (2 * math.pi)
    zoomed = rng.random() < 0.25  # upper-body shot: legs leave the frame
    pair = lambda low, high: (float(rng.uniform(low, high)), float(rng.uniform(low, high)))  # noqa: E731
    return Pose(
        yaw=float(yaw),
        arm_abduction=pair(0.05, 1.6 if not zoomed else 1.2),
        arm_swing=pair(-0.6, 0.8),
        elbow=pair(0.0, 1.8),
        leg_abduction=pair(0.0, 0.3),
        leg_swing=pair(-0.45, 0.45),
        knee=pair(0.0, 0.7),
        centre_x=float(rng.uniform(0.45, 0.55)),
        top=float(rng.uniform(0.04, 0.08)),
        scale=float(rng.uniform(1.4, 1.8) if zoomed else rng.uniform(0.8, 0.9)),
    )


def _direction(abduction: float, swing: float, side: float) -> np.ndarray:
    """Unit limb direction in the body frame: hanging down, raised sideways and swung forward."""
    return np.array(
        [side * math.sin(abduction) * math.cos(swing), math.cos(abduction) * math.cos(swing), math.sin(swing)]
    )


def body_joints(person: Person, pose: Pose) -> np.ndarray:
    """The 18 joints in the body frame, ``[18, 3]`` (x left, y down, z forward)."""
    joints = np.zeros((NUM_KEYPOINTS, 3))
    r = _HEAD_R
    joints[0] = (0.0, _HEAD_Y + 0.01, 0.95 * r)
    joints[1] = (0.0, 0.0, 0.0)
    joints[14], joints[15] = (-0.35 * r, _HEAD_Y - 0.012, 0.8 * r), (0.35 * r, _HEAD_Y - 0.012, 0.8 * r)
    joints[16], joints[17] = (-r, _HEAD_Y, 0.0), (r, _HEAD_Y, 0.0)
    for index, side in ((0, -1.0), (1, 1.0)):  # right side is -x
        shoulder, elbow, wrist = (2, 3, 4) if side < 0 else (5, 6, 7)
        hip, knee, ankle = (8, 9, 10) if side < 0 else (11, 12, 13)
        joints[shoulder] = (side * person.shoulder, 0.02, 0.0)
        upper = _direction(pose.arm_abduction[index], pose.arm_swing[index], side)
        joints[elbow] = joints[shoulder] + person.upper_arm * upper
        lower = _direction(pose.arm_abduction[index], pose.arm_swing[index] + pose.elbow[index], side)
        joints[wrist] = joints[elbow] + person.forearm * lower
        joints[hip] = (side * person.hip, 0.40, 0.0)
        thigh = _direction(pose.leg_abduction[index], pose.leg_swing[index], side)
        joints[knee] = joints[hip] + person.thigh * thigh
        shin = _direction(pose.leg_abduction[index], pose.leg_swing[index] - pose.knee[index], side)
        joints[ankle] = joints[knee] + person.shin * shin
    return joints


def project(joints: np.ndarray, pose: Pose, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Rotate by the yaw and project: ``(xy [18, 2] in output pixels, depth [18] toward the camera)``."""
    cos, sin = math.cos(pose.yaw), math.sin(pose.yaw)
    x = joints[:, 0] * cos + joints[:, 2] * sin
    depth = -joints[:, 0] * sin + joints[:, 2] * cos
    pixels = pose.scale * height
    head_top = _HEAD_Y - _HEAD_R
    xy = np.stack([pose.centre_x * width + pixels * x, pose.top * height + pixels * (joints[:, 1] - head_top)], 1)
    return xy - 0.5, depth  # pixel-centre convention: pixel i covers [i - 0.5, i + 0.5)


def visible_keypoints(xy: np.ndarray, depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """OpenPose-style keypoints: face points turned away and points outside the image become -1."""
    keypoints = xy.copy()
    hidden = np.zeros(NUM_KEYPOINTS, bool)
    hidden[[0, 14, 15]] = depth[[0, 14, 15]] < -0.25 * _HEAD_R
    hidden[[16, 17]] = depth[[16, 17]] < -0.5 * _HEAD_R
    # A joint counts as inside when it lies between the first and last pixel centres, so every
    # visible coordinate is >= 0 and "< 0" always means missing.
    outside = (xy[:, 0] < 0) | (xy[:, 0] > width - 1) | (xy[:, 1] < 0) | (xy[:, 1] > height - 1)
    keypoints[hidden | outside] = -1.0
    return keypoints


def draw_person(person: Person, pose: Pose, height: int, width: int, supersample: int = 4) -> tuple[Tensor, Tensor]:
    """Draw one person: ``(image float32 [3, H, W] in [-1, 1], keypoints float32 [18, 2])``."""
    joints = body_joints(person, pose)
    xy, depth = project(joints, pose, height, width)
    ss = supersample
    unit = pose.scale * height * ss  # pixels per body unit at the drawing resolution
    p = lambda i: (float((xy[i, 0] + 0.5) * ss), float((xy[i, 1] + 0.5) * ss))  # noqa: E731
    canvas = Image.new("RGB", (width * ss, height * ss), person.background)
    draw = ImageDraw.Draw(canvas)

    def segment(a: tuple[float, float], b: tuple[float, float], colour, thickness: float) -> None:
        w = max(1, int(round(thickness * unit)))
        draw.line([a, b], fill=colour, width=w)
        for end in (a, b):
            draw.ellipse([end[0] - w / 2, end[1] - w / 2, end[0] + w / 2, end[1] + w / 2], fill=colour)

    def disc(centre: tuple[float, float], radius: float, colour) -> None:
        rad = max(1.0, radius * unit)
        draw.ellipse([centre[0] - rad, centre[1] - rad, centre[0] + rad, centre[1] + rad], fill=colour)

    # Parts as (depth toward the camera, drawing function); drawn far to near.
    parts: list[tuple[float, Callable[[], None]]] = []
    skin, shirt = person.skin, person.shirt
    for shoulder, elbow, wrist in ((2, 3, 4), (5, 6, 7)):
        forearm_colour = shirt if person.long_sleeves else skin

        def arm(s=shoulder, e=elbow, w=wrist, fc=forearm_colour) -> None:
            segment(p(s), p(e), shirt, 0.055)
            segment(p(e), p(w), fc, 0.045)
            disc(p(w), 0.028, skin)

        parts.append((float(depth[[shoulder, elbow, wrist]].mean()) + 1e-3, arm))
    for hip, knee, ankle in ((8, 9, 10), (11, 12, 13)):
        thigh_colour = skin if person.bottoms_kind == "skirt" else person.bottoms
        shin_colour = person.bottoms if person.bottoms_kind == "trousers" else skin

        def leg(h=hip, k=knee, a=ankle, tc=thigh_colour, sc=shin_colour) -> None:
            segment(p(h), p(k), tc, 0.07)
            segment(p(k), p(a), sc, 0.055)
            disc(p(a), 0.032, person.shoes)

        parts.append((float(depth[[hip, knee, ankle]].mean()) - 1e-3, leg))

    def torso() -> None:
        pad = (0.05 * abs(math.sin(pose.yaw)) + 0.01) * unit
        shoulders = [p(2)[0], p(5)[0]]
        hips = [p(8)[0], p(11)[0]]
        top_y, hip_y = (p(2)[1] + p(5)[1]) / 2, (p(8)[1] + p(11)[1]) / 2
        polygon = [
            (min(shoulders) - pad, top_y - 0.02 * unit),
            (max(shoulders) + pad, top_y - 0.02 * unit),
            (max(hips) + pad, hip_y + 0.03 * unit),
            (min(hips) - pad, hip_y + 0.03 * unit),
        ]
        draw.polygon(polygon, fill=shirt)
        if person.bottoms_kind == "skirt":
            knee_y = (p(9)[1] + p(12)[1]) / 2
            flare = 0.1 * unit
            draw.polygon(
                [
                    (min(hips) - pad, hip_y),
                    (max(hips) + pad, hip_y),
                    (max(hips) + pad + flare, hip_y + 0.55 * (knee_y - hip_y) + 0.02 * unit),
                    (min(hips) - pad - flare, hip_y + 0.55 * (knee_y - hip_y) + 0.02 * unit),
                ],
                fill=person.bottoms,
            )

    parts.append((0.0, torso))
    facing_camera = math.cos(pose.yaw) > -0.2

    def head() -> None:
        neck, centre_xy = p(1), ((xy[16] + xy[17]) / 2 + 0.5) * ss
        centre = (float(centre_xy[0]), float(centre_xy[1]))
        segment(neck, centre, skin, 0.04)
        rad = _HEAD_R * unit
        box = [centre[0] - rad, centre[1] - rad, centre[0] + rad, centre[1] + rad]
        draw.ellipse(box, fill=skin if facing_camera else person.hair)
        if facing_camera:
            draw.chord(box, 200, 340, fill=person.hair)  # hair cap above the eyes
            for eye in (14, 15):
                if depth[eye] > 0.0:
                    disc(p(eye), 0.01, (20, 20, 20))

    parts.append((float("inf"), head))
    for _, paint in sorted(parts, key=lambda item: item[0]):
        paint()

    canvas = canvas.resize((width, height), Image.BOX)
    image = torch.from_numpy(np.asarray(canvas, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0)
    keypoints = torch.from_numpy(visible_keypoints(xy, depth, height, width).astype(np.float32))
    return image.contiguous(), keypoints


def walking_or_turning_poses(rng: np.random.Generator, num_frames: int, motion: str) -> list[Pose]:
    """A ``walk`` (limbs swing in opposite phase, the body advances) or a ``turn`` (yaw sweeps) sequence."""
    base = random_pose(rng)
    base.scale = float(rng.uniform(0.78, 0.86))  # full-body framing for videos
    base.top = float(rng.uniform(0.04, 0.08))
    poses = []
    if motion == "walk":
        period = rng.uniform(8.0, 14.0)
        phase = rng.uniform(0, 2 * math.pi)
        headings = [0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 2, -math.pi / 4]
        base.yaw = float(rng.choice(headings) + rng.normal(0, 0.05))
        # The body moves toward where it faces: sideways in image space by sin(yaw).
        speed = rng.uniform(0.008, 0.02) * math.sin(base.yaw)
        base.centre_x = float(0.5 - speed * (num_frames - 1) / 2)
        for t in range(num_frames):
            swing = math.sin(phase + 2 * math.pi * t / period)
            stride = 0.45 * swing
            poses.append(
                Pose(
                    yaw=base.yaw,
                    arm_abduction=(0.1, 0.1),
                    arm_swing=(0.5 * swing, -0.5 * swing),
                    elbow=(0.3, 0.3),
                    leg_abduction=(0.03, 0.03),
                    leg_swing=(-stride, stride),
                    knee=(0.4 * max(0.0, swing), 0.4 * max(0.0, -swing)),
                    centre_x=base.centre_x + speed * t,
                    top=base.top,
                    scale=base.scale,
                )
            )
    elif motion == "turn":
        start = rng.uniform(0, 2 * math.pi)
        sweep = rng.choice([-1.0, 1.0]) * rng.uniform(0.5 * math.pi, 1.2 * math.pi)
        for t in range(num_frames):
            fraction = t / max(1, num_frames - 1)
            poses.append(
                Pose(
                    yaw=float((start + sweep * fraction) % (2 * math.pi)),
                    arm_abduction=base.arm_abduction,
                    arm_swing=base.arm_swing,
                    elbow=base.elbow,
                    leg_abduction=(min(base.leg_abduction[0], 0.15), min(base.leg_abduction[1], 0.15)),
                    leg_swing=(0.0, 0.0),
                    knee=(0.0, 0.0),
                    centre_x=0.5,
                    top=base.top,
                    scale=base.scale,
                )
            )
    else:
        raise ValueError(f"unknown motion {motion!r}; choose from {MOTIONS}")
    return poses


class StickFigurePairs:
    """One source/target pair of the same person in two poses, from ``(seed, split, index)``."""

    def __init__(self, height: int, width: int, supersample: int, split: str, seed: int) -> None:
        self.height, self.width, self.supersample, self.split, self.seed = height, width, supersample, split, seed

    def __call__(self, index: int) -> dict[str, Tensor]:
        rng = sample_rng(self.seed, self.split, index)
        person = random_person(rng)
        source, source_kp = draw_person(person, random_pose(rng), self.height, self.width, self.supersample)
        target, target_kp = draw_person(person, random_pose(rng), self.height, self.width, self.supersample)
        return {
            "source_image": source,
            "target_image": target,
            "source_keypoints": source_kp,
            "target_keypoints": target_kp,
        }


class StickFigureSequences:
    """One walking or turning clip of one person, from ``(seed, split, index)``."""

    def __init__(
        self,
        height: int,
        width: int,
        num_frames: int,
        motions: tuple[str, ...],
        supersample: int,
        split: str,
        seed: int,
    ) -> None:
        self.height, self.width, self.num_frames = height, width, num_frames
        self.motions, self.supersample, self.split, self.seed = motions, supersample, split, seed

    def __call__(self, index: int) -> dict[str, Tensor]:
        rng = sample_rng(self.seed, self.split, index)
        person = random_person(rng)
        motion = self.motions[int(rng.integers(len(self.motions)))]
        drawn = [
            draw_person(person, pose, self.height, self.width, self.supersample)
            for pose in walking_or_turning_poses(rng, self.num_frames, motion)
        ]
        return {
            "video": torch.stack([image for image, _ in drawn]),
            "keypoints": torch.stack([keypoints for _, keypoints in drawn]),
            "motion": torch.tensor(MOTIONS.index(motion)),
        }


class StickFiguresDataModule(EmbeddedDataModule):
    """Pose-transfer pairs of synthetic clothed stick figures (DeepFashion's format, embedded).

    Batches: ``{"source_image", "target_image": float32 [B, 3, H, W] in [-1, 1],
    "source_keypoints", "target_keypoints": float32 [B, 18, 2]}``: the same person
    (clothes, colours, proportions, background) in two random poses; keypoints in
    OpenPose-18 order as ``(x, y)`` output pixels, -1 where missing.
    Pairs are generated on demand from ``(seed, split, index)``; train and
    validation use separate random streams (different people).

    Args:
        size: image size ``(height, width)`` or an int for squares; the default
            64x44 keeps DeepFashion's 256x176 aspect ratio.
        num_samples: pairs in total; ``round(num_samples * val_fraction)`` are validation pairs.
        supersample: drawing resolution factor before box-filter reduction (antialiasing).
        batch_size: pairs per batch.
        num_workers: DataLoader worker processes (0 = main process).
        val_fraction: share of ``num_samples`` used for validation.
        seed: seed of every person, pose and of the train order.
        pin_memory: pin host memory in the loaders.
    """

    keypoint_names = KEYPOINT_NAMES
    limbs = OPENPOSE_LIMBS

    def __init__(
        self,
        size: int | tuple[int, int] = (64, 44),
        num_samples: int = 2048,
        supersample: int = 4,
        batch_size: int = 32,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, pin_memory)
        if supersample < 1:
            raise ValueError(f"supersample must be >= 1, got {supersample}")
        self.height, self.width = as_hw(size)
        self.num_samples = int(num_samples)
        self.supersample = int(supersample)
        self.save_hyperparameters()

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        num_train, num_val = split_counts(self.num_samples, self.val_fraction)
        log.info(
            "using embedded synthetic stick figures (generated, no download): %d train / %d val pose pairs at "
            "%dx%d with 18 OpenPose keypoints",
            num_train,
            num_val,
            self.height,
            self.width,
        )
        return tuple(
            GeneratedDataset(StickFigurePairs(self.height, self.width, self.supersample, split, self.seed), length)
            for split, length in (("train", num_train), ("val", num_val))
        )


class StickFigureVideosDataModule(EmbeddedDataModule):
    """Clips of one synthetic stick figure walking or turning, with per-frame OpenPose-18 keypoints.

    Batches: ``{"video": float32 [B, T, 3, H, W] in [-1, 1], "keypoints": float32 [B, T, 18, 2]
    ((x, y) pixels, -1 missing), "motion": int64 [B]}`` (an index into :data:`MOTIONS`).
    ``walk``: arms and legs swing in opposite phase while the body advances the way it
    faces; ``turn``: the person rotates about the vertical axis by 90-216 degrees.

    Args:
        size: frame size ``(height, width)`` or an int for squares.
        num_frames: frames per clip (``T``).
        motions: motions to draw from, any of ``"walk"`` and ``"turn"``.
        num_samples: clips in total; ``round(num_samples * val_fraction)`` are validation clips.
        supersample: drawing resolution factor before box-filter reduction.
        batch_size: clips per batch.
        num_workers: DataLoader worker processes (0 = main process).
        val_fraction: share of ``num_samples`` used for validation.
        seed: seed of every person, motion and of the train order.
        pin_memory: pin host memory in the loaders.
    """

    keypoint_names = KEYPOINT_NAMES
    limbs = OPENPOSE_LIMBS

    def __init__(
        self,
        size: int | tuple[int, int] = (64, 44),
        num_frames: int = 8,
        motions: list[str] = ["walk", "turn"],  # noqa: B006 - jsonargparse shows the default list
        num_samples: int = 1024,
        supersample: int = 4,
        batch_size: int = 16,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, pin_memory)
        motions = [motions] if isinstance(motions, str) else list(motions)
        unknown = [m for m in motions if m not in MOTIONS]
        if not motions or unknown:
            raise ValueError(f"motions must be a non-empty subset of {MOTIONS}, got {motions}")
        if num_frames < 1 or supersample < 1:
            raise ValueError("num_frames and supersample must be >= 1")
        self.height, self.width = as_hw(size)
        self.num_frames = int(num_frames)
        self.motions = tuple(motions)
        self.num_samples = int(num_samples)
        self.supersample = int(supersample)
        self.save_hyperparameters()

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        num_train, num_val = split_counts(self.num_samples, self.val_fraction)
        log.info(
            "using embedded synthetic stick-figure videos (generated, no download): %d train / %d val clips of "
            "%d frames at %dx%d, motions %s",
            num_train,
            num_val,
            self.num_frames,
            self.height,
            self.width,
            self.motions,
        )
        return tuple(
            GeneratedDataset(
                StickFigureSequences(
                    self.height, self.width, self.num_frames, self.motions, self.supersample, split, self.seed
                ),
                length,
            )
            for split, length in (("train", num_train), ("val", num_val))
        )


__all__ = [
    "KEYPOINT_NAMES",
    "MOTIONS",
    "NUM_KEYPOINTS",
    "OPENPOSE_LIMBS",
    "StickFigureVideosDataModule",
    "StickFiguresDataModule",
    "draw_person",
    "random_person",
    "random_pose",
]

"""IMU motion retrieval, background retrieval by ground-plane normals, foot grounding (thesis 000, Ch. 4).

Supplement §4.4 "Motion retrieval" (seed lines ~1080-1110; digest §3.5), pure NumPy:

1. the phone's orientation, **yaw only** (robust, captures spinning) -> ``O``;
2. translation ``T`` from the acceleration: filter, integrate to velocity, integrate again
   (:func:`imu_to_trajectory`);
3. for every database motion ``i`` (CLIFF SMPL root yaw ``O^i`` and global translation ``T^i``),
   **Eq. 4.1** ``D^i = DTW(O, O^i) + alpha * DTW(T, T^i)``, ``alpha = 0.1``; DTW handles different
   lengths; the top-k are returned (:class:`MotionRetriever`).

[GAP] choices (the thesis gives none): yaw cost is the wrapped angle difference in radians;
translations are compared after subtracting their start point, with Euclidean cost; the
filter is "remove the mean acceleration (bias / residual gravity), then a centred moving
average of ``smooth`` samples"; velocity drift is removed linearly so the trace starts and ends
at rest (zero-velocity update).

Background retrieval (§4.4): the ground-plane normal of the motion's original background and of
every candidate background are compared; candidates with the closest normals are returned.
Depth (MoGe [264]) and the floor mask (OneFormer [114]) are external models; here
:func:`ground_plane_normal` fits a plane to 3-D floor points by least squares (SVD), and
:func:`depth_to_points` back-projects a depth map with pinhole intrinsics.

Foot grounding (§4.4): "scale and translate P_{1:N} so the foot keypoints stay on the ground"
(:func:`ground_feet`): [GAP] a uniform scale about the pose sequence's mean foot point and a
vertical shift that puts the median lowest-foot height on the target ground line.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

__all__ = [
    "dtw",
    "angle_cost",
    "euclidean_cost",
    "imu_to_trajectory",
    "MotionClip",
    "MotionRetriever",
    "load_motion_library",
    "load_imu_trace",
    "ground_plane_normal",
    "depth_to_points",
    "BackgroundRetriever",
    "ground_feet",
]

#: OpenPose-18 / DWPose body ankles (r_ankle, l_ankle).
ANKLES = (10, 13)


def angle_cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``|wrap(a_i - b_j)|`` in radians for 1-D yaw sequences: ``[len(a), len(b)]``."""
    diff = np.asarray(a, np.float64)[:, None] - np.asarray(b, np.float64)[None, :]
    return np.abs((diff + np.pi) % (2 * np.pi) - np.pi)


def euclidean_cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``||a_i - b_j||`` for ``[n, d]`` and ``[m, d]`` point sequences."""
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def dtw(a: np.ndarray, b: np.ndarray, cost: Callable[[np.ndarray, np.ndarray], np.ndarray] = euclidean_cost) -> float:
    """Dynamic time warping distance: ``D[i, j] = c(i, j) + min(D[i-1, j], D[i, j-1], D[i-1, j-1])``."""
    c = cost(a, b)
    n, m = c.shape
    if n == 0 or m == 0:
        raise ValueError("DTW needs non-empty sequences")
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        row, prev = acc[i], acc[i - 1]
        diag_up = np.minimum(prev[:-1], prev[1:])  # min(D[i-1, j-1], D[i-1, j]) for j = 1..m
        ci = c[i - 1]
        for j in range(1, m + 1):
            row[j] = ci[j - 1] + min(diag_up[j - 1], row[j - 1])
    return float(acc[n, m])


def imu_to_trajectory(acceleration: np.ndarray, dt: float, smooth: int = 5) -> np.ndarray:
    """World-frame acceleration ``[N, 3]`` (m/s^2, gravity removed) -> positions ``[N, 3]`` from 0.

    Filter (bias removal + moving average), integrate to velocity (trapezoid), remove linear
    velocity drift (the user starts and ends at rest), integrate again to position.
    """
    acc = np.asarray(acceleration, np.float64)
    if acc.ndim != 2 or len(acc) < 2:
        raise ValueError(f"acceleration must be [N >= 2, D], got shape {acc.shape}")
    acc = acc - acc.mean(axis=0, keepdims=True)
    if smooth > 1:
        kernel = np.ones(smooth) / smooth
        padded = np.pad(acc, ((smooth // 2, smooth - 1 - smooth // 2), (0, 0)), mode="edge")
        acc = np.stack([np.convolve(padded[:, d], kernel, mode="valid") for d in range(acc.shape[1])], axis=1)
    velocity = np.concatenate([np.zeros((1, acc.shape[1])), np.cumsum((acc[1:] + acc[:-1]) * dt / 2, axis=0)])
    ramp = np.linspace(0.0, 1.0, len(velocity))[:, None]
    velocity = velocity - ramp * velocity[-1:]
    return np.concatenate([np.zeros((1, acc.shape[1])), np.cumsum((velocity[1:] + velocity[:-1]) * dt / 2, axis=0)])


@dataclass
class MotionClip:
    """One motion of the library: root yaw ``[M]`` (radians), translation ``[M, 3]``, poses ``[M, 18, 2]``."""

    name: str
    yaw: np.ndarray
    translation: np.ndarray
    keypoints: Optional[np.ndarray] = None
    ground_normal: Optional[np.ndarray] = None
    horizon_y: Optional[float] = None


class MotionRetriever:
    """Eq. 4.1: ``D^i = DTW(O, O^i) + alpha DTW(T, T^i)`` over a motion library; the top-k smallest.

    Args:
        library: the database motions (the fit-check training set in the thesis).
        alpha: weight of the translation term (0.1).
        stride: compare every ``stride``-th sample of both sequences (speed; 1 = all).
    """

    def __init__(self, library: Sequence[MotionClip], alpha: float = 0.1, stride: int = 1) -> None:
        if not library:
            raise ValueError("the motion library is empty")
        self.library = list(library)
        self.alpha = float(alpha)
        self.stride = max(1, int(stride))

    def distances(self, yaw: np.ndarray, translation: np.ndarray) -> np.ndarray:
        s = self.stride
        yaw = np.unwrap(np.asarray(yaw, np.float64))[::s]
        translation = np.asarray(translation, np.float64)
        translation = (translation - translation[:1])[::s]
        out = np.empty(len(self.library))
        for index, clip in enumerate(self.library):
            other_t = np.asarray(clip.translation, np.float64)
            other_t = (other_t - other_t[:1])[::s]
            out[index] = dtw(yaw, np.asarray(clip.yaw)[::s], angle_cost) + self.alpha * dtw(translation, other_t)
        return out

    def retrieve(self, yaw: np.ndarray, translation: np.ndarray, k: int = 5) -> list[tuple[int, float]]:
        """``[(library index, distance), ...]`` of the ``k`` closest motions, closest first."""
        d = self.distances(yaw, translation)
        order = np.argsort(d, kind="stable")[: max(1, int(k))]
        return [(int(i), float(d[i])) for i in order]


def load_imu_trace(path: str | Path) -> tuple[np.ndarray, np.ndarray, float]:
    """``(yaw [N] radians, translation [N, 3], dt)`` from an ``.npz`` with ``time``, ``yaw``, ``acceleration``.

    ``yaw`` is in radians (phone orientation about the gravity axis); ``acceleration`` is the
    world-frame linear acceleration ``[N, 3]`` in m/s^2 (gravity removed, as phones report
    "user acceleration").
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IMU trace {path} not found (expected an .npz with time, yaw, acceleration)")
    data = np.load(path)
    missing = [k for k in ("time", "yaw", "acceleration") if k not in data]
    if missing:
        raise KeyError(f"IMU trace {path} lacks {missing}")
    time = np.asarray(data["time"], np.float64)
    dt = float(np.median(np.diff(time))) if len(time) > 1 else 1.0 / 30
    return np.asarray(data["yaw"], np.float64), imu_to_trajectory(data["acceleration"], dt), dt


def load_motion_library(path: str | Path) -> list[MotionClip]:
    """A library ``.npz`` with ``<name>/yaw``, ``<name>/translation``, ``<name>/keypoints`` per motion."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"motion library {path} not found (an .npz with <name>/yaw, <name>/translation, ...)")
    data = np.load(path)
    names = sorted({key.split("/")[0] for key in data.files})
    clips = []
    for name in names:
        if f"{name}/yaw" not in data or f"{name}/translation" not in data:
            raise KeyError(f"motion library {path}: motion {name!r} lacks yaw or translation")
        clips.append(
            MotionClip(
                name=name,
                yaw=data[f"{name}/yaw"],
                translation=data[f"{name}/translation"],
                keypoints=data[f"{name}/keypoints"] if f"{name}/keypoints" in data else None,
                ground_normal=data[f"{name}/ground_normal"] if f"{name}/ground_normal" in data else None,
                horizon_y=float(data[f"{name}/horizon_y"]) if f"{name}/horizon_y" in data else None,
            )
        )
    return clips


def depth_to_points(depth: np.ndarray, fx: float, fy: float, cx: float, cy: float, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Back-project a depth map ``[H, W]`` (camera z) to camera-frame points ``[K, 3]`` inside ``mask``."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w]
    keep = np.isfinite(depth) & (depth > 0)
    if mask is not None:
        keep &= mask.astype(bool)
    z = depth[keep]
    return np.stack([(u[keep] - cx) * z / fx, (v[keep] - cy) * z / fy, z], axis=1)


def ground_plane_normal(points: np.ndarray) -> np.ndarray:
    """Unit normal of the least-squares plane through ``points [K >= 3, 3]``, oriented to camera ``-y`` (up)."""
    points = np.asarray(points, np.float64)
    if len(points) < 3:
        raise ValueError("need at least 3 floor points to fit a plane")
    centred = points - points.mean(axis=0)
    normal = np.linalg.svd(centred, full_matrices=False)[2][-1]
    if normal[1] > 0:  # camera y points down; the floor normal points up
        normal = -normal
    return normal / np.linalg.norm(normal)


class BackgroundRetriever:
    """Top-k candidate backgrounds whose ground-plane normals are closest (by angle) to a query normal."""

    def __init__(self, normals: np.ndarray) -> None:
        normals = np.asarray(normals, np.float64)
        self.normals = normals / np.linalg.norm(normals, axis=1, keepdims=True)

    def retrieve(self, normal: np.ndarray, k: int = 5) -> list[tuple[int, float]]:
        n = np.asarray(normal, np.float64)
        n = n / np.linalg.norm(n)
        angles = np.arccos(np.clip(self.normals @ n, -1.0, 1.0))
        order = np.argsort(angles, kind="stable")[: max(1, int(k))]
        return [(int(i), float(angles[i])) for i in order]


def perspective_scale(foot_y: float, horizon_y: float, new_ground_y: float, new_horizon_y: float) -> float:
    """Pose scale for moving a person standing at ``foot_y`` to ``new_ground_y`` (all image-height fractions).

    On a level floor seen by an upright camera a standing person's image height is proportional to
    the distance between their feet and the horizon, so the scale is the ratio of those distances
    ([GAP]: the thesis says only that poses are scaled and translated to keep the feet on the ground).
    """
    before, after = float(foot_y) - float(horizon_y), float(new_ground_y) - float(new_horizon_y)
    if before <= 0 or after <= 0:
        raise ValueError(f"feet must be below the horizon: foot {foot_y} / horizon {horizon_y}, "
                         f"ground {new_ground_y} / horizon {new_horizon_y}")
    return after / before


def ground_feet(keypoints: np.ndarray, ground_y: float, scale: float = 1.0) -> np.ndarray:
    """Scale poses ``[N, J, 2]`` (pixels, -1 missing) by ``scale`` and shift them onto ``ground_y``.

    The scale is about the mean visible ankle point; then a vertical shift moves the median over
    frames of the lowest visible ankle to ``ground_y`` (image rows grow downwards).
    """
    kp = np.asarray(keypoints, np.float64).copy()
    visible = (kp >= 0).all(-1)
    ankles = [j for j in ANKLES if j < kp.shape[1]]
    ankle_vis = visible[:, ankles]
    if not ankle_vis.any():
        raise ValueError("no visible ankle keypoint to ground")
    anchor = kp[:, ankles][ankle_vis].mean(axis=0)
    kp[visible] = anchor + (kp[visible] - anchor) * float(scale)
    lowest = np.where(ankle_vis, kp[:, ankles, 1], -np.inf).max(axis=1)
    shift = float(ground_y) - float(np.median(lowest[np.isfinite(lowest)]))
    kp[visible, 1] += shift
    kp[~visible] = -1.0
    return kp


def retrieve_background(folder: str | Path, normal: np.ndarray, k: int = 5) -> tuple[Path, list[tuple[str, float]], dict]:
    """Background retrieval by ground-plane normal (§4.4) over a background folder.

    ``<folder>/normals.json`` maps each image's file name to ``{"normal": [nx, ny, nz]}`` (the
    camera-frame floor normal, e.g. :func:`ground_plane_normal` of MoGe depth inside a OneFormer
    floor mask) and optionally ``"ground_y"`` (the floor line where the person stands, a fraction
    of the height). Keys starting with ``_`` are metadata (``_models``, written by
    ``python -m datamodules.fitcheck_normals``). Returns the closest image, the top-k
    ``(name, angle in radians)`` and its entry.
    """
    import json

    folder = Path(folder)
    index = folder / "normals.json"
    if not index.is_file():
        raise FileNotFoundError(f"background folder {folder} has no normals.json ({{file name: {{'normal': [x, y, z]}}}})")
    entries = json.loads(index.read_text())
    names = sorted(n for n in entries if not n.startswith("_"))
    missing = [n for n in names if not (folder / n).is_file()]
    if not names or missing:
        raise FileNotFoundError(f"{index}: {'no entries' if not names else f'images missing: {missing[:3]}'}")
    try:
        normals = np.array([entries[n]["normal"] for n in names], np.float64).reshape(len(names), 3)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{index}: every entry needs 'normal': [x, y, z] ({error})") from None
    ranked = BackgroundRetriever(normals).retrieve(normal, k)
    best = names[ranked[0][0]]
    return folder / best, [(names[i], angle) for i, angle in ranked], dict(entries[best])

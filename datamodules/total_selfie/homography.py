"""Selfie simulation by homography (thesis 000, Ch. 3, §3.2.1 "Dataset Generation", supplement §3.5.1).

"(1) Identify the typical positions of upper body OpenPose keypoints from pre-captured real upper
body selfies. (2) Detect the upper body OpenPose keypoints from I'_gt. (3) Compute a homography
transformation that maps keypoints in I'_gt to their typical positions. (4) Use this transformation
to warp I'_gt and obtain I'_u." The same for ``I'_l`` and ``I'_s``; the face selfie ``I'_f`` is an
FFHQ-style alignment crop [129].

* :func:`fit_homography`: the normalised direct linear transform (Hartley normalisation, SVD);
  least squares for more than four points. Written with numpy.
* :func:`warp_image`: inverse mapping with ``grid_sample`` (bilinear, border padding), so the
  output pixel ``p`` shows the input at ``H^-1 p``.
* :data:`TYPICAL_KEYPOINTS`: typical keypoint positions per category in unit coordinates of the
  selfie (x, y in [0, 1]). [GAP] The thesis measures them on 10 real selfies per category and does
  not print them; these defaults are chosen by hand to look like arm's-length selfies (upper: the
  shoulders wide near the top, hips near the bottom; lower: hips at the top, ankles near the
  bottom, foreshortened; shoes: ankles and knees from above). ``simulate_selfies`` accepts a
  measured table instead.
* :func:`face_crop`: an FFHQ-like square crop from the eyes and nose (OpenPose has no mouth):
  centre between the eye midpoint and the nose, side ``max(4 * eye distance, 3.6 * eye-to-nose)``.
  [GAP] a simplification of Kazemi-landmark FFHQ alignment (no rotation).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: OpenPose-18 indices used per category and their typical positions (unit coordinates).
TYPICAL_KEYPOINTS: dict[str, dict[int, tuple[float, float]]] = {
    # neck, r/l shoulder, r/l hip
    "upper": {1: (0.5, 0.22), 2: (0.14, 0.3), 5: (0.86, 0.3), 8: (0.3, 0.95), 11: (0.7, 0.95)},
    # r/l hip, r/l knee, r/l ankle
    "lower": {8: (0.3, 0.08), 11: (0.7, 0.08), 9: (0.33, 0.55), 12: (0.67, 0.55), 10: (0.36, 0.9), 13: (0.64, 0.9)},
    # r/l knee, r/l ankle (shoes seen from above: ankles in the middle)
    "shoes": {9: (0.3, 0.05), 12: (0.7, 0.05), 10: (0.33, 0.55), 13: (0.67, 0.55)},
}
CATEGORIES = ("face", "upper", "lower", "shoes")


def _normaliser(points: np.ndarray) -> np.ndarray:
    centre = points.mean(0)
    spread = np.sqrt(((points - centre) ** 2).sum(1)).mean()
    scale = np.sqrt(2.0) / max(spread, 1e-12)
    return np.array([[scale, 0.0, -scale * centre[0]], [0.0, scale, -scale * centre[1]], [0.0, 0.0, 1.0]])


def fit_homography(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 3x3 ``H`` (``H[2, 2] = 1``) with ``target ~ H source`` from ``N >= 4`` point pairs ``[N, 2]``."""
    src, dst = np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2:
        raise ValueError(f"need two [N, 2] point arrays of the same shape, got {src.shape} and {dst.shape}")
    if len(src) < 4:
        raise ValueError(f"a homography needs at least 4 point pairs, got {len(src)}")
    t_src, t_dst = _normaliser(src), _normaliser(dst)
    hs = np.c_[src, np.ones(len(src))] @ t_src.T
    hd = np.c_[dst, np.ones(len(dst))] @ t_dst.T
    rows = []
    for (x, y, w), (u, v, z) in zip(hs, hd):
        rows.append([0, 0, 0, -z * x, -z * y, -z * w, v * x, v * y, v * w])
        rows.append([z * x, z * y, z * w, 0, 0, 0, -u * x, -u * y, -u * w])
    _, _, vt = np.linalg.svd(np.asarray(rows))
    h_norm = vt[-1].reshape(3, 3)
    h = np.linalg.inv(t_dst) @ h_norm @ t_src
    if abs(h[2, 2]) < 1e-12:
        raise ValueError("degenerate keypoint configuration (collinear points?): no homography")
    return h / h[2, 2]


def apply_homography(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``H`` applied to ``[N, 2]`` points."""
    pts = np.c_[np.asarray(points, dtype=np.float64), np.ones(len(points))] @ np.asarray(h).T
    return pts[:, :2] / pts[:, 2:3]


def warp_image(image: Tensor, h: np.ndarray, out_height: int, out_width: int) -> Tensor:
    """``image [C, H, W]`` warped by ``H`` (input pixel coords -> output pixel coords, centres at integers)."""
    inv = np.linalg.inv(np.asarray(h, dtype=np.float64))
    ys, xs = np.meshgrid(np.arange(out_height, dtype=np.float64), np.arange(out_width, dtype=np.float64), indexing="ij")
    src = apply_homography(inv, np.stack([xs.ravel(), ys.ravel()], 1))
    in_h, in_w = image.shape[-2:]
    gx = (src[:, 0] + 0.5) / in_w * 2 - 1
    gy = (src[:, 1] + 0.5) / in_h * 2 - 1
    grid = torch.from_numpy(np.stack([gx, gy], 1).reshape(1, out_height, out_width, 2)).float()
    return F.grid_sample(image[None].float(), grid, mode="bilinear", padding_mode="border", align_corners=False)[0]


def category_homography(keypoints: Tensor | np.ndarray, category: str, size: int,
                        typical: Optional[Mapping[str, Mapping[int, Sequence[float]]]] = None) -> Optional[np.ndarray]:
    """``H`` mapping the image's visible keypoints of ``category`` to their typical selfie positions
    (``size`` px square); ``None`` when fewer than 4 of them are visible."""
    table = (typical or TYPICAL_KEYPOINTS)[category]
    kp = np.asarray(keypoints, dtype=np.float64)
    pairs = [(kp[i], (x * (size - 1), y * (size - 1))) for i, (x, y) in table.items() if kp[i, 0] >= 0 and kp[i, 1] >= 0]
    if len(pairs) < 4:
        return None
    return fit_homography(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))


def face_crop(image: Tensor, keypoints: Tensor | np.ndarray, size: int) -> Tensor:
    """FFHQ-like face selfie (module docstring); the top fifth of the person box if the face is hidden."""
    kp = np.asarray(keypoints, dtype=np.float64)
    eyes = [kp[i] for i in (14, 15) if kp[i, 0] >= 0]
    nose = kp[0] if kp[0, 0] >= 0 else None
    height, width = image.shape[-2:]
    if len(eyes) == 2 and nose is not None:
        mid = (eyes[0] + eyes[1]) / 2
        side = max(4.0 * np.linalg.norm(eyes[0] - eyes[1]), 3.6 * np.linalg.norm(nose - mid), 4.0)
        centre = (mid + nose) / 2
    else:
        visible = kp[(kp[:, 0] >= 0)]
        top = visible[:, 1].min() if len(visible) else 0.0
        side = max(8.0, 0.12 * height)
        centre = np.array([visible[:, 0].mean() if len(visible) else width / 2, top + side / 2])
    x0, y0 = centre[0] - side / 2, centre[1] - side / 2
    scale = (size - 1) / side if side > 0 else 1.0
    h = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale], [0, 0, 1.0]])
    return warp_image(image, h, size, size)


def simulate_selfies(image: Tensor, keypoints: Tensor | np.ndarray, size: int,
                     typical: Optional[Mapping[str, Mapping[int, Sequence[float]]]] = None) -> Tensor:
    """The four synthetic selfies ``[4, 3, size, size]`` (face, upper, lower, shoes) of ``image``.

    A category with fewer than four visible keypoints falls back to a plain crop of the matching
    third of the image (documented fallback, [GAP]).
    """
    out = [face_crop(image, keypoints, size)]
    height, width = image.shape[-2:]
    for k, category in enumerate(("upper", "lower", "shoes")):
        h = category_homography(keypoints, category, size, typical)
        if h is None:
            top = int(k * height / 3)
            crop = image[:, top: top + max(1, height // 3)]
            out.append(F.interpolate(crop[None].float(), size=(size, size), mode="bilinear", align_corners=False)[0])
        else:
            out.append(warp_image(image, h, size, size))
    return torch.stack(out).clamp(-1, 1)


__all__ = ["CATEGORIES", "TYPICAL_KEYPOINTS", "apply_homography", "category_homography", "face_crop", "fit_homography",
           "simulate_selfies", "warp_image"]

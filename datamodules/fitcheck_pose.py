"""Pose images as the pretrained MimicMotion saw them: DWPose renders, resize + centre crop (thesis 000, Ch. 4).

§4.2.1 (seed ~749): the pose encoder is MimicMotion's and the poses are DWPose's; Fit Check starts
from ``MimicMotion_1.pth``, so the pose images must look like the ones MimicMotion was trained on.
MimicMotion's renderer ([EXT], ``mimicmotion/dwpose/util.py``, re-implemented here with PIL):

* the canvas is drawn at a reference scale, short side ``ref_w = 2160`` px, and resized to the
  target size at the end (``cv2.resize`` bilinear: half-pixel centres, no antialiasing, as
  ``F.interpolate(bilinear, antialias=False)``), so limb widths are fixed relative to the image
  (below a 540 px short side the canvas is capped at 4x the output, [GAP]: without it the
  unantialiased resize skips the 8 px limbs of tiny CPU renders; MimicMotion's 576 px is exact);
* body (OpenPose-18): 17 limbs as filled **ellipses** (half-length x ``stickwidth`` 4, rotated
  along the limb, colour times the two joints' confidences; limbs with a confidence < 0.3 are
  skipped), then the whole canvas **dimmed to 0.6**, then 18 joint discs of radius 4;
* hands (2 x 21 points): 20 bone lines of width 2 coloured by HSV hue ``i / 20`` (times the
  score), keypoint discs of radius 4 in channel 2 (red after the swap);
* face (68 points): white discs of radius 3 (times the score);
* colours are listed as RGB but drawn into a BGR canvas and converted with BGR->RGB at the end, so
  the final image has red and blue swapped relative to the listed colours (reproduced here).

MimicMotion's inference resizes the reference image (and the pose renders, drawn at the
reference's size) so that the short side fits and **centre-crops** the rest: :func:`resize_centre_crop`
(images) and :func:`crop_keypoints` (normalised keypoints) keep the aspect ratio the same way.
"""
from __future__ import annotations

import colorsys
import math
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import Tensor

#: MimicMotion / OpenPose limb pairs (1-based joint ids); only the first 17 are drawn.
DWPOSE_LIMBS = [[2, 3], [2, 6], [3, 4], [4, 5], [6, 7], [7, 8], [2, 9], [9, 10], [10, 11], [2, 12], [12, 13],
                [13, 14], [2, 1], [1, 15], [15, 17], [1, 16], [16, 18], [3, 17], [6, 18]]
DWPOSE_COLOURS = [[255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0], [0, 255, 0],
                  [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255], [0, 0, 255], [85, 0, 255],
                  [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85]]
HAND_EDGES = [[0, 1], [1, 2], [2, 3], [3, 4], [0, 5], [5, 6], [6, 7], [7, 8], [0, 9], [9, 10], [10, 11], [11, 12],
              [0, 13], [13, 14], [14, 15], [15, 16], [0, 17], [17, 18], [18, 19], [19, 20]]
EPS = 0.01


def _visible(point: np.ndarray) -> bool:
    return bool(point[0] > EPS and point[1] > EPS)


def _ellipse(draw: ImageDraw.ImageDraw, a: np.ndarray, b: np.ndarray, half_width: int, fill: tuple[int, int, int]) -> None:
    """A filled ellipse along segment ``a -> b`` (half-axes ``|ab|/2`` and ``half_width``), 1-degree polygon."""
    cx, cy = int((a[0] + b[0]) / 2), int((a[1] + b[1]) / 2)
    half_length = int(math.hypot(a[0] - b[0], a[1] - b[1]) / 2)
    angle = math.radians(int(math.degrees(math.atan2(a[1] - b[1], a[0] - b[0]))))
    cos, sin = math.cos(angle), math.sin(angle)
    points = []
    for degree in range(0, 361):
        t = math.radians(degree)
        x, y = half_length * math.cos(t), half_width * math.sin(t)
        points.append((round(cx + x * cos - y * sin), round(cy + x * sin + y * cos)))
    draw.polygon(points, fill=fill)


def render_dwpose(
    body: np.ndarray,
    height: int,
    width: int,
    body_scores: Optional[np.ndarray] = None,
    hands: Optional[np.ndarray] = None,
    hand_scores: Optional[np.ndarray] = None,
    faces: Optional[np.ndarray] = None,
    face_scores: Optional[np.ndarray] = None,
    ref_w: int = 2160,
) -> Tensor:
    """MimicMotion's DWPose render of one person: ``[3, height, width]`` in [-1, 1].

    ``body [18, 2]``, ``hands [2, 21, 2]``, ``faces [68, 2]`` are **normalised** ``(x / W, y / H)``
    coordinates (negative = missing); scores default to 1.
    """
    body = np.asarray(body, np.float64).reshape(-1, 2)
    scores = np.ones(len(body)) if body_scores is None else np.asarray(body_scores, np.float64).reshape(-1)
    scores = np.where((body < 0).any(-1), 0.0, scores)
    short = min(height, width)
    ref_w = min(ref_w, 4 * short)  # [GAP] below 540 px: cap the canvas at 4x so limbs survive the resize
    sr = ref_w / short if short != ref_w else 1.0
    ch, cw = int(height * sr), int(width * sr)
    canvas = Image.new("RGB", (cw, ch), (0, 0, 0))  # channels hold B, G, R until the final swap
    draw = ImageDraw.Draw(canvas)
    pixels = body * np.array([cw, ch])
    for i in range(17):
        ja, jb = DWPOSE_LIMBS[i][0] - 1, DWPOSE_LIMBS[i][1] - 1
        if ja >= len(body) or jb >= len(body) or scores[ja] < 0.3 or scores[jb] < 0.3:
            continue
        # the 0.6 dimming of the limb layer, folded into the colour: the canvas is black elsewhere and
        # later limbs overwrite earlier ones, so this equals (canvas * 0.6).astype(uint8) after drawing
        colour = tuple(int(int(c * scores[ja] * scores[jb]) * 0.6) for c in DWPOSE_COLOURS[i])
        _ellipse(draw, pixels[ja], pixels[jb], 4, colour)  # type: ignore[arg-type]
    for i in range(min(18, len(body))):
        if scores[i] <= 0:
            continue
        x, y = int(pixels[i][0]), int(pixels[i][1])
        colour = tuple(int(c * scores[i]) for c in DWPOSE_COLOURS[i])
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colour)  # type: ignore[arg-type]
    if hands is not None:
        hands = np.asarray(hands, np.float64).reshape(-1, 21, 2)
        hs = np.ones(hands.shape[:2]) if hand_scores is None else np.asarray(hand_scores, np.float64).reshape(hands.shape[:2])
        for peaks, peak_scores in zip(hands * np.array([cw, ch]), hs):
            for e, (a, b) in enumerate(HAND_EDGES):
                if _visible(peaks[a]) and _visible(peaks[b]):
                    score = int(peak_scores[a] * peak_scores[b] * 255)
                    colour = tuple(int(c * score) for c in colorsys.hsv_to_rgb(e / len(HAND_EDGES), 1.0, 1.0))
                    draw.line([(int(peaks[a][0]), int(peaks[a][1])), (int(peaks[b][0]), int(peaks[b][1]))],
                              fill=colour, width=2)  # type: ignore[arg-type]
            for point, score in zip(peaks, peak_scores):
                if _visible(point):
                    x, y = int(point[0]), int(point[1])
                    draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=(0, 0, int(score * 255)))
    if faces is not None:
        faces = np.asarray(faces, np.float64).reshape(-1, 2)
        fs = np.ones(len(faces)) if face_scores is None else np.asarray(face_scores, np.float64).reshape(-1)
        for point, score in zip(faces * np.array([cw, ch]), fs):
            if _visible(point):
                x, y, c = int(point[0]), int(point[1]), int(score * 255)
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(c, c, c))
    small = _linear_resize(canvas, height, width)[..., ::-1]  # BGR -> RGB
    return torch.from_numpy(np.ascontiguousarray(small.transpose(2, 0, 1))) / 127.5 - 1.0


def _linear_resize(canvas: Image.Image, height: int, width: int) -> np.ndarray:
    """``cv2.resize(INTER_LINEAR)``: half-pixel centres, 2x2 neighbours, no antialiasing (only the sampled rows are read)."""
    w, h = canvas.size
    if (h, w) == (height, width):
        return np.asarray(canvas).astype(np.float32)

    def axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
        low = np.floor(pos).astype(np.int64)
        return low, np.minimum(low + 1, n_in - 1), (pos - low).astype(np.float32)

    y0, y1, wy = axis(height, h)
    x0, x1, wx = axis(width, w)
    rows = np.unique(np.concatenate([y0, y1]))
    strip = np.stack([np.asarray(canvas.crop((0, int(r), w, int(r) + 1)))[0] for r in rows]).astype(np.float32)
    where = {int(r): i for i, r in enumerate(rows)}
    r0, r1 = np.array([where[int(r)] for r in y0]), np.array([where[int(r)] for r in y1])
    wy, wx = wy[:, None, None], wx[None, :, None]
    top = strip[r0][:, x0] * (1 - wx) + strip[r0][:, x1] * wx
    bottom = strip[r1][:, x0] * (1 - wx) + strip[r1][:, x1] * wx
    return np.round(top * (1 - wy) + bottom * wy).astype(np.float32)


def crop_box(height: int, width: int, out_height: int, out_width: int) -> tuple[float, float, float, float]:
    """``(top, left, crop_h, crop_w)`` in source pixels of MimicMotion's resize-short-side + centre crop."""
    scale = max(out_height / height, out_width / width)
    crop_h, crop_w = out_height / scale, out_width / scale
    return (height - crop_h) / 2, (width - crop_w) / 2, crop_h, crop_w


def resize_centre_crop(image: Tensor, out_height: int, out_width: int) -> Tensor:
    """``[..., C, H, W]`` -> ``[..., C, out_height, out_width]``: scale so both sides cover, crop the centre (aspect kept)."""
    h, w = image.shape[-2:]
    scale = max(out_height / h, out_width / w)
    rh, rw = max(out_height, round(h * scale)), max(out_width, round(w * scale))
    lead = image.shape[:-3]
    flat = image.reshape(-1, *image.shape[-3:]).float()
    if (rh, rw) != (h, w):
        flat = F.interpolate(flat, size=(rh, rw), mode="bicubic", align_corners=False, antialias=True).clamp(-1, 1)
    top, left = (rh - out_height) // 2, (rw - out_width) // 2
    flat = flat[..., top : top + out_height, left : left + out_width]
    return flat.reshape(*lead, *flat.shape[-3:])


def crop_keypoints(points: np.ndarray, height: int, width: int, out_height: int, out_width: int) -> np.ndarray:
    """Normalised keypoints of a ``height x width`` frame -> normalised in its centre crop (missing stay -1)."""
    points = np.asarray(points, np.float64)
    top, left, crop_h, crop_w = crop_box(height, width, out_height, out_width)
    out = np.stack([(points[..., 0] * width - left) / crop_w, (points[..., 1] * height - top) / crop_h], -1)
    out[(points < 0).any(-1)] = -1.0
    return out


def load_keypoint_file(path: str) -> dict[str, np.ndarray]:
    """DWPose keypoints from ``.npy`` (body ``[N, 18, 2]``) or ``.npz`` (``bodies`` + optional
    ``body_scores [N, 18]``, ``hands [N, 2, 21, 2]``, ``hand_scores``, ``faces [N, 68, 2]``, ``face_scores``)."""
    if str(path).endswith(".npz"):
        with np.load(path) as data:
            if "bodies" not in data:
                raise KeyError(f"{path}: a DWPose .npz needs 'bodies' [N, 18, 2] (has {sorted(data.files)})")
            out = {k: np.asarray(data[k], np.float64) for k in data.files}
    else:
        out = {"bodies": np.asarray(np.load(path), np.float64)}
    if out["bodies"].ndim == 2:
        out = {k: v[None] for k, v in out.items()}
    if out["bodies"].ndim != 3 or out["bodies"].shape[-1] != 2:
        raise ValueError(f"{path}: body keypoints must be [N, 18, 2] normalised (x/W, y/H), got {out['bodies'].shape}")
    return out


def render_keypoint_sequence(keypoints: dict[str, np.ndarray], frame_height: int, frame_width: int,
                             out_height: int, out_width: int) -> Tensor:
    """Every frame of a keypoint dict drawn as MimicMotion does: at the frame's size, then resize + centre crop."""
    frames = []
    for i in range(len(keypoints["bodies"])):
        def get(key: str) -> Optional[np.ndarray]:
            return keypoints[key][i] if key in keypoints else None

        render = render_dwpose(get("bodies"), frame_height, frame_width, get("body_scores"), get("hands"),
                               get("hand_scores"), get("faces"), get("face_scores"))
        frames.append(resize_centre_crop(render, out_height, out_width))
    return torch.stack(frames)


__all__ = ["render_dwpose", "resize_centre_crop", "crop_keypoints", "crop_box", "load_keypoint_file",
           "render_keypoint_sequence", "DWPOSE_LIMBS", "DWPOSE_COLOURS"]

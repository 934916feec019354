"""DWPose inside the suite: the two released ONNX networks run on frames (thesis 000, Ch. 4).

The chapter extracts DWPose for every training frame, for the selfies (``P'_fr``, ``P'_bk``,
§4.3, seed ~749-768) and for the retrieved motion (seed ~892); MimicMotion, whose checkpoint
the model starts from, was trained on DWPose renders. DWPose (Yang et al. 2023) is released as
two ONNX files (huggingface.co/yzd-v/DWPose, the files MimicMotion's README downloads):

* ``yolox_l.onnx``: a YOLOX-L person detector, input ``[1, 3, 640, 640]`` (the image resized to
  fit, top-left aligned, padded with 114, raw 0-255 values), output ``[1, 8400, 85]`` (per anchor
  of strides 8/16/32: centre offsets, log sizes, objectness, 80 class scores);
* ``dw-ll_ucoco_384.onnx``: the whole-body pose network (RTMPose-l head, 133 COCO-WholeBody
  keypoints), input ``[N, 3, 384, 288]`` (each person's box enlarged 1.25x, fixed to 3:4, cropped
  and ImageNet-normalised), outputs SimCC ``[N, 133, 576]`` (x) and ``[N, 133, 768]`` (y) at 2 bins
  per pixel.

:class:`DWPoseDetector` runs both through ``onnxruntime`` (``pip install onnxruntime`` or
``onnxruntime-gpu``; not a suite dependency: a missing package or file is one clear error) and
returns the keypoints in the suite's DWPose format (:func:`datamodules.fitcheck_pose.load_keypoint_file`):
OpenPose-18 body (neck = shoulder midpoint, COCO -> OpenPose order), 2 x 21 hands, 68 face points,
normalised by the image size, scores beside them; points under 0.3 confidence are ``-1`` (MimicMotion's
threshold). The pre- and post-processing follow the published DWPose/MimicMotion inference
([EXT]: YOLOX grid decoding, NMS 0.45, person score 0.3; SimCC argmax / 2, confidence the smaller
of the two maxima). [GAP] one person per frame: the person with the highest mean body confidence
(fit-check videos show one person). The images are passed as RGB, as MimicMotion passes them.

Stand-in for tests and CPU runs: :class:`FixedOutputSession` (a named fake of the ONNX session,
returning given arrays) injected through ``session_factory``; ``fitcheck_prepare --poses stand-in``
keeps drawing blank poses.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

DETECTOR_FILE = "yolox_l.onnx"
POSE_FILE = "dw-ll_ucoco_384.onnx"
SOURCE = "huggingface.co/yzd-v/DWPose (yolox_l.onnx and dw-ll_ucoco_384.onnx, as in MimicMotion's README)"
DET_SIZE = 640
POSE_SIZE = (288, 384)  # width, height
POSE_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
POSE_STD = np.array([58.395, 57.12, 57.375], np.float32)
SCORE_THRESHOLD = 0.3
# COCO-WholeBody body joints -> OpenPose-18 slots (neck, slot 1, is added as the shoulders' midpoint)
COCO_TO_OPENPOSE = {0: 0, 6: 2, 8: 3, 10: 4, 5: 5, 7: 6, 9: 7, 12: 8, 14: 9, 16: 10, 11: 11, 13: 12, 15: 13,
                    2: 14, 1: 15, 4: 16, 3: 17}


class FixedOutputSession:
    """**Stand-in** for an ``onnxruntime.InferenceSession``: ``run`` returns the given outputs (tests)."""

    def __init__(self, outputs: Sequence[np.ndarray], input_name: str = "input") -> None:
        self.outputs, self.input_name, self.calls = [np.asarray(o) for o in outputs], input_name, []

    def get_inputs(self) -> list[Any]:
        return [type("Input", (), {"name": self.input_name})()]

    def run(self, names: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.calls.append({k: np.asarray(v) for k, v in feeds.items()})
        return list(self.outputs)


def _onnx_session(path: Path, providers: Optional[Sequence[str]]) -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ImportError(f"DWPose runs its released ONNX files with onnxruntime, which is not installed "
                          f"(pip install onnxruntime, or onnxruntime-gpu), needed for {path}") from None
    return onnxruntime.InferenceSession(str(path), providers=list(providers or ["CPUExecutionProvider"]))


def letterbox(image: np.ndarray, size: int = DET_SIZE) -> tuple[np.ndarray, float]:
    """YOLOX input: ``[1, 3, size, size]`` float32 (0-255), the image scaled to fit, top-left, pad 114; and the scale."""
    h, w = image.shape[:2]
    ratio = min(size / h, size / w)
    nh, nw = max(int(h * ratio), 1), max(int(w * ratio), 1)
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    resized = F.interpolate(tensor, size=(nh, nw), mode="bilinear", align_corners=False)[0]
    padded = torch.full((3, size, size), 114.0)
    padded[:, :nh, :nw] = resized
    return padded[None].numpy().astype(np.float32), ratio


def decode_yolox(output: np.ndarray, ratio: float, size: int = DET_SIZE, nms_threshold: float = 0.45,
                 score_threshold: float = SCORE_THRESHOLD) -> np.ndarray:
    """Person boxes ``[K, 5]`` (x1, y1, x2, y2, score) in image pixels from YOLOX's raw ``[1, A, 85]``."""
    from torchvision.ops import nms

    pred = torch.from_numpy(np.asarray(output, np.float32)).reshape(-1, output.shape[-1]).clone()
    grids, strides = [], []
    for stride in (8, 16, 32):
        n = size // stride
        ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        grids.append(torch.stack([xs, ys], -1).reshape(-1, 2))
        strides.append(torch.full((n * n, 1), float(stride)))
    grid, stride = torch.cat(grids).float(), torch.cat(strides)
    if len(grid) != len(pred):
        raise ValueError(f"{DETECTOR_FILE}: expected {len(grid)} anchors for a {size}px input, got {len(pred)}")
    centre = (pred[:, :2] + grid) * stride
    wh = pred[:, 2:4].exp() * stride
    boxes = torch.cat([centre - wh / 2, centre + wh / 2], 1) / ratio
    scores = pred[:, 4] * pred[:, 5]  # objectness x class 0 (person)
    keep = scores > score_threshold
    boxes, scores = boxes[keep], scores[keep]
    order = nms(boxes, scores, nms_threshold)
    return torch.cat([boxes[order], scores[order, None]], 1).numpy()


def crop_person(image: np.ndarray, box: Sequence[float], padding: float = 1.25) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pose network's input ``[3, 384, 288]`` for one box, and the crop's centre and size (pixels)."""
    x1, y1, x2, y2 = [float(v) for v in box[:4]]
    centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2], np.float32)
    w, h = (x2 - x1) * padding, (y2 - y1) * padding
    aspect = POSE_SIZE[0] / POSE_SIZE[1]
    w, h = (w, w / aspect) if w > h * aspect else (h * aspect, h)
    scale = np.array([w, h], np.float32)
    ih, iw = image.shape[:2]
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    us = (torch.arange(POSE_SIZE[0]) + 0.5) / POSE_SIZE[0] - 0.5  # output pixel centres, crop-relative
    vs = (torch.arange(POSE_SIZE[1]) + 0.5) / POSE_SIZE[1] - 0.5
    xs = (centre[0] + us * w) / iw * 2 - 1  # grid_sample's normalised coordinates (align_corners=False)
    ys = (centre[1] + vs * h) / ih * 2 - 1
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], -1)[None]
    crop = F.grid_sample(tensor, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    normed = (crop.permute(1, 2, 0).numpy() - POSE_MEAN) / POSE_STD
    return normed.transpose(2, 0, 1).astype(np.float32), centre, scale


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray, centres: np.ndarray, scales: np.ndarray,
                 split_ratio: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """SimCC maxima -> keypoints ``[N, K, 2]`` in image pixels and scores ``[N, K]``."""
    x_loc, y_loc = simcc_x.argmax(-1), simcc_y.argmax(-1)
    scores = np.minimum(simcc_x.max(-1), simcc_y.max(-1))
    local = np.stack([x_loc, y_loc], -1).astype(np.float32) / split_ratio  # pixels of the 288 x 384 crop
    size = np.array(POSE_SIZE, np.float32)
    points = local / size * scales[:, None] + centres[:, None] - scales[:, None] / 2
    return points, scores


def wholebody_to_dwpose(points: np.ndarray, scores: np.ndarray, height: int, width: int) -> dict[str, np.ndarray]:
    """133 COCO-WholeBody keypoints of one person -> the suite's DWPose dict (normalised, ``-1`` below 0.3)."""
    body = np.full((18, 2), -1.0)
    body_scores = np.zeros(18)
    for coco, openpose in COCO_TO_OPENPOSE.items():
        body[openpose], body_scores[openpose] = points[coco], scores[coco]
    body[1] = (points[5] + points[6]) / 2
    body_scores[1] = float(scores[5] > SCORE_THRESHOLD and scores[6] > SCORE_THRESHOLD)  # DWPose's neck rule
    faces, face_scores = points[23:91], scores[23:91]
    hands = np.stack([points[91:112], points[112:133]])
    hand_scores = np.stack([scores[91:112], scores[112:133]])
    norm = np.array([width, height], np.float64)
    out = {"bodies": body / norm, "body_scores": body_scores, "hands": hands / norm, "hand_scores": hand_scores,
           "faces": faces / norm, "face_scores": face_scores}
    for key, score in (("bodies", "body_scores"), ("hands", "hand_scores"), ("faces", "face_scores")):
        out[key] = np.where((out[score] > SCORE_THRESHOLD)[..., None], out[key], -1.0)
    return out


class DWPoseDetector:
    """DWPose from a folder with its two released ONNX files (module docstring); ``__call__(RGB uint8 [H, W, 3])``.

    Args:
        folder: holds ``yolox_l.onnx`` and ``dw-ll_ucoco_384.onnx``.
        key: the option or config key named in errors.
        providers: onnxruntime execution providers (default CPU).
        session_factory: ``(path) -> session`` replacing onnxruntime (tests: :class:`FixedOutputSession`).
    """

    def __init__(self, folder: str, key: str = "--detector", providers: Optional[Sequence[str]] = None,
                 session_factory: Optional[Callable[[Path], Any]] = None) -> None:
        root = Path(folder)
        missing = [name for name in (DETECTOR_FILE, POSE_FILE) if not (root / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{key}={folder}: {', '.join(missing)} not found; DWPose comes from {SOURCE}")
        make = session_factory or (lambda path: _onnx_session(path, providers))
        self.detector, self.pose = make(root / DETECTOR_FILE), make(root / POSE_FILE)
        self.name = f"DWPose ({root})" if session_factory is None else f"DWPose pipeline on stand-in sessions ({root})"

    def __call__(self, image: np.ndarray) -> Optional[dict[str, np.ndarray]]:
        """One frame -> the DWPose dict of its most confident person, or ``None`` when nobody is found."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"DWPoseDetector expects an RGB image [H, W, 3], got {image.shape}")
        h, w = image.shape[:2]
        blob, ratio = letterbox(image)
        raw = self.detector.run(None, {self.detector.get_inputs()[0].name: blob})[0]
        boxes = decode_yolox(raw, ratio)
        if len(boxes) == 0:
            return None
        crops, centres, scales = zip(*(crop_person(image, box) for box in boxes))
        simcc_x, simcc_y = self.pose.run(None, {self.pose.get_inputs()[0].name: np.stack(crops)})[:2]
        points, scores = decode_simcc(np.asarray(simcc_x), np.asarray(simcc_y), np.stack(centres), np.stack(scales))
        best = int(np.argmax(scores[:, :17].mean(1)))
        return wholebody_to_dwpose(points[best], scores[best], h, w)

    def sequence(self, frames: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Every frame's pose stacked (``[N, ...]``); frames without a person get all ``-1`` / score 0."""
        found = [self(frame) for frame in frames]
        template = next((f for f in found if f is not None), None)
        if template is None:
            template = wholebody_to_dwpose(np.zeros((133, 2)), np.zeros(133), 1, 1)
        empty = {k: (np.zeros_like(v) if k.endswith("scores") else np.full_like(v, -1.0)) for k, v in template.items()}
        return {k: np.stack([(f if f is not None else empty)[k] for f in found]) for k in template}


__all__ = ["DWPoseDetector", "FixedOutputSession", "crop_person", "decode_simcc", "decode_yolox", "letterbox",
           "wholebody_to_dwpose", "COCO_TO_OPENPOSE", "DETECTOR_FILE", "POSE_FILE"]

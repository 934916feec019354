"""``python -m datamodules.fitcheck_normals``: ground-plane normals of backgrounds -> ``normals.json`` (thesis 000, Ch. 4).

§4.4 "Background Acquisition" (seed ~896): "we begin by utilizing a pretrained depth estimation
model [264] (MoGe) and a pretrained image segmentation model [114] (OneFormer) to estimate the ground
plane normal for both the original background - where the motion was captured - and all candidate
backgrounds", then retrieve the backgrounds with the closest normals. This command writes what
``predict`` reads from a background folder (:mod:`datamodules.fitcheck_videos`)::

    {"room.png": {"normal": [x, y, z], "ground_y": 0.9, "horizon_y": 0.45}, ...}

(camera frame: x right, y down, z forward; ``ground_y`` / ``horizon_y`` as fractions of the height).
Two interfaces, each with real loading code and a named CPU stand-in:

=============  =============================================  ==============================================
step           real (from a path)                             stand-in (named in ``normals.json``'s meta)
=============  =============================================  ==============================================
point map      :class:`MoGePointMap`: MoGe [264] from its     :class:`LevelCameraFloor`: a level camera
               released checkpoint folder (the ``moge``       1.6 m above a flat floor, focal = image
               package, ``MoGeModel.from_pretrained``;        diagonal (every normal is straight up)
               not a suite dependency)
floor mask     :class:`OneFormerFloor`: OneFormer [114]       :class:`LowerBandFloor`: the bottom 30% of
               (ADE20K) from a ``transformers`` folder,       the image
               semantic segmentation, floor-like classes
=============  =============================================  ==============================================

The normal is the least-squares plane through the floor pixels' 3-D points
(:func:`datamodules.fitcheck_motion.ground_plane_normal`). [GAP] the thesis does not say which
segmentation classes count as ground (:data:`FLOOR_LABELS` here), where the feet stand
(``ground_y``: the median floor row of the middle third of the columns) nor how the horizon is
found (``horizon_y``: the plane's vanishing line at the image centre, from the intrinsics).
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: ADE20K classes (OneFormer's ADE20K label names) treated as the ground plane.
FLOOR_LABELS = ("floor", "flooring", "road", "sidewalk", "pavement", "grass", "earth", "ground", "field", "sand",
                "rug", "carpet", "path", "dirt track", "land")


class PointMap(Protocol):
    name: str

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        """RGB uint8 ``[H, W, 3]`` -> points ``[H, W, 3]`` (camera frame) and the focal length / principal point in pixels."""


class FloorMask(Protocol):
    name: str

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 ``[H, W, 3]`` -> boolean floor mask ``[H, W]``."""


class LevelCameraFloor:
    """**Stand-in** point map: a level pinhole camera ``height`` above a flat floor (focal = image diagonal)."""

    name = "stand-in: level camera over a flat floor (not MoGe)"

    def __init__(self, height: float = 1.6) -> None:
        self.height = float(height)

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        h, w = image.shape[:2]
        f, cx, cy = float(np.hypot(h, w)), w / 2.0, h / 2.0
        v, u = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
        below = np.maximum(v - cy, 1e-3)  # rows above the horizon: far away (never floor in the stand-in mask)
        z = f * self.height / below
        points = np.stack([(u - cx) / f * z, (v - cy) / f * z, z], -1)
        return points, f, cx, cy


class MoGePointMap:
    """MoGe [264] (Wang et al., "MoGe: unlocking accurate monocular geometry estimation"), released as
    ``Ruicheng/moge-vitl`` (``model.pt`` + config): ``infer(image [3, H, W] in [0, 1])`` gives ``points``
    ``[H, W, 3]``, ``mask`` and normalised ``intrinsics``. Needs the authors' ``moge`` package
    (github.com/microsoft/MoGe), which the suite does not bundle."""

    SOURCE = "huggingface.co/Ruicheng/moge-vitl (MoGe's released checkpoint; pip install git+https://github.com/microsoft/MoGe)"

    def __init__(self, path: str, key: str = "--depth", device: str = "cpu") -> None:
        if not Path(path).exists():
            raise FileNotFoundError(f"{key}={path} not found: expected {self.SOURCE}")
        try:
            from moge.model.v1 import MoGeModel
        except ImportError:
            raise ImportError(f"{key}={path}: MoGe needs the authors' 'moge' package ({self.SOURCE})") from None
        import torch

        self.torch, self.device = torch, device
        self.model = MoGeModel.from_pretrained(str(path)).to(device).eval()
        self.name = f"MoGe ({Path(path).name})"

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        torch = self.torch
        h, w = image.shape[:2]
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255).to(self.device)
        with torch.no_grad():
            out = self.model.infer(tensor)
        points = out["points"].cpu().numpy().astype(np.float64)
        points[~out["mask"].cpu().numpy().astype(bool)] = np.nan
        k = out["intrinsics"].cpu().numpy()  # normalised by width / height
        return points, float(k[0, 0] * w), float(k[0, 2] * w), float(k[1, 2] * h)


class LowerBandFloor:
    """**Stand-in** floor mask: the bottom ``fraction`` of the image."""

    name = "stand-in: bottom band of the image (not OneFormer)"

    def __init__(self, fraction: float = 0.3) -> None:
        self.fraction = float(fraction)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        mask = np.zeros((h, w), bool)
        mask[int(round(h * (1 - self.fraction))):] = True
        return mask


class OneFormerFloor:
    """OneFormer [114] (ADE20K) from a local ``transformers`` folder (``OneFormerForUniversalSegmentation``
    + ``OneFormerProcessor``, e.g. ``shi-labs/oneformer_ade20k_swin_large``), task ``semantic``; the floor
    is every pixel whose class name is in :data:`FLOOR_LABELS`."""

    SOURCE = "huggingface.co/shi-labs/oneformer_ade20k_swin_large saved with save_pretrained"

    def __init__(self, path: str, key: str = "--segmenter", device: str = "cpu",
                 labels: Sequence[str] = FLOOR_LABELS) -> None:
        if not Path(path).is_dir():
            raise FileNotFoundError(f"{key}={path} not found: expected {self.SOURCE}")
        from transformers import OneFormerForUniversalSegmentation, OneFormerProcessor

        self.model = OneFormerForUniversalSegmentation.from_pretrained(str(path)).to(device).eval()
        self.processor = OneFormerProcessor.from_pretrained(str(path))
        wanted = {label.lower() for label in labels}
        self.floor_ids = sorted(int(i) for i, name in self.model.config.id2label.items()
                                if any(part.strip().lower() in wanted for part in str(name).split(",")))
        if not self.floor_ids:
            raise ValueError(f"{key}={path}: no floor-like class among the model's labels (FLOOR_LABELS)")
        self.device, self.name = device, f"OneFormer ({Path(path).name})"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import torch

        inputs = self.processor(images=image, task_inputs=["semantic"], return_tensors="pt").to(self.device)
        with torch.no_grad():
            outputs = self.model(**inputs)
        labels = self.processor.post_process_semantic_segmentation(outputs, target_sizes=[image.shape[:2]])[0]
        return np.isin(labels.cpu().numpy(), self.floor_ids)


def ground_entry(image: np.ndarray, points: PointMap, floor: FloorMask, min_points: int = 50) -> dict[str, Any]:
    """``{"normal", "ground_y", "horizon_y"}`` of one background (module docstring)."""
    from datamodules.fitcheck_motion import ground_plane_normal

    h, w = image.shape[:2]
    xyz, f, cx, cy = points(image)
    mask = np.asarray(floor(image), bool) & np.isfinite(xyz).all(-1)
    if mask.sum() < min_points:
        raise ValueError(f"only {int(mask.sum())} floor pixels with depth (need {min_points}): no ground plane")
    normal = ground_plane_normal(xyz[mask])
    rows = np.nonzero(mask[:, w // 3: 2 * w // 3 + 1])[0]
    ground_y = float(np.median(rows if len(rows) else np.nonzero(mask)[0]) + 0.5) / h
    entry = {"normal": [float(v) for v in normal], "ground_y": ground_y}
    if abs(normal[1]) > 1e-6:  # vanishing line of the plane at the centre column: n . K^-1 [cx, v, 1] = 0
        entry["horizon_y"] = float(cy - f * normal[2] / normal[1]) / h
    return entry


def write_normals(folder: Path, points: PointMap, floor: FloorMask, output: Optional[Path] = None) -> Path:
    """Every image of ``folder`` -> ``normals.json`` (beside the images unless ``output``); returns its path."""
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"--backgrounds {folder}: no .png/.jpg images")
    table: dict[str, Any] = {}
    for file in files:
        image = np.asarray(Image.open(file).convert("RGB"))
        try:
            table[file.name] = ground_entry(image, points, floor)
        except ValueError as error:
            log.warning("%s skipped: %s", file.name, error)
    table["_models"] = {"point_map": points.name, "floor": floor.name}
    path = output or folder / "normals.json"
    path.write_text(json.dumps(table, indent=1) + "\n")
    return path


def main(argv: Optional[Sequence[str]] = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m datamodules.fitcheck_normals", description=__doc__.split("\n")[0])
    parser.add_argument("--backgrounds", required=True, help="folder of background images (the retrieval database)")
    parser.add_argument("--depth", default="stand-in", help="MoGe checkpoint folder, or 'stand-in'")
    parser.add_argument("--segmenter", default="stand-in", help="OneFormer (ADE20K) transformers folder, or 'stand-in'")
    parser.add_argument("--output", default=None, help="normals.json path (default: inside --backgrounds)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    folder = Path(args.backgrounds)
    if not folder.is_dir():
        raise FileNotFoundError(f"--backgrounds {folder} is not a folder")
    points: PointMap = LevelCameraFloor() if args.depth == "stand-in" else MoGePointMap(args.depth, device=args.device)
    floor: FloorMask = LowerBandFloor() if args.segmenter == "stand-in" else OneFormerFloor(args.segmenter, device=args.device)
    for part in (points, floor):
        log.warning("fitcheck_normals: %s", part.name)
    path = write_normals(folder, points, floor, Path(args.output) if args.output else None)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()


__all__ = ["FLOOR_LABELS", "LevelCameraFloor", "LowerBandFloor", "MoGePointMap", "OneFormerFloor", "ground_entry",
           "main", "write_normals"]

"""The published layouts of VIDM's four datasets (thesis 001 Ch. 3 §3.4) and one reader for both kinds of video.

A "video" is either a video file (``.mp4``, ``.avi``, ``.webm``, ``.mov``, ``.mkv``; decoded with PyAV)
or a leaf folder of numbered frame images (the [repo] and StyleGAN-V extract frames to folders).
Frame folders must be numbered without gaps (``00000.png, 00001.png, ...``; any start, any
zero-padding): a gap is an error naming the folder and the missing number, because the motion
tuples ``(x(n-1), x(n))`` would otherwise skip time silently.

Layouts (``dataset`` -> the split folder under ``root``; every video below it is used):

* ``ucf101``: ``UCF-101/<Class>/v_<Class>_gXX_cYY.avi`` (the official archive; StyleGAN-V and
  DIGAN train on all 13,320 clips), or the same tree as frame folders; split ``train``/``test``
  subfolders are used when present;
* ``taichi``: ``taichi/{train,test}/<video>/`` (frame folders or ``.mp4``; the first-order-model release);
* ``sky``: ``sky_timelapse/{sky_train,sky_test}/<video>/<clip>/*.jpg`` (the MDGAN release);
* ``clevrer``: ``clevrer/video_{train,validation}/video_XXXXX-XXXXX/video_XXXXX.mp4`` (the official release);
* ``folder``: any tree of videos under ``root`` (``split`` ignored).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image
from torch import Tensor

VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".avi", ".webm", ".mov", ".mkv")
FRAME_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
SPLIT_FOLDERS: dict[str, dict[str, tuple[str, ...]]] = {
    "ucf101": {"train": ("train", ""), "test": ("test", "")},
    "taichi": {"train": ("train",), "test": ("test",)},
    "sky": {"train": ("sky_train", "train"), "test": ("sky_test", "test")},
    "clevrer": {"train": ("video_train", "train"), "test": ("video_validation", "validation", "test")},
    "folder": {"train": ("",), "test": ("",)},
}
DATASETS = tuple(SPLIT_FOLDERS)
_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def split_root(root: Path, dataset: str, split: str) -> Path:
    """The folder of ``split`` (``train`` / ``test``) of ``dataset`` under ``root``."""
    if dataset not in SPLIT_FOLDERS:
        raise ValueError(f"data.dataset={dataset!r} is not one of {list(DATASETS)}")
    if not root.is_dir():
        raise FileNotFoundError(f"data.root {root} is not a folder (the {dataset} release, see docs/vidm.md)")
    for name in SPLIT_FOLDERS[dataset][split]:
        candidate = root / name if name else root
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"{root}: no {split} split folder for {dataset} (looked for {SPLIT_FOLDERS[dataset][split]})")


def find_videos(folder: Path) -> list[Path]:
    """Every video file and every leaf frame folder below ``folder`` (sorted, hidden entries skipped)."""
    videos: list[Path] = []
    for path in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            videos.append(path)
        elif path.is_dir() and not any(p.is_dir() for p in path.iterdir()) and frame_files(path, check=False):
            videos.append(path)
    if not videos:
        raise FileNotFoundError(f"{folder} holds no videos ({', '.join(VIDEO_SUFFIXES)} files or folders of frames)")
    return videos


def frame_files(folder: Path, check: bool = True) -> list[Path]:
    """The frames of a frame folder in time order; with ``check`` a numbering gap is an error."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith(".")]
    numbered = []
    for p in files:
        match = _NUMBER.search(p.stem)
        if match is None:
            if check:
                raise ValueError(f"frame folder {folder}: frame {p.name} has no frame number")
            continue
        numbered.append((int(match.group(1)), p))
    numbered.sort()
    if check and numbered:
        numbers = [n for n, _ in numbered]
        expected = range(numbers[0], numbers[0] + len(numbers))
        if numbers != list(expected):
            missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
            what = f"frame {missing[0]} is missing" if missing else "frame numbers repeat"
            raise ValueError(f"frame folder {folder} has a gap in its numbering: {what} "
                             f"(frames {numbers[0]}..{numbers[-1]}, {len(numbers)} files)")
    return [p for _, p in numbered]


def fit_square(image: Image.Image, size: int) -> np.ndarray:
    """Centre square crop, then resize to ``size`` (bilinear, antialiased; the [repo] preprocessing)."""
    side = min(image.width, image.height)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != size:
        image = image.resize((size, size), Image.BILINEAR, reducing_gap=None)
    return np.asarray(image.convert("RGB"))


class VideoReader:
    """One video (file or frame folder): its frame count and ``frames(indices) -> uint8 [k, 3, S, S]``."""

    def __init__(self, path: Path, size: int) -> None:
        self.path, self.size = Path(path), int(size)
        self._frames: Optional[list[Path]] = frame_files(self.path) if self.path.is_dir() else None
        self._count: Optional[int] = len(self._frames) if self._frames is not None else None

    def __len__(self) -> int:
        if self._count is None:
            import av

            try:
                with av.open(str(self.path)) as container:
                    stream = container.streams.video[0]
                    count = int(stream.frames or 0)
                    if count <= 0:
                        count = sum(1 for _ in container.decode(stream))
            except av.error.FFmpegError as error:
                raise RuntimeError(f"could not read video {self.path}: {error}") from error
            self._count = count
        return self._count

    def frames(self, indices: list[int]) -> Tensor:
        if self._frames is not None:
            arrays = [fit_square(Image.open(self._frames[i]), self.size) for i in indices]
        else:
            import av

            wanted, arrays_by_index = set(indices), {}
            try:
                with av.open(str(self.path)) as container:
                    for i, frame in enumerate(container.decode(container.streams.video[0])):
                        if i in wanted:
                            arrays_by_index[i] = fit_square(frame.to_image(), self.size)
                        if i >= max(wanted):
                            break
            except av.error.FFmpegError as error:
                raise RuntimeError(f"could not decode video {self.path}: {error}") from error
            missing = sorted(wanted - set(arrays_by_index))
            if missing:
                raise ValueError(f"video {self.path} has no frame {missing[0]} (it decodes {len(arrays_by_index)} of the wanted frames)")
            arrays = [arrays_by_index[i] for i in indices]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


__all__ = ["DATASETS", "FRAME_SUFFIXES", "VIDEO_SUFFIXES", "VideoReader", "find_videos", "fit_square", "frame_files", "split_root"]

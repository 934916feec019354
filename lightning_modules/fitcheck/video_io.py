"""Writing generated clips as H.264 MP4 with PyAV (``predict``'s output, §4.4)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor


def video_to_uint8(video: Tensor) -> np.ndarray:
    """``[T, 3, H, W]`` in [-1, 1] -> ``uint8 [T, H, W, 3]``."""
    if video.ndim != 4 or video.shape[1] != 3:
        raise ValueError(f"expected a clip [T, 3, H, W], got {tuple(video.shape)}")
    scaled = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).cpu().numpy()


def write_mp4(video: Tensor, path: Path, fps: float = 7.5) -> Path:
    """Encode ``video`` (``[T, 3, H, W]``, [-1, 1]) to ``path`` (H.264, yuv420p; odd sizes padded by 1)."""
    import av
    from fractions import Fraction

    frames = video_to_uint8(video)
    height, width = frames.shape[1:3]
    pad_h, pad_w = height % 2, width % 2
    if pad_h or pad_w:  # yuv420p needs even sizes
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def read_mp4(path: Path) -> np.ndarray:
    """Decode an MP4 to ``uint8 [T, H, W, 3]`` (for tests and evaluation)."""
    import av

    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])

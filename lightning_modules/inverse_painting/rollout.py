"""Autoregressive rollout of Inverse Painting (thesis 000, Ch. 6, §6.6) and its outputs.

From the white canvas ``Î_0``, for ``t = 1, 2, ...``:

1. ``p̂_t = g_text([I_T, Î_{t-1}], p)`` (when the renderer or the mask generator uses text);
2. ``M̂_d = D(I_T, Î_{t-1}, 0.2)``, ``M̂_t = g_mask([E(I_T), E(Î_{t-1}), M̂_d], [g_p(p̂_t), g_t(Δ̂)])``
   (when the renderer uses a mask);
3. ``Î_t`` = the renderer's sample (Euler ancestral, 25 steps, multi-condition CFG).

Stop (:class:`StopCriterion`) when ``LPIPS(Î_{t-2}, Î_{t-1}) < ε`` and ``LPIPS(Î_{t-1}, Î_t) < ε``
(``ε = 1e-3``), or after ``max_keyframes``. Keyframe ``k`` has time ``k · Δ̂`` (``Δ̂ = 20 s``).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor

from datamodules.painting_timelapse import format_time


class StopCriterion:
    """True once ``patience`` consecutive updates each changed LPIPS by less than ``eps``."""

    def __init__(self, distance: Callable[[Tensor, Tensor], Tensor], eps: float = 1e-3, patience: int = 2) -> None:
        self.distance, self.eps, self.patience = distance, float(eps), int(patience)
        self.small = 0
        self.history: list[float] = []

    def update(self, previous: Tensor, current: Tensor) -> bool:
        change = float(self.distance(previous, current).flatten()[0])
        self.history.append(change)
        self.small = self.small + 1 if change < self.eps else 0
        return self.small >= self.patience


@dataclass
class Rollout:
    """One painting's generated process: ``frames [K, 3, H, W]`` (white first), times, texts, masks."""

    frames: Tensor
    times: list[float]
    texts: list[str] = field(default_factory=list)
    masks: list[Tensor] = field(default_factory=list)
    stopped: str = "limit"
    seconds: dict[str, float] = field(default_factory=lambda: {"text": 0.0, "mask": 0.0, "render": 0.0})


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def rollout(
    target: Tensor,
    renderer: Any,
    mask_generator: Optional[Any] = None,
    text_generator: Optional[Any] = None,
    *,
    interval: float = 20.0,
    max_keyframes: int = 50,
    stop: Optional[StopCriterion] = None,
    num_steps: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    fixed_text: Optional[str] = None,
) -> Rollout:
    """Paint ``target`` (``[1, 3, H, W]`` in ``[-1, 1]``) from a white canvas (§6.6)."""
    if target.ndim != 4 or target.shape[0] != 1:
        raise ValueError(f"rollout paints one target [1, 3, H, W], got {tuple(target.shape)}")
    device = target.device
    needs_text = renderer.use["text"] or (mask_generator is not None and mask_generator.use_text)
    if renderer.use["text"] and text_generator is None and fixed_text is None:
        raise ValueError("the renderer uses text instructions but no text generator was given")
    if renderer.use["mask"] and mask_generator is None:
        raise ValueError("the renderer uses a mask but no mask generator was given")
    canvas = torch.ones_like(target)
    frames, times = [canvas[0]], [0.0]
    result = Rollout(frames=canvas, times=times)
    delta = torch.full((1,), float(interval), device=device)
    for step in range(1, int(max_keyframes) + 1):
        text = None
        if needs_text:
            _sync(device)
            start = time.perf_counter()
            text = [fixed_text] if fixed_text is not None else text_generator.generate(target, canvas)
            _sync(device)
            result.seconds["text"] += time.perf_counter() - start
            result.texts.append(text[0])
        mask = None
        if renderer.use["mask"]:
            start = time.perf_counter()
            mask = mask_generator.predict_mask(target, canvas, delta, text)
            _sync(device)
            result.seconds["mask"] += time.perf_counter() - start
            result.masks.append(mask[0])
        start = time.perf_counter()
        new = renderer.render(canvas, target, delta, text if renderer.use["text"] else None, mask, num_steps=num_steps, generator=generator)
        _sync(device)
        result.seconds["render"] += time.perf_counter() - start
        frames.append(new[0])
        times.append(step * float(interval))
        finished = stop.update(canvas, new) if stop is not None else False
        canvas = new
        if finished:
            result.stopped = "converged"
            break
    result.frames = torch.stack(frames)
    result.times = times
    return result


# ---------------------------------------------------------------------------------- outputs
def _uint8(frames: Tensor) -> np.ndarray:
    return ((frames.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def write_mp4(frames: Tensor, path: Path, fps: float = 2.0) -> Path:
    """``[K, 3, H, W]`` -> H.264 MP4 (PyAV), odd sizes padded by one pixel."""
    import av
    from fractions import Fraction

    arrays = _uint8(frames)
    pad_h, pad_w = arrays.shape[1] % 2, arrays.shape[2] % 2
    if pad_h or pad_w:
        arrays = np.pad(arrays, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = arrays.shape[2], arrays.shape[1], "yuv420p"
        for array in arrays:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_gif(frames: Tensor, path: Path, fps: float = 2.0) -> Path:
    from PIL import Image

    images = [Image.fromarray(a) for a in _uint8(frames)]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


def write_rollout(result: Rollout, folder: Path, fps: float = 2.0) -> dict[str, Any]:
    """``timelapse.mp4``, ``timelapse.gif``, ``keyframes/{k:03d}_{mm-ss}.png``, ``masks/``, ``process.json``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    write_mp4(result.frames, folder / "timelapse.mp4", fps)
    write_gif(result.frames, folder / "timelapse.gif", fps)
    names = []
    for k, (array, seconds) in enumerate(zip(_uint8(result.frames), result.times)):
        name = f"{k:03d}_{format_time(seconds).replace(':', '-')}.png"
        (folder / "keyframes").mkdir(exist_ok=True)
        Image.fromarray(array).save(folder / "keyframes" / name)
        names.append(name)
    for k, mask in enumerate(result.masks, start=1):
        (folder / "masks").mkdir(exist_ok=True)
        Image.fromarray((mask[0].float().cpu().numpy() * 255).astype(np.uint8)).save(folder / "masks" / f"{k:03d}.png")
    info = {"keyframes": names, "times": result.times, "instructions": result.texts, "stopped": result.stopped, "seconds": result.seconds}
    (folder / "process.json").write_text(json.dumps(info, indent=2))
    return info

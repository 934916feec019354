"""``predict`` for VIDM: videos written as MP4 and GIF (thesis 001 Ch. 3 §3.3.2, the generation loop).

Two request kinds, both through the suite's predict contract (``datamodules.predict_inputs``,
``components.predict_outputs``):

* **sampling requests** (``--data.num_samples N``): ``N`` unconditional videos, each from its own
  seed (``predict_seed + data seed + i``): frame 0 from the content generator, then the motion
  generator; outputs ``video<i>__seed<s>.mp4`` / ``.gif``;
* **image-to-video** (``--data.predict_inputs <files | folder | manifest>``): every image the user
  names is the first frame ``x(0)``; it is brought to the model's square canvas (``pad`` by
  default: the long side resized to ``image_size``, the rest padded black; ``stretch`` resizes
  both sides), the motion generator continues it, and every frame is mapped back to the input's
  aspect ratio (the long side at the model resolution; no tiling). Outputs are named after the
  input (``<stem>.mp4`` / ``<stem>.gif``).

``manifest.json`` in ``<run>/predictions/vidm_<sampler>_<steps>steps/`` lists every input, its
outputs, frames, size, seed and the sampling settings (sampler, steps, NFE per frame, flow cache).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from callbacks.media import save_gif, save_mp4
from datamodules.predict_inputs import restore_from_canvas
from lightning_modules.components.predict_outputs import names_of, seed_generator, variant_tag


def _settings(module: Any) -> dict[str, Any]:
    return {"module": type(module).__name__, "paper": "vidm (thesis 001 Ch. 3)",
            "sampler": getattr(module.sampler, "name", type(module.sampler).__name__),
            "num_sampling_steps": module.num_sampling_steps, "grid": module.grid, "nfe_per_frame": module.nfe(),
            "num_frames": module.num_frames, "fps": module.fps, "predict_seed": module.predict_seed,
            "flow": "SpyNet(x(0), x(n-1)) once per frame, cached across denoising steps",
            "content_checkpoint": module.content_checkpoint}


def _write(writer: Any, frames: torch.Tensor, name: str, variant: str, fps: int) -> list[Path]:
    """``frames [N, 3, H, W]`` in [-1, 1] -> ``<name>.mp4`` (when PyAV encodes) and ``<name>.gif``."""
    gif = writer.path_for(name, variant, ".gif")
    save_gif(list(frames), gif, fps)
    outputs = [gif]
    mp4 = gif.with_suffix(".mp4")
    if save_mp4(list(frames), mp4, fps):
        outputs.insert(0, mp4)
    return outputs


def predict_videos(module: Any, batch: Mapping[str, Any], batch_idx: int) -> list[Path]:
    """Generate and write one video per request of ``batch``; returns the written files."""
    steps = int(module.num_sampling_steps)
    sampler = getattr(module.sampler, "name", type(module.sampler).__name__)
    writer = module.prediction_writer(f"vidm_{sampler}_{steps}steps", _settings(module))
    written: list[Path] = []
    if "image" in batch:  # image-to-video: the user's own first frames
        first = batch["image"].to(module.device)
        seed = module.predict_seed + batch_idx
        videos = module.generate(first.shape[0], first_frames=first, generator=seed_generator(seed, module.device))
        names = names_of(batch, batch_idx, first.shape[0])
        for row, name in enumerate(names):
            frames = videos[row].float().cpu()
            place = batch["placement"][row] if "placement" in batch else None
            if place is not None:
                frames = torch.stack([restore_from_canvas(f, place, max_side=module.image_size) for f in frames])
            files = _write(writer, frames, name, "", module.fps)
            writer.record(batch["path"][row] if "path" in batch else name, files, frames=int(frames.shape[0]),
                          size=list(frames.shape[-2:]), seed=seed, mode="image-to-video")
            written += files
        return written
    if "seed" not in batch:
        raise ValueError("VIDMMotion.predict takes sampling requests (--data.num_samples N) or first frames "
                         "(--data.predict_inputs <images>)")
    for index, data_seed in zip(batch["sample_index"], batch["seed"]):
        seed = module.predict_seed + int(data_seed)
        video = module.generate(1, generator=seed_generator(seed, module.device))[0].float().cpu()
        files = _write(writer, video, f"video{int(index):05d}", variant_tag(seed=seed), module.fps)
        writer.record(int(index), files, frames=int(video.shape[0]), size=list(video.shape[-2:]), seed=seed,
                      mode="unconditional")
        written += files
    return written


__all__ = ["predict_videos"]

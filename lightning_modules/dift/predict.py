"""DiFT ``predict``: one writer per modality, outputs named after their inputs, with a manifest.

* image: ``sample<i>__seed<s>.png`` per request (``--data.num_samples N``);
* video: ``<embedding file stem>.gif`` plus its frames ``<stem>__frame<k>.png``;
* views: ``<input stem>__view<k>.png`` for each target camera (the orbit of the datamodule);
* game: ``<start frame stem>.gif`` plus ``<stem>__frame<k>.png`` of the rollout;

views and game frames are mapped back to the input image's size and aspect ratio.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from PIL import Image
from torch import Tensor

from datamodules.predict_inputs import restore_from_canvas
from lightning_modules.components.image_io import to_uint8
from lightning_modules.components.predict_outputs import names_of, seed_generator, variant_tag


def save_gif(frames: Tensor, path: Path, fps: int = 8) -> Path:
    """``frames [T, 3, H, W]`` in [-1, 1] -> an animated GIF."""
    arrays = to_uint8(frames.float().cpu())
    images = [Image.fromarray(a.numpy()) for a in arrays]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


def _write_sequence(writer: Any, frames: Tensor, name: str, source: Any, **details: Any) -> None:
    gif = save_gif(frames, writer.path_for(name, "", ".gif"))
    pngs = [writer.save_image(frame, name, f"frame{k:03d}") for k, frame in enumerate(frames)]
    writer.record(source, [gif, *pngs], frames=int(frames.shape[0]), **details)


@torch.no_grad()
def write_predictions(module: Any, batch: Mapping[str, Any], batch_idx: int) -> None:
    settings = dict(module.predict_settings(), modality=module.modality, window=module.window)
    writer = module.prediction_writer(module.modality, settings)
    device = module.device
    if module.modality == "image":
        if "seed" not in batch:
            raise ValueError("DiFT image predict samples from noise: ask for samples with --data.num_samples N")
        seeds = [module.predict_seed + int(s) for s in batch["seed"]]
        for index, seed in zip(batch["sample_index"], seeds):
            generator = seed_generator(seed, device)
            noise = torch.randn((1, 1, *module._latent_shape()), generator=generator, device=device)
            image = module.sample(1, noise=noise, generator=generator)[0]
            path = writer.save_image(image, f"sample{int(index):05d}", variant_tag(seed=seed))
            writer.record(int(index), [path], seed=seed)
        return
    names = names_of(batch, batch_idx, len(next(v for v in batch.values() if isinstance(v, (Tensor, list)))))
    generator = seed_generator(module.predict_seed + batch_idx, device)
    if module.modality == "video":
        frames = module.sample_frames
        videos = module.sample_video(batch["text"].to(device), frames, generator=generator)
        for row, name in enumerate(names):
            source = batch["path"][row] if "path" in batch else (batch.get("caption") or [name] * len(names))[row]
            _write_sequence(writer, videos[row], name, source)
        return
    if module.modality == "views":
        text = module.condition_embedding({"input_view": batch["input_view"].to(device)})
        coords = {"camera": batch["camera"].to(device), "intrinsics": batch["intrinsics"].to(device)}
        views = module.decode_views(module.generate(None, coords, batch["camera"].shape[1], text, generator=generator))
        for row, name in enumerate(names):
            restored = restore_from_canvas(views[row].float().cpu(), batch["placement"][row])
            paths = [writer.save_image(v, name, f"view{k:02d}") for k, v in enumerate(restored)]
            writer.record(batch["path"][row], paths, cameras=batch["camera"][row].tolist())
        return
    actions = batch["actions"].to(device)
    start = module.encode_views(batch["input_view"].to(device).unsqueeze(1))
    frames = module.decode_views(module.autoregressive_rollout(start, actions.shape[1] - 1, None, actions, generator=generator))
    for row, name in enumerate(names):
        restored = restore_from_canvas(frames[row].float().cpu(), batch["placement"][row])
        _write_sequence(writer, restored, name, batch["path"][row], action_file=batch["action_file"][row],
                        actions=actions[row].argmax(-1).tolist())

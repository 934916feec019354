"""``predict`` for Bi-Noising: the user's degraded images in, restored images out (thesis 001 Ch. 8, §8.4).

Inputs (``data.predict_root``): every image file in the folder, any size and aspect ratio.
Mapping to the model (``S = model.image_size``) and back, per task:

* ``colorization``: RGB mean (a colour input is made grey first, as §8.4.1 does), bicubic to S x S;
  the output is resized back to the input's own size;
* ``sr`` (4x): the input is the low-resolution image; it is resized to (S/4) x (S/4) and bicubic-
  upsampled to S (the condition); the output is resized to 4x the input's width and height;
* ``derain`` / ``turbulence``: bicubic to S x S and back to the input size.

The sampler is ``model.sampler`` (``--model.sampler sr3`` on the command line, or ``ilvr``,
``replacement``, ``cfg``, ``bi_noising``). Outputs are ``<stem>.png`` in
``<run>/predictions/<sampler>_<steps>steps/`` with ``manifest.json`` (input, output, sizes,
sampler, steps, NFE counted, seed).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch
from torch.utils.data import Dataset

from datamodules.bi_noising.layouts import IMAGE_SUFFIXES, list_images
from datamodules.bi_noising.tasks import SR_FACTOR, bicubic, condition, to_gray
from datamodules.lfg_shadow.transforms import load_rgb, save_rgb
from lightning_modules.components.predict_outputs import predictions_root


class PredictInputs(Dataset):
    """The user's degraded images at native size (module docstring)."""

    def __init__(self, root: str) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"data.predict_root {self.root} is not a folder")
        self.images = list_images(self.root)
        if not self.images:
            raise FileNotFoundError(f"data.predict_root {self.root} holds no image files ({', '.join(IMAGE_SUFFIXES)})")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.images[index]
        return {"degraded_native": load_rgb(path), "name": path.stem, "input_path": str(path)}


def model_condition(task: str, image: torch.Tensor, size: int) -> torch.Tensor:
    """A native-size degraded image ``[3, h, w]`` -> the condition ``[3, S, S]`` (module docstring)."""
    if task == "sr":
        return condition(task, bicubic(image, (size // SR_FACTOR, size // SR_FACTOR)), size)
    if task == "colorization":
        image = to_gray(image)
    return condition(task, bicubic(image, (size, size)), size)


def output_size(task: str, height: int, width: int) -> tuple[int, int]:
    return (height * SR_FACTOR, width * SR_FACTOR) if task == "sr" else (height, width)


def predict_batch(module: Any, batch: Mapping[str, Any], batch_idx: int) -> list[Path]:
    """Restore one predict batch; write PNGs and ``manifest.json``; return the files."""
    size, steps, task = module.image_size, int(module.num_sampling_steps), module.task
    sampler_name = module.sampler.name
    folder = predictions_root(module._trainer) / f"{sampler_name}_{steps}steps"
    folder.mkdir(parents=True, exist_ok=True)
    module.predictions_dir = str(folder)
    if "degraded_native" in batch:
        sources = list(batch["degraded_native"])
        conditions = torch.stack([model_condition(task, s, size) for s in sources])
        sizes = [output_size(task, *s.shape[-2:]) for s in sources]
        names, inputs = list(batch["name"]), list(batch["input_path"])
    else:  # a validation split: conditions already at model size
        conditions = batch["condition"]
        names = list(batch.get("name") or [f"batch{batch_idx:04d}_{i:03d}" for i in range(len(conditions))])
        sizes, inputs = [(size, size)] * len(names), [None] * len(names)
    generator = torch.Generator(device=module.device).manual_seed(module.predict_seed + batch_idx)
    outputs = module.restore(conditions, generator=generator)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() and batch_idx > 0 else {
        "paper": "renoising (thesis 001 Ch. 8, Bi-Noising)", "task": task, "sampler": sampler_name, "num_steps": steps,
        "nfe": module.nfe(steps), "model_resolution": f"{size}x{size}",
        "resize": "bicubic to the model resolution and back (SR: outputs are 4x the input size)", "items": []}
    written = []
    for i, name in enumerate(names):
        out = bicubic(outputs[i].float().cpu(), sizes[i])
        path = folder / f"{name}.png"
        save_rgb(out, path)
        written.append(path)
        manifest["items"].append({"input": inputs[i], "output": path.name, "height": int(sizes[i][0]),
                                  "width": int(sizes[i][1]), "network_calls": int(module.last_network_calls),
                                  "seed": module.predict_seed + batch_idx})
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return written


__all__ = ["PredictInputs", "model_condition", "output_size", "predict_batch"]

"""``predict`` for Bi-Noising: the user's degraded images in, restored images out (thesis 001 Ch. 8, §8.4).

Inputs (``data.predict_root``): a file, a list, a folder (recursive, sorted) or a manifest
(``datamodules.predict_inputs.expand_inputs``), any size and aspect ratio; every one is processed
(``UserInputsPredictMixin``: same-size batches, no batch limit). Mapping to the model
(``S = model.image_size``; ``stretch``, as the thesis resizes its test images) and back, per task:

* ``colorization``: RGB mean (a colour input is made grey first, as §8.4.1 does), bicubic to S x S;
  the output is resized back to the input's own size;
* ``sr`` (4x): the input is the low-resolution image; it is resized to (S/4) x (S/4) and bicubic-
  upsampled to S (the condition); the output is resized to 4x the input's width and height;
* ``derain`` / ``turbulence``: bicubic to S x S and back to the input size.

The sampler is ``model.sampler`` (``--model.sampler sr3`` on the command line, or ``ilvr``,
``replacement``, ``cfg``, ``bi_noising``). Outputs are ``<input name>.png`` (never overwritten,
``components.predict_outputs``) in ``<run>/predictions/<sampler>_<steps>steps/`` with
``manifest.json`` (input, output, size, network calls, seed; settings: task, sampler, steps, NFE).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import torch
from torch.utils.data import Dataset

from datamodules.bi_noising.layouts import IMAGE_SUFFIXES
from datamodules.bi_noising.tasks import SR_FACTOR, bicubic, condition, to_gray
from datamodules.lfg_shadow.transforms import load_rgb
from datamodules.predict_inputs import expand_inputs, placement_for, unique_names
from lightning_modules.components.predict_outputs import names_of


class PredictInputs(Dataset):
    """The user's degraded images at native size (module docstring)."""

    def __init__(self, root: Union[str, Sequence[str]]) -> None:
        self.files = expand_inputs(root, key="data.predict_root", extensions=IMAGE_SUFFIXES)
        self.names = unique_names(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.files[index]
        return {"degraded_native": load_rgb(path), "name": self.names[index], "path": str(path)}


def model_condition(task: str, image: torch.Tensor, size: int) -> torch.Tensor:
    """A native-size degraded image ``[3, h, w]`` -> the condition ``[3, S, S]`` (module docstring)."""
    if task == "sr":
        return condition(task, bicubic(image, (size // SR_FACTOR, size // SR_FACTOR)), size)
    if task == "colorization":
        image = to_gray(image)
    return condition(task, bicubic(image, (size, size)), size)


def predict_batch(module: Any, batch: Mapping[str, Any], batch_idx: int) -> list[Path]:
    """Restore one predict batch; write PNGs and ``manifest.json``; return the files."""
    size, steps, task = module.image_size, int(module.num_sampling_steps), module.task
    sampler_name = module.sampler.name
    writer = module.prediction_writer(f"{sampler_name}_{steps}steps", {
        "paper": "renoising (thesis 001 Ch. 8, Bi-Noising)", "task": task, "sampler": sampler_name, "num_steps": steps,
        "nfe": module.nfe(steps), "model_resolution": f"{size}x{size}", "predict_seed": module.predict_seed,
        "resize": "stretch: bicubic to the model resolution and back (SR: outputs are exactly 4x the input size)"})
    if "degraded_native" in batch:
        sources = batch["degraded_native"]
        conditions = torch.stack([model_condition(task, s, size) for s in sources])
        height, width = (int(v) for v in sources.shape[-2:])
        out_batch: dict[str, Any] = {
            "name": batch["name"], "path": batch["path"],
            "placement": [placement_for(height, width, size, size, "stretch")] * len(sources),
            "output_scale": [float(SR_FACTOR) if task == "sr" else 1.0] * len(sources)}
    else:  # a validation split: conditions already at model size
        conditions = batch["condition"]
        out_batch = {"name": names_of(batch, batch_idx, conditions.shape[0])}
    seed = module.predict_seed + batch_idx
    generator = torch.Generator(device=module.device).manual_seed(seed)
    outputs = module.restore(conditions, generator=generator)
    return module.write_batch_images(writer, outputs, out_batch, batch_idx,
                                     network_calls=int(module.last_network_calls), seed=seed)


__all__ = ["PredictInputs", "model_condition", "predict_batch"]

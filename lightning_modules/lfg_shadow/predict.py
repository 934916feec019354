"""``predict`` for LFG-Diffusion: the user's shadow images + masks in, shadow-free images out (thesis 001 Ch. 7 §7.3, §7.4).

Inputs (``data.predict_root``): a file, a list, a folder (recursive, sorted) or a manifest
(``datamodules.predict_inputs.expand_inputs``), any size and aspect ratio; in a folder, files
whose stem ends in ``_mask`` are the masks, not inputs. An image's mask is
``<stem>_mask.<ext>`` beside it, or ``<predict_mask_root>/<stem>.<ext>``. Masks must be binary
(white = shadow) and of the image's size; both are errors naming the file. Every input is
processed (``UserInputsPredictMixin``: same-size batches, no batch limit).

Mapping (``stretch``, the thesis's own: §7.4 interpolates every image to 256x256): the image is
resized to the model's ``image_size`` square (bicubic), the mask with nearest neighbours, then
dilated with ``k = mask_dilation`` (21, §7.4) at that resolution; the output is resized back to
the input's own width and height (``restore_from_canvas``). Outputs are ``<input name>.png``
(``components.predict_outputs``: never overwritten) in ``<run>/predictions/<sampler>_<steps>steps/``
with ``manifest.json`` listing input, mask, output, size and seed under the settings (sampler,
steps, NFE, model resolution, dilation).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import torch
from torch.utils.data import Dataset

from datamodules.lfg_shadow.layouts import IMAGE_SUFFIXES
from datamodules.lfg_shadow.transforms import dilate_mask, load_mask, load_rgb, resize_image, resize_mask
from datamodules.predict_inputs import expand_inputs, placement_for, unique_names
from lightning_modules.components.predict_outputs import names_of

MASK_SUFFIX = "_mask"


class PredictInputs(Dataset):
    """The user's shadow images and their masks (module docstring); one item per image, native size."""

    def __init__(self, root: Union[str, Sequence[str]], mask_root: Optional[str] = None,
                 binarize_threshold: Optional[float] = None) -> None:
        self.mask_root = Path(mask_root).expanduser() if mask_root else None
        self.threshold = binarize_threshold
        self.files = expand_inputs(root, key="data.predict_root", extensions=IMAGE_SUFFIXES,
                                   exclude=lambda path: path.stem.endswith(MASK_SUFFIX))
        self.names = unique_names(self.files)
        self.masks = [self._mask_for(p) for p in self.files]

    def _mask_for(self, image: Path) -> Path:
        if self.mask_root is not None:
            candidates = [self.mask_root / f"{image.stem}{ext}" for ext in IMAGE_SUFFIXES]
        else:
            candidates = [image.with_name(f"{image.stem}{MASK_SUFFIX}{ext}") for ext in IMAGE_SUFFIXES]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        where = self.mask_root or image.parent
        raise FileNotFoundError(f"shadow image {image} has no mask ({candidates[0].name} or another image type in {where})")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_path, mask_path = self.files[index], self.masks[index]
        image, mask = load_rgb(image_path), load_mask(mask_path, self.threshold)
        if tuple(mask.shape[-2:]) != tuple(image.shape[-2:]):
            raise ValueError(f"mask {mask_path} is {mask.shape[-1]}x{mask.shape[-2]} but its image {image_path} "
                             f"is {image.shape[-1]}x{image.shape[-2]}; masks must match their image's size")
        return {"shadow": image, "raw_mask": mask, "name": self.names[index], "path": str(image_path),
                "mask_path": str(mask_path)}


def predict_batch(module: Any, batch: Mapping[str, Any], batch_idx: int) -> list[Path]:
    """Remove the shadows of one predict batch and write PNGs plus ``manifest.json``; returns the files."""
    size, steps = module.image_size, int(module.num_sampling_steps)
    sampler_name = getattr(module.sampler, "name", type(module.sampler).__name__)
    writer = module.prediction_writer(f"{sampler_name}_{steps}steps", {
        "paper": "shadow_removal (thesis 001 Ch. 7, LFG-Diffusion)", "sampler": sampler_name, "num_steps": steps,
        "nfe": module.nfe(steps), "model_resolution": f"{size}x{size}", "mask_dilation": module.mask_dilation,
        "predict_seed": module.predict_seed,
        "resize": "stretch: bicubic to the model resolution and back to the input size; masks nearest"})
    if "raw_mask" not in batch:  # predicting on a validation split: already at model size and dilated
        shadows, masks = batch["shadow"], batch["mask"]
        out_batch: dict[str, Any] = {"name": names_of(batch, batch_idx, shadows.shape[0])}
        mask_files = None
    else:
        shadows = resize_image(batch["shadow"], size)
        masks = dilate_mask(resize_mask(batch["raw_mask"], size), module.mask_dilation)
        height, width = batch["shadow"].shape[-2:]
        out_batch = {"name": batch["name"], "path": batch["path"],
                     "placement": [placement_for(int(height), int(width), size, size, "stretch")] * shadows.shape[0]}
        mask_files = list(batch["mask_path"])
    seed = module.predict_seed + batch_idx
    generator = torch.Generator(device=module.device).manual_seed(seed)
    outputs = module.remove_shadows(shadows, masks, generator=generator)
    return module.write_batch_images(writer, outputs, out_batch, batch_idx, mask=mask_files, seed=seed)


__all__ = ["PredictInputs", "predict_batch"]

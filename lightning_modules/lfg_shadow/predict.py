"""``predict`` for LFG-Diffusion: the user's shadow images + masks in, shadow-free images out (thesis 001 Ch. 7 §7.3, §7.4).

Everything predict-specific for this paper lives in this file, so a shared predict layer can
replace it in one place.

Inputs (``data.predict_root``): every image file in the folder (any size and aspect ratio)
whose stem does not end in ``_mask``; its mask is ``<stem>_mask.<ext>`` beside it, or
``<predict_mask_root>/<stem>.<ext>``. Masks must be binary (white = shadow) and of the image's
size; both are errors naming the file.

Mapping: the image is resized to the model's ``image_size`` square (bicubic, the training
resize; the thesis trains and evaluates at 256x256), the mask with nearest neighbours, then
dilated with ``k = mask_dilation`` (21, §7.4) at that resolution; the result is resized back to
the input's own width and height (bicubic). Outputs are ``<stem>.png`` in
``<run>/predictions/<sampler>_<steps>steps/`` with ``manifest.json`` listing input, mask, output,
sizes, sampler, steps, NFE and seed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch.utils.data import Dataset

from datamodules.lfg_shadow.layouts import IMAGE_SUFFIXES
from datamodules.lfg_shadow.transforms import dilate_mask, load_mask, load_rgb, resize_image, resize_mask, save_rgb
from lightning_modules.components.predict_outputs import predictions_root

MASK_SUFFIX = "_mask"


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


class PredictInputs(Dataset):
    """The user's shadow images and their masks (module docstring); one item per image, native size."""

    def __init__(self, root: str, mask_root: Optional[str] = None, binarize_threshold: Optional[float] = None) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"data.predict_root {self.root} is not a folder")
        self.mask_root = Path(mask_root).expanduser() if mask_root else None
        self.threshold = binarize_threshold
        files = _images(self.root)
        self.images = [p for p in files if not p.stem.endswith(MASK_SUFFIX)]
        if not self.images:
            raise FileNotFoundError(f"data.predict_root {self.root} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        self.masks = [self._mask_for(p) for p in self.images]

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
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_path, mask_path = self.images[index], self.masks[index]
        image, mask = load_rgb(image_path), load_mask(mask_path, self.threshold)
        if tuple(mask.shape[-2:]) != tuple(image.shape[-2:]):
            raise ValueError(f"mask {mask_path} is {mask.shape[-1]}x{mask.shape[-2]} but its image {image_path} "
                             f"is {image.shape[-1]}x{image.shape[-2]}; masks must match their image's size")
        return {"shadow": image, "raw_mask": mask, "name": image_path.stem, "input_path": str(image_path),
                "mask_path": str(mask_path)}


def predict_batch(module: Any, batch: Mapping[str, Any], batch_idx: int) -> list[Path]:
    """Remove the shadows of one predict batch and write PNGs plus ``manifest.json``; returns the files."""
    size, steps = module.image_size, int(module.num_sampling_steps)
    sampler_name = getattr(module.sampler, "name", type(module.sampler).__name__)
    folder = predictions_root(module._trainer) / f"{sampler_name}_{steps}steps"
    folder.mkdir(parents=True, exist_ok=True)
    module.predictions_dir = str(folder)
    if "raw_mask" not in batch:  # predicting on a validation split: already at model size and dilated
        shadows, masks = batch["shadow"], batch["mask"]
        names = list(batch.get("name") or [f"batch{batch_idx:04d}_{i:03d}" for i in range(len(shadows))])
        sizes = [tuple(shadows.shape[-2:])] * len(names)
        inputs, mask_files = [None] * len(names), [None] * len(names)
    else:
        shadows = torch.stack([resize_image(s, size) for s in batch["shadow"]]) if isinstance(batch["shadow"], list) \
            else resize_image(batch["shadow"], size)
        raw = batch["raw_mask"]
        masks = torch.stack([resize_mask(m, size) for m in raw]) if isinstance(raw, list) else resize_mask(raw, size)
        masks = dilate_mask(masks, module.mask_dilation)
        source = batch["shadow"]
        sizes = [tuple(s.shape[-2:]) for s in source]
        names, inputs, mask_files = list(batch["name"]), list(batch["input_path"]), list(batch["mask_path"])
    generator = torch.Generator(device=module.device).manual_seed(module.predict_seed + batch_idx)
    outputs = module.remove_shadows(shadows, masks, generator=generator)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() and batch_idx > 0 else {
        "paper": "shadow_removal (thesis 001 Ch. 7, LFG-Diffusion)", "sampler": sampler_name, "num_steps": steps,
        "nfe": module.nfe(steps), "model_resolution": f"{size}x{size}", "mask_dilation": module.mask_dilation,
        "resize": "bicubic to the model resolution and back to the input size; masks nearest", "items": []}
    written = []
    for i, name in enumerate(names):
        out = resize_image(outputs[i].float().cpu(), sizes[i])
        path = folder / f"{name}.png"
        save_rgb(out, path)
        written.append(path)
        manifest["items"].append({"input": inputs[i], "mask": mask_files[i], "output": path.name,
                                  "height": int(sizes[i][0]), "width": int(sizes[i][1]),
                                  "seed": module.predict_seed + batch_idx})
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return written


__all__ = ["PredictInputs", "predict_batch"]

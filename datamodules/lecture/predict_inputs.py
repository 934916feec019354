"""The user's own images for ``predict`` of the translation models (pix2pix, CycleGAN).

Self-contained stand-in for the suite's shared predict layer (written in parallel on another
branch; the lead swaps this for it): every image file under ``predict_root`` (or each file of a
list) is read at its own size and aspect ratio, in sorted order, as ``{"image": [C, H, W] in [-1, 1],
"name": file stem, "path": str}``. Loaders use batch size 1 so that sizes may differ; the module pads
each image to its generator's stride and crops the output back (``lecture_predict``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.image_folder import DEFAULT_EXTENSIONS, find_images, normalise_extensions, read_image


def _collect(inputs: Union[str, Sequence[str]]) -> list[Path]:
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    files: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            files += find_images(path, normalise_extensions(DEFAULT_EXTENSIONS), recursive=True)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"data.predict_root: {path} is neither an image file nor a folder")
    stems = [p.stem for p in files]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise ValueError(f"data.predict_root: several inputs share the name(s) {duplicates}; outputs are named after inputs")
    return files


class PredictImageFiles(Dataset):
    """Image files read at full size (module docstring)."""

    def __init__(self, inputs: Union[str, Sequence[str]], channels: int = 3) -> None:
        self.files = _collect(inputs)
        self.channels = int(channels)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.files[index]
        array = np.asarray(read_image(path, self.channels), dtype=np.uint8)
        if array.ndim == 2:
            array = array[:, :, None]
        image = torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(127.5).sub(1.0)
        return {"image": image, "name": path.stem, "path": str(path)}


__all__ = ["PredictImageFiles"]

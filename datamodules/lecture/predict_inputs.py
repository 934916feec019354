"""The user's images for ``predict`` of the translation models (pix2pix, CycleGAN).

Read through the suite's predict layer (``datamodules.predict_inputs``; docs/architecture.md,
"The predict contract"): ``predict_root`` is a file, a list, a folder (recursive, sorted) or a
manifest, and every image it names is read at its own size and aspect ratio as
``{"image": [C, H, W] in [-1, 1], "name": unique output stem, "path": str}``. The datamodules
batch only same-size images (``UserInputsPredictMixin``, no batch limit); the module pads each
image to its generator's stride and crops the output back (``lecture_predict.translate_any_size``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence, Union

from torch.utils.data import Dataset

from datamodules.image_folder import DEFAULT_EXTENSIONS, normalise_extensions
from datamodules.predict_inputs import expand_inputs, load_image_tensor, unique_names


class PredictImageFiles(Dataset):
    """Image files read at full size (module docstring)."""

    def __init__(self, inputs: Union[str, Path, Sequence[Union[str, Path]]], channels: int = 3) -> None:
        self.files = expand_inputs(inputs, key="data.predict_root", extensions=normalise_extensions(DEFAULT_EXTENSIONS))
        self.names = unique_names(self.files)
        self.channels = int(channels)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.files[index]
        return {"image": load_image_tensor(path, self.channels), "name": self.names[index], "path": str(path)}


__all__ = ["PredictImageFiles"]

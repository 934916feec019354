"""The predict output layer of the lecture's models, in one place (a stand-in for the shared one).

Another branch builds the suite's shared predict input/output layer; until it lands, the lecture's
GAN/VAE modules write their outputs through this file only, so the lead can swap it in one go:

* :func:`predictions_folder`: ``<run folder>/predictions/<kind>/`` (the logger's folder, read without
  a collective; ``.`` when there is no trainer);
* :class:`PredictionWriter`: ``save(name, image)`` writes ``<name>.png`` and records it;
  ``finish()`` writes ``manifest.json`` (one entry per output: file, source input, size, extra
  fields), ``manifest_rank<r>.json`` per rank under DDP;
* :func:`pad_to_multiple` / :func:`translate_any_size`: the user's images of any size and aspect
  ratio go through a fully-convolutional generator by reflection-padding to its stride multiple
  and cropping the output back to the input's size (no resizing, so nothing is distorted).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_modules.components.image_io import save_grid, to_uint8, _pil
from lightning_modules.components.predict_outputs import predictions_root


def predictions_folder(module: Any, kind: str) -> Path:
    """``<run folder>/predictions/<kind>`` (the suite's one predictions root; no collective)."""
    return predictions_root(getattr(module, "_trainer", None)) / kind


class PredictionWriter:
    """Writes PNGs named after their inputs and a manifest (module docstring)."""

    def __init__(self, folder: Path, rank: int = 0, world_size: int = 1) -> None:
        self.folder = Path(folder)
        self.rank, self.world_size = rank, world_size
        self.entries: list[dict[str, Any]] = []
        self.folder.mkdir(parents=True, exist_ok=True)

    def save(self, name: str, image: Tensor, source: Optional[str] = None, **extra: Any) -> Path:
        """Save one ``[C, H, W]`` image in [-1, 1] as ``<name>.png``."""
        path = self.folder / f"{name}.png"
        _pil(to_uint8(image[None])[0]).save(path)
        self.entries.append({"file": path.name, "source": source, "height": int(image.shape[-2]),
                             "width": int(image.shape[-1]), **extra})
        return path

    def save_grid(self, name: str, images: Tensor, nrow: Optional[int] = None, **extra: Any) -> Path:
        """Save a batch as one figure ``<name>.png`` (interpolation strips, sample grids)."""
        path = save_grid(images, self.folder / f"{name}.png", nrow=nrow)
        self.entries.append({"file": path.name, "source": None, "count": int(images.shape[0]), **extra})
        return path

    def save_file(self, name: str, write: Callable[[Path], None], **extra: Any) -> Path:
        """Save any other file (e.g. a scatter plot) through ``write(path)``."""
        path = self.folder / name
        write(path)
        self.entries.append({"file": path.name, "source": None, **extra})
        return path

    def finish(self) -> Path:
        name = "manifest.json" if self.world_size == 1 else f"manifest_rank{self.rank}.json"
        path = self.folder / name
        path.write_text(json.dumps({"outputs": self.entries}, indent=2))
        return path


def pad_to_multiple(images: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Reflection-pad ``[B, C, H, W]`` on the bottom/right to multiples of ``multiple``."""
    h, w = images.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return images, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(images, (0, pw, 0, ph), mode=mode), (h, w)


@torch.no_grad()
def translate_any_size(generator: Callable[[Tensor], Tensor], image: Tensor, multiple: int) -> Tensor:
    """Run a fully-convolutional generator on one image of any size; output has the input's size."""
    padded, (h, w) = pad_to_multiple(image, multiple)
    return generator(padded)[..., :h, :w]


class WritesPredictions:
    """Mixin for a LightningModule: one :class:`PredictionWriter` per ``predict`` run.

    ``self.writer(kind)`` opens ``predictions/<kind>/`` on first use; the manifests are written when
    predict ends; ``self.predictions_dir`` names the last folder (printed by the CLI, read by tests).
    """

    predictions_dir: Optional[str] = None

    def writer(self, kind: str) -> PredictionWriter:
        writers = self.__dict__.setdefault("_prediction_writers", {})
        if kind not in writers:
            trainer = getattr(self, "_trainer", None)
            world = trainer.world_size if trainer is not None else 1
            rank = trainer.global_rank if trainer is not None else 0
            writers[kind] = PredictionWriter(predictions_folder(self, kind), rank, world)
            self.predictions_dir = str(writers[kind].folder)
        return writers[kind]

    def on_predict_end(self) -> None:
        for writer in self.__dict__.pop("_prediction_writers", {}).values():
            writer.finish()


__all__ = ["PredictionWriter", "WritesPredictions", "pad_to_multiple", "predictions_folder", "translate_any_size"]

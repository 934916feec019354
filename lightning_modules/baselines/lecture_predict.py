"""The predict output layer of the lecture's models, on the suite's shared one.

The lecture's GAN/VAE modules write through this file, which is a thin layer over
``components.predict_outputs`` (docs/architecture.md, "The predict contract"):

* :func:`predictions_folder`: ``<run folder>/predictions/<kind>/`` (``predictions_root``: no collective);
* :class:`PredictionWriter` (the shared writer): ``save(name, image)`` writes ``<name>[__<variant>].png``
  (a taken name gets ``_1``: never overwritten) and records it in ``manifest.json`` (input ->
  outputs, with size and extra fields; ``manifest.rank<r>.json`` on other ranks); ``save_grid`` /
  ``save_file`` write figures and other files the same way;
* :func:`request_seeds` / :func:`seeded_normal`: sampling requests (``--data.num_samples N
  [--data.labels [..]]``, ``datamodules.predict_inputs.SampleRequests``) give each sample its own
  seed, so sample ``i`` is ``sample<i>__seed<s>[_label<c>].png`` whatever the batch size;
* :func:`pad_to_multiple` / :func:`translate_any_size`: the user's images of any size and aspect
  ratio go through a fully-convolutional generator by reflection-padding to its stride multiple
  and cropping the output back to the input's size (no resizing, so nothing is distorted).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_modules.components.image_io import save_grid
from lightning_modules.components.predict_outputs import PredictionWriter as _SharedWriter
from lightning_modules.components.predict_outputs import predictions_root


def predictions_folder(module: Any, kind: str) -> Path:
    """``<run folder>/predictions/<kind>`` (the suite's one predictions root; no collective)."""
    return predictions_root(getattr(module, "_trainer", None)) / kind


class PredictionWriter(_SharedWriter):
    """The shared writer with the lecture's three calls (module docstring)."""

    def __init__(self, folder: Path, rank: int = 0, world_size: int = 1,
                 settings: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(folder, settings, rank=rank)

    def save(self, name: str, image: Tensor, source: Optional[Any] = None, variant: str = "", **extra: Any) -> Path:
        """Save one ``[C, H, W]`` image in [-1, 1] as ``<name>[__<variant>].png`` and record it."""
        path = self.save_image(image.float().cpu(), name, variant)
        self.record(source if source is not None else name, [path], size=[int(image.shape[-2]), int(image.shape[-1])],
                    **extra)
        return path

    def save_grid(self, name: str, images: Tensor, nrow: Optional[int] = None, **extra: Any) -> Path:
        """Save a batch as one figure ``<name>.png`` (interpolation strips, sample grids)."""
        path = save_grid(images, self.path_for(name, "", ".png"), nrow=nrow)
        self.record(f"figure {name}", [path], count=int(images.shape[0]), **extra)
        return path

    def save_file(self, name: str, write: Callable[[Path], None], **extra: Any) -> Path:
        """Save any other file (e.g. a scatter plot) through ``write(path)``."""
        path = self.path_for(Path(name).stem, "", Path(name).suffix)
        write(path)
        self.record(f"file {name}", [path], **extra)
        return path

    def finish(self) -> Path:
        return self.write_manifest()


def request_seeds(batch: Mapping[str, Any], predict_seed: int) -> Optional[tuple[list[int], list[int]]]:
    """``(sample indices, seeds)`` of a batch of sampling requests (seed ``predict_seed + data seed
    + i``, as ``DiffusionModule.predict_step``), or ``None`` for a batch of data items."""
    if "seed" not in batch or "sample_index" not in batch:
        return None
    return [int(i) for i in batch["sample_index"]], [int(predict_seed) + int(s) for s in batch["seed"]]


def seeded_normal(seeds: Sequence[int], shape: Sequence[int], device: Any, uniform: bool = False) -> Tensor:
    """One ``shape`` draw per seed, stacked: ``[len(seeds), *shape]`` (N(0, 1), or U[0, 1) with ``uniform``)."""
    draw = torch.rand if uniform else torch.randn
    return torch.stack([draw(tuple(shape), generator=torch.Generator(device=device).manual_seed(int(seed)), device=device)
                        for seed in seeds])


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
            ckpt = getattr(trainer, "ckpt_path", None) if trainer is not None else None
            writers[kind] = PredictionWriter(predictions_folder(self, kind), rank, world,
                                             {"module": type(self).__name__, "checkpoint": str(ckpt) if ckpt else None})
            self.predictions_dir = str(writers[kind].folder)
        return writers[kind]

    def on_predict_end(self) -> None:
        for writer in self.__dict__.pop("_prediction_writers", {}).values():
            writer.finish()


__all__ = ["PredictionWriter", "WritesPredictions", "pad_to_multiple", "predictions_folder", "request_seeds",
           "seeded_normal", "translate_any_size"]

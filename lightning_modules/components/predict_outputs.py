"""The suite's one predict-output writer: outputs named after their input, a manifest, no overwrite.

Every paper's ``predict_step`` writes through :class:`PredictionWriter` (``docs/architecture.md``,
"The predict contract"):

* an output is named ``<input stem>[__<variant>].<ext>``, the variant being what distinguishes
  several outputs of one input (``alpha0.50``, ``seed3``, ``euler``); a name already taken (by
  this run or an earlier one in the same folder) gets ``_1``, ``_2``, ... so nothing is
  overwritten;
* ``manifest.json`` in the folder lists, for each input, its outputs and the settings used
  (sampler, steps, guidance, seeds, checkpoint), rewritten after every batch so an interrupted
  run still describes what it wrote. Under several ranks each rank writes
  ``manifest.rank<r>.json`` (the items of its share); a later run into the same folder writes
  ``manifest_1.json`` (the earlier manifest is kept, like the earlier outputs).

:func:`predictions_root` is the one place that decides where predictions go
(``<run folder>/predictions``), so the run-folder layout can be changed in one line.
:class:`PredictOutputsMixin` gives a LightningModule ``self.prediction_writer(subdir, settings)``
and the sampler-step progress bar (``callbacks.sampler_progress``) during ``predict``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from PIL import Image
from torch import Tensor

from lightning_modules.components.image_io import to_uint8
from lightning_modules.components.run_dir import run_dir


def predictions_root(trainer: Any) -> Path:
    """``<run folder>/predictions`` (``components.run_dir``: no collective), else
    ``./predictions`` without a trainer. The one place that decides where outputs go."""
    if trainer is None:
        return Path("predictions")
    return Path(run_dir(trainer)) / "predictions"


def variant_tag(**parts: Any) -> str:
    """``variant_tag(alpha=0.5, seed=3)`` -> ``"alpha0.50_seed3"`` (floats with two decimals)."""
    tags = []
    for key, value in parts.items():
        if value is None:
            continue
        text = f"{value:.2f}" if isinstance(value, float) else str(value)
        tags.append(f"{key}{text}")
    return "_".join(tags)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", str(text)).strip("_") or "output"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class PredictionWriter:
    """Writes one predict run's outputs into ``folder`` and keeps its ``manifest.json``.

    Args:
        folder: the output folder (created).
        settings: what produced the outputs (sampler, steps, guidance, seed, checkpoint...),
            stored once at the top of the manifest.
        rank: the process rank; ranks other than 0 write ``manifest.rank<r>.json``.
    """

    def __init__(self, folder: Path, settings: Optional[Mapping[str, Any]] = None, rank: int = 0) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.settings = dict(settings or {})
        stem = "manifest" if rank == 0 else f"manifest.rank{rank}"
        self.manifest_path, count = self.folder / f"{stem}.json", 1
        while self.manifest_path.exists():  # an earlier run wrote into this folder: keep its manifest
            self.manifest_path, count = self.folder / f"{stem}_{count}.json", count + 1
        self.items: list[dict[str, Any]] = []
        self._taken: set[str] = set()

    def path_for(self, name: str, variant: str = "", ext: str = ".png") -> Path:
        """A new path ``<name>[__<variant>]<ext>`` that no earlier output (on disk or in this run) has."""
        stem = _safe(Path(str(name)).stem if Path(str(name)).suffix.lower() in (".png", ".jpg", ".jpeg") else name)
        if variant:
            stem = f"{stem}__{_safe(variant)}"
        candidate, count = f"{stem}{ext}", 1
        while candidate in self._taken or (self.folder / candidate).exists():
            candidate, count = f"{stem}_{count}{ext}", count + 1
        self._taken.add(candidate)
        return self.folder / candidate

    def save_image(self, image: Tensor, name: str, variant: str = "") -> Path:
        """Write ``image [C, H, W]`` in [-1, 1] as PNG under a fresh name; return its path."""
        path = self.path_for(name, variant, ".png")
        array = to_uint8(image.unsqueeze(0))[0].numpy()
        Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)
        return path

    def record(self, input: Any, outputs: Sequence[Path], **details: Any) -> None:
        """Add one manifest item (``input`` is a path, a prompt, or a sample index) and rewrite the manifest."""
        item = {"input": _jsonable(input), "outputs": [self._relative(Path(p)) for p in outputs]}
        item.update({key: _jsonable(value) for key, value in details.items()})
        self.items.append(item)
        self.write_manifest()

    def _relative(self, path: Path) -> str:
        """``path`` relative to the folder (``name.png``, ``painting/timelapse.mp4``), else as given."""
        try:
            return path.resolve().relative_to(self.folder.resolve()).as_posix()
        except ValueError:
            return str(path)

    def write_manifest(self) -> Path:
        data = {"folder": str(self.folder), "settings": _jsonable(self.settings), "items": self.items}
        self.manifest_path.write_text(json.dumps(data, indent=2) + "\n")
        return self.manifest_path


class PredictOutputsMixin:
    """For LightningModules: ``self.prediction_writer(subdir, settings)`` and ``predictions_dir``.

    The writer is created once per predict run and folder (a later ``predict`` in the same
    process gets a new one); ``self.predictions_dir`` names the folder for ``cli.py``'s summary.
    """

    predictions_dir: Optional[str] = None

    def prediction_writer(self, subdir: str, settings: Optional[Mapping[str, Any]] = None) -> PredictionWriter:
        trainer = getattr(self, "_trainer", None)
        folder = predictions_root(trainer) / _safe(subdir)
        writers: dict[tuple[int, str], PredictionWriter] = self.__dict__.setdefault("_prediction_writers", {})
        key = (id(trainer), str(folder))
        if key not in writers:
            rank = int(getattr(trainer, "global_rank", 0) or 0)
            full = dict(settings or {})
            ckpt = getattr(trainer, "ckpt_path", None) if trainer is not None else None
            full.setdefault("checkpoint", str(ckpt) if ckpt else None)
            released = getattr(self, "released_checkpoint", None)  # the authors' weights the module was built from
            if released:
                full.setdefault("released_checkpoint", str(released))
            writers.clear()
            writers[key] = PredictionWriter(folder, full, rank=rank)
        self.predictions_dir = str(folder)
        return writers[key]

    def write_batch_images(
        self, writer: PredictionWriter, images: Tensor, batch: Mapping[str, Any], batch_idx: int,
        variants: Optional[Sequence[str]] = None, max_side: Optional[int] = None, **details: Any,
    ) -> list[Path]:
        """Write one image per item of ``batch``: mapped back to its input's frame when the batch
        carries ``placement`` (and ``output_scale``, e.g. the SR factor), named after ``name``
        (+ the item's variant), and recorded in the manifest with ``details``."""
        from datamodules.predict_inputs import restore_from_canvas

        names = names_of(batch, batch_idx, images.shape[0])
        placements = batch.get("placement")
        scales = batch.get("output_scale")
        paths = []
        for row, name in enumerate(names):
            output = images[row]
            if placements is not None:
                scale = float(scales[row]) if scales is not None else 1.0
                output = restore_from_canvas(output.float().cpu(), placements[row], scale, max_side=max_side)
            variant = variants[row] if variants is not None else ""
            path = writer.save_image(output, name, variant)
            source = batch["path"][row] if "path" in batch else f"predict split, batch {batch_idx} item {row}"
            item_details = {key: (value[row] if isinstance(value, (list, tuple)) else value) for key, value in details.items()}
            writer.record(source, [path], size=list(output.shape[-2:]), **item_details)
            paths.append(path)
        return paths

    #: ``False`` for modules whose predict does not sample (a tokenizer): Lightning's batch bar stays.
    predict_counts_sampler_steps: bool = True

    def configure_callbacks(self) -> list[Any]:
        """Adds the sampler-step progress bar for ``predict`` (``callbacks.sampler_progress``)."""
        from callbacks.sampler_progress import SamplerStepProgress

        parent = super().configure_callbacks() if hasattr(super(), "configure_callbacks") else []
        parent = list(parent) if isinstance(parent, (list, tuple)) else ([parent] if parent else [])
        return [*parent, SamplerStepProgress()] if self.predict_counts_sampler_steps else parent


def names_of(batch: Mapping[str, Any], batch_idx: int, size: int) -> list[str]:
    """The batch's input names (``name`` key), else ``batch<idx>_<i>`` placeholders."""
    names = batch.get("name")
    if names is None or isinstance(names, Tensor):
        return [f"batch{batch_idx:04d}_{i:03d}" for i in range(size)]
    return [str(n) for n in names]


def seed_generator(seed: int, device: Any) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed``."""
    return torch.Generator(device=device).manual_seed(int(seed))


__all__ = ["PredictOutputsMixin", "PredictionWriter", "names_of", "predictions_root", "variant_tag"]

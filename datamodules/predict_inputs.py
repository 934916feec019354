"""The suite's one predict-input layer: what a user names is what ``predict`` processes.

Every paper's ``predict`` reads the user's inputs through these helpers (``docs/architecture.md``,
"The predict contract"), so the next papers inherit the same behaviour:

* :func:`expand_inputs` turns what the user named (one file, a list of files, a folder, or a
  manifest: a ``.txt`` file with one path per line or a ``.json`` list) into the full sorted
  list of files; nothing is skipped silently, a missing entry is one clear error naming it;
* :func:`fit_to_canvas` brings an image of any size and aspect ratio to the model's resolution
  and returns a :class:`Placement` recording how; :func:`restore_from_canvas` maps the model's
  output back, so the output keeps the input's aspect ratio and size (times ``scale`` for
  super-resolution: a 12x8 input at scale 4 gives exactly 48x32). Two documented mappings:
  ``"pad"`` (resize the long side to the canvas and pad the rest, the default: nothing of the
  input is lost) and ``"stretch"`` (resize both sides; the output is resized back). Tiling is
  not offered: an input much larger than the canvas is generated at the canvas resolution and
  resized back, which each paper page states;
* :func:`size_grouped_batches` batches only same-size items, so variable sizes never reach
  ``torch.stack`` together;
* :func:`release_predict_limit` lifts a ``trainer.limit_predict_batches`` inherited from an
  overlay (the tiny ones set 1) with a warning, so a batch limit never truncates user inputs;
* :class:`UserInputsPredictMixin` / :func:`native_size_loader`: the one ``predict_dataloader``
  body of the datamodules whose models read the user's images at their own size (LFG-Diffusion,
  Bi-Noising, D2SM, the lecture's translation models).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
MANIFEST_EXTENSIONS: tuple[str, ...] = (".txt", ".json")
FIT_MODES: tuple[str, ...] = ("pad", "stretch")

InputSpec = Union[str, Path, Sequence[Union[str, Path]], None]


# ---------------------------------------------------------------------------------------- naming the inputs
def _folder_files(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    files = [
        path for path in folder.rglob("*")
        if path.is_file() and path.suffix.lower() in extensions
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    ]
    return sorted(files, key=lambda path: path.relative_to(folder).as_posix())


def _manifest_entries(path: Path, key: str) -> list[Path]:
    """Paths listed by a ``.txt`` (one per line, ``#`` comments) or ``.json`` (a list, or
    ``{"inputs": [...]}``) manifest; relative paths are relative to the manifest's folder."""
    text = path.read_text()
    if path.suffix.lower() == ".json":
        data = json.loads(text)
        entries = data.get("inputs") if isinstance(data, dict) else data
        if not isinstance(entries, list):
            raise ValueError(f"{key}: manifest {path} must hold a list of paths or {{'inputs': [...]}}")
        entries = [str(entry["input"] if isinstance(entry, dict) else entry) for entry in entries]
    else:
        entries = [line.strip() for line in text.splitlines()]
        entries = [line for line in entries if line and not line.startswith("#")]
    return [(Path(entry) if Path(entry).is_absolute() else path.parent / entry) for entry in entries]


def expand_inputs(
    spec: InputSpec,
    *,
    key: str = "predict inputs",
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
    exclude: Optional[Callable[[Path], bool]] = None,
) -> list[Path]:
    """Every file the user named, in order: files as given, folders expanded (recursive, sorted),
    manifests (``.txt`` / ``.json`` not matching ``extensions``) read.

    ``exclude`` drops companion files a folder holds next to the inputs (e.g. ``*_mask.png``);
    only folder contents are filtered, an explicitly named file is always kept. Raises
    ``FileNotFoundError`` naming ``key`` and the entry when one does not exist and
    ``ValueError`` when everything named expands to no file.
    """
    if spec is None:
        return []
    entries = [spec] if isinstance(spec, (str, Path)) else list(spec)
    files: list[Path] = []
    for entry in entries:
        path = Path(entry).expanduser()
        if path.is_dir():
            found = [p for p in _folder_files(path, extensions) if exclude is None or not exclude(p)]
            if not found:
                raise ValueError(f"{key}: folder {path} holds no input files ({', '.join(extensions)})")
            files.extend(found)
        elif path.is_file() and path.suffix.lower() in MANIFEST_EXTENSIONS and path.suffix.lower() not in extensions:
            listed = _manifest_entries(path, key)
            missing = [p for p in listed if not p.exists()]
            if missing:
                raise FileNotFoundError(f"{key}: manifest {path} names {missing[0]}, which does not exist")
            files.extend(expand_inputs(listed, key=key, extensions=extensions, exclude=exclude))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{key}: '{path}' is neither a file nor a folder")
    if not files:
        raise ValueError(f"{key}: {spec!r} names no input files")
    return files


def unique_names(files: Sequence[Path]) -> list[str]:
    """A distinct output stem per input: the file stem, with the parent folder (and then a
    counter) prepended only where two inputs share a stem, so no output overwrites another."""
    stems = [path.stem for path in files]
    names: list[str] = []
    seen: set[str] = set()
    for path, stem in zip(files, stems):
        name = stem if stems.count(stem) == 1 else f"{path.parent.name}_{stem}"
        base, count = name, 1
        while name in seen:
            name, count = f"{base}_{count}", count + 1
        seen.add(name)
        names.append(name)
    return names


# ---------------------------------------------------------------------------------------- sizes
@dataclass
class Placement:
    """How an input of ``height x width`` sits on a ``canvas_height x canvas_width`` model canvas.

    ``top, left, content_height, content_width`` is the box of the canvas that holds the input
    (the whole canvas for ``"stretch"``). :func:`restore_from_canvas` crops that box out of the
    model's output (at whatever resolution the output has) and resizes it to the input size.
    """

    height: int
    width: int
    canvas_height: int
    canvas_width: int
    top: int
    left: int
    content_height: int
    content_width: int
    mode: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def placement_for(height: int, width: int, canvas_height: int, canvas_width: int, mode: str = "pad") -> Placement:
    """The :class:`Placement` of a ``height x width`` input on the canvas under ``mode``."""
    if mode not in FIT_MODES:
        raise ValueError(f"fit mode {mode!r} is not one of {list(FIT_MODES)}")
    if mode == "stretch":
        return Placement(height, width, canvas_height, canvas_width, 0, 0, canvas_height, canvas_width, mode)
    scale = min(canvas_height / height, canvas_width / width)
    content_h = max(1, min(canvas_height, round(height * scale)))
    content_w = max(1, min(canvas_width, round(width * scale)))
    top, left = (canvas_height - content_h) // 2, (canvas_width - content_w) // 2
    return Placement(height, width, canvas_height, canvas_width, top, left, content_h, content_w, mode)


def _resize(image: Tensor, height: int, width: int, mode: str = "bicubic") -> Tensor:
    if tuple(image.shape[-2:]) == (height, width):
        return image
    batched = image if image.dim() == 4 else image.unsqueeze(0)
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    if mode == "bicubic":
        kwargs["antialias"] = True
    out = F.interpolate(batched.float(), size=(height, width), mode=mode, **kwargs)
    if mode == "bicubic":
        out = out.clamp(float(image.min()), float(image.max())) if image.numel() else out
    return out if image.dim() == 4 else out[0]


def fit_to_canvas(
    image: Tensor, canvas_height: int, canvas_width: int, mode: str = "pad", fill: float = -1.0,
    interpolation: str = "bicubic",
) -> tuple[Tensor, Placement]:
    """``image [C, h, w]`` (any size) -> ``([C, canvas_height, canvas_width], Placement)``.

    ``"pad"`` resizes so the whole image fits (aspect ratio kept) and fills the rest with
    ``fill`` (-1 = black in [-1, 1]; masks pass 0); ``"stretch"`` resizes both sides.
    """
    height, width = int(image.shape[-2]), int(image.shape[-1])
    place = placement_for(height, width, canvas_height, canvas_width, mode)
    content = _resize(image, place.content_height, place.content_width, interpolation)
    if mode == "stretch":
        return content, place
    canvas = torch.full((image.shape[0], canvas_height, canvas_width), float(fill), dtype=content.dtype)
    canvas[:, place.top : place.top + place.content_height, place.left : place.left + place.content_width] = content
    return canvas, place


def restore_from_canvas(
    output: Tensor, place: Placement, scale: float = 1.0, interpolation: str = "bicubic",
    max_side: Optional[int] = None,
) -> Tensor:
    """The model's ``output [..., C, H, W]`` (for the canvas, at any resolution) -> the input's frame:
    ``[..., C, round(height * scale), round(width * scale)]`` (super-resolution: ``scale`` = its factor).

    ``max_side`` (generative papers whose output need not be upsampled to a large input) caps the
    long side instead: the output keeps the input's aspect ratio at the model's resolution.
    """
    if max_side is not None:
        scale = min(scale, max_side / max(place.height, place.width))
    ratio_h = output.shape[-2] / place.canvas_height
    ratio_w = output.shape[-1] / place.canvas_width
    top, left = round(place.top * ratio_h), round(place.left * ratio_w)
    bottom = top + max(1, round(place.content_height * ratio_h))
    right = left + max(1, round(place.content_width * ratio_w))
    content = output[..., top:bottom, left:right]
    return _resize(content, round(place.height * scale), round(place.width * scale), interpolation)


def image_size_of(path: Path) -> tuple[int, int]:
    """``(height, width)`` of an image file from its header (cheap; names the file on failure)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return int(image.height), int(image.width)
    except Exception as error:  # noqa: BLE001 - any decoder failure is the same user error
        raise RuntimeError(f"cannot read image file {path}: {error}") from error


# ---------------------------------------------------------------------------------------- batching
def size_grouped_batches(sizes: Sequence[Any], batch_size: int, order: Optional[Sequence[int]] = None) -> list[list[int]]:
    """Index batches of at most ``batch_size`` whose items share a size key (the order of
    ``order``, default input order, kept inside a size), so inputs of different sizes are
    never stacked together."""
    groups: dict[Any, list[int]] = {}
    for index in (range(len(sizes)) if order is None else order):
        groups.setdefault(sizes[index], []).append(int(index))
    batches: list[list[int]] = []
    for indices in groups.values():
        batches.extend(indices[i : i + batch_size] for i in range(0, len(indices), batch_size))
    return sorted(batches, key=lambda batch: batch[0])


class SizeGroupedBatchSampler(BatchSampler):
    """A ``BatchSampler`` that batches only same-size items (:func:`size_grouped_batches`) of
    the indices its ``sampler`` yields; Lightning can swap in a ``DistributedSampler``."""

    def __init__(self, sampler: Iterable[int], batch_size: int, drop_last: bool = False,
                 sizes: Sequence[Any] = ()) -> None:
        super().__init__(sampler, batch_size, False)
        self.sizes = list(sizes)

    def _batches(self) -> list[list[int]]:
        return size_grouped_batches(self.sizes, self.batch_size, list(self.sampler))

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())


def release_predict_limit(trainer: Any, num_inputs: int, key: str = "predict inputs") -> None:
    """Lift ``trainer.limit_predict_batches`` (set by an overlay) so no user input is dropped.

    Called from a datamodule's ``predict_dataloader`` when the user named inputs: Lightning
    reads the limit after it asks for the loader, so the override takes effect for this run.
    """
    if trainer is None:
        return
    limit = getattr(trainer, "limit_predict_batches", None)
    if limit is None or (isinstance(limit, float) and limit == 1.0):
        return
    log.warning(
        "%s: ignoring trainer.limit_predict_batches=%s (from the config) so that all %d inputs are processed",
        key, limit, num_inputs,
    )
    trainer.limit_predict_batches = 1.0


def predict_loader(
    dataset: Dataset, sizes: Sequence[Any], batch_size: int, collate_fn: Callable, num_workers: int = 0,
    trainer: Any = None, key: str = "predict inputs",
) -> DataLoader:
    """The loader of the user's inputs: every item once, same-size batches, no batch limit."""
    release_predict_limit(trainer, len(dataset), key)
    return DataLoader(
        dataset,
        batch_sampler=SizeGroupedBatchSampler(SequentialSampler(dataset), max(1, int(batch_size)), sizes=list(sizes)),
        collate_fn=collate_fn,
        num_workers=num_workers,
    )



def native_size_loader(
    dataset: Dataset, files: Sequence[Path], batch_size: int, collate_fn: Callable, num_workers: int = 0,
    trainer: Any = None, key: str = "predict inputs",
) -> DataLoader:
    """The loader of user images read at their own size (restoration, translation): every file
    once, batches of same-size images only (sizes from the file headers), no batch limit."""
    sizes = [image_size_of(Path(path)) for path in files]
    return predict_loader(dataset, sizes, batch_size, collate_fn, num_workers, trainer, key)


class UserInputsPredictMixin:
    """The one ``predict_dataloader`` body of the datamodules whose models take the user's images
    at their own size (the restoration papers LFG-Diffusion, Bi-Noising and D2SM; the lecture's
    translation models).

    A subclass returns its dataset of the user's inputs from :meth:`user_predict_dataset` (an
    object with ``files``, one per item), or ``None`` when the user named none; then
    :meth:`split_predict_dataloader` serves the configured split. User inputs go through
    :func:`native_size_loader` (same-size batches of ``predict_batch_size``, default the
    datamodule's ``batch_size``; an overlay's ``limit_predict_batches`` lifted with a warning).
    """

    #: the config key named in warnings and errors
    predict_inputs_key: str = "data.predict_root"

    def user_predict_dataset(self) -> Optional[Dataset]:  # pragma: no cover - abstract
        raise NotImplementedError

    def split_predict_dataloader(self) -> DataLoader:
        return super().predict_dataloader()  # type: ignore[misc]

    def predict_dataloader(self) -> DataLoader:
        dataset = self.user_predict_dataset()
        if dataset is None:
            return self.split_predict_dataloader()
        from datamodules._common import collate_dicts

        batch_size = getattr(self, "predict_batch_size", None) or getattr(self, "batch_size", 1)
        return native_size_loader(dataset, list(dataset.files), batch_size, collate_dicts,  # type: ignore[attr-defined]
                                  int(getattr(self, "num_workers", 0)), getattr(self, "trainer", None),
                                  self.predict_inputs_key)


# ---------------------------------------------------------------------------------------- image inputs
def pil_to_tensor(image: Any) -> Tensor:
    """A PIL image -> float32 ``[C, H, W]`` in [-1, 1]."""
    import numpy as np

    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))) / 127.5 - 1.0


def load_image_tensor(path: Path, channels: int = 3) -> Tensor:
    """An image file as float32 ``[C, H, W]`` in [-1, 1] (RGB or grey; names the file on failure)."""
    from datamodules.image_folder import read_image

    return pil_to_tensor(read_image(Path(path), channels))


class PredictImages(Dataset):
    """The user's image files brought to the model canvas: ``{"image": [C, H, W], "name": str,
    "path": str, "placement": Placement}``. ``"placement"`` maps the output back
    (:func:`restore_from_canvas`); ``name`` is the unique output stem (:func:`unique_names`)."""

    def __init__(self, files: Sequence[Path], height: int, width: int, mode: str = "pad", channels: int = 3) -> None:
        if mode not in FIT_MODES:
            raise ValueError(f"predict fit mode {mode!r} is not one of {list(FIT_MODES)}")
        self.files, self.names = list(files), unique_names(list(files))
        self.height, self.width, self.mode, self.channels = int(height), int(width), mode, int(channels)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.files[index]
        image, place = fit_to_canvas(load_image_tensor(path, self.channels), self.height, self.width, self.mode)
        return {"image": image, "name": self.names[index], "path": str(path), "placement": place}


# ---------------------------------------------------------------------------------------- sampling requests
class SampleRequests(Dataset):
    """``num_samples`` requests ``{"sample_index", "seed"[, "label"]}`` for unconditional or
    class-conditional sampling (the baselines' ``predict``). ``labels`` cycle over the requests;
    each request's seed is ``seed + index``, so a sample does not depend on the batch size."""

    def __init__(self, num_samples: int, labels: Optional[Sequence[int]] = None, seed: int = 0) -> None:
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.num_samples, self.seed = int(num_samples), int(seed)
        self.labels = [int(label) for label in labels] if labels else None

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        item = {"sample_index": torch.tensor(index), "seed": torch.tensor(self.seed + index)}
        if self.labels is not None:
            item["label"] = torch.tensor(self.labels[index % len(self.labels)])
        return item


class PromptRequests(Dataset):
    """Text-to-image requests: each prompt x ``samples_per_prompt`` seeds -> ``{"caption", "name",
    "prompt_index", "seed"}``; ``name`` is ``prompt<i>_<first words>`` so files are found by prompt."""

    def __init__(self, prompts: Sequence[str], samples_per_prompt: int = 1, seed: int = 0) -> None:
        if int(samples_per_prompt) < 1:
            raise ValueError(f"samples_per_prompt must be >= 1, got {samples_per_prompt}")
        self.prompts, self.per_prompt, self.seed = list(prompts), int(samples_per_prompt), int(seed)

    def __len__(self) -> int:
        return len(self.prompts) * self.per_prompt

    def __getitem__(self, index: int) -> dict[str, Any]:
        prompt_index, copy = divmod(index, self.per_prompt)
        prompt = self.prompts[prompt_index]
        words = "_".join("".join(c for c in word if c.isalnum()) for word in prompt.split()[:6]).strip("_")
        return {"caption": prompt, "name": f"prompt{prompt_index:03d}_{words}"[:80], "prompt_index": prompt_index,
                "seed": self.seed + index}


def read_prompts(spec: InputSpec, key: str = "prompts") -> list[str]:
    """Prompts from the command line (strings) or text files (one prompt per non-empty line)."""
    if spec is None:
        return []
    entries = [spec] if isinstance(spec, (str, Path)) else list(spec)
    prompts: list[str] = []
    for entry in entries:
        text = str(entry)
        path = Path(text).expanduser()
        if text.endswith(".txt"):
            if not path.is_file():
                raise FileNotFoundError(f"{key}: prompt file {path} does not exist")
            prompts.extend(line.strip() for line in path.read_text().splitlines() if line.strip())
        else:
            prompts.append(text)
    if not prompts:
        raise ValueError(f"{key}: {spec!r} holds no prompt")
    return prompts


__all__ = [
    "FIT_MODES", "IMAGE_EXTENSIONS", "Placement", "PredictImages", "PromptRequests", "SampleRequests",
    "SizeGroupedBatchSampler", "UserInputsPredictMixin", "expand_inputs", "fit_to_canvas", "image_size_of", "load_image_tensor",
    "native_size_loader", "placement_for", "predict_loader", "read_prompts", "release_predict_limit", "restore_from_canvas",
    "size_grouped_batches", "unique_names",
]

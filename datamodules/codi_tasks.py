"""Conditional tasks of CoDi (thesis 001, Ch. 5, Sec. 5.4): SR, inpainting, depth-to-image, editing.

One DataModule, ``CoDiTaskDataModule(task=...)``, yields dicts in the suite's batch convention
(images float32 in [-1, 1], channels first):

| task | keys |
| --- | --- |
| ``sr`` (real-world 4x) | ``image`` (HR), ``lr`` (Real-ESRGAN degraded, ``[3, H/4, W/4]``) |
| ``inpaint`` | ``image``, ``mask`` (``[1, H, W]``, 1 = hole to fill), ``masked_image`` (holes set to 0) |
| ``depth`` | ``image``, ``depth`` (``[1, H, W]`` in [-1, 1], near = 1) |
| ``edit`` | ``image`` (edited target), ``source`` (input image), ``caption`` (the instruction) |
| ``canny`` | ``image``, ``canny`` (``[1, H, W]`` edge map in [-1, 1], edge = 1): the released canny-to-image model |

Sources:

* ``root: null`` (embedded default): crops of the scikit-image photographs
  (:class:`~datamodules.photos.PhotoCropsDataModule`). SR degrades them on the fly
  (:mod:`datamodules.degradation`), inpainting draws free-form / box masks. ``depth`` uses the
  ``depth_estimator`` if given, else a **stand-in** (inverted, blurred luminance: not a depth
  estimate); ``canny`` a **stand-in** edge map (thresholded Sobel magnitude of the luminance, not
  OpenCV's Canny); ``edit`` uses **stand-in** procedural instructions (``make it brighter``, ``make it
  grayscale``, ``flip it horizontally``, ``invert the colors``) on the photos.
* ``root`` set: ``sr`` and ``inpaint`` read every image under ``root/train`` and ``root/val`` (or
  ``root`` split by a seeded permutation) and crop ``size`` squares (DF2K/DIV2K, ImageNet);
  ``depth`` reads ``root/images/<stem>.<ext>`` with ``root/depth/<stem>.png|.npy`` (precomputed
  by the user's estimator, or computed by ``depth_estimator``); ``canny`` likewise
  ``root/images`` with ``root/canny/<stem>.png`` (edge maps, e.g. OpenCV Canny); ``edit`` reads
  ``root/metadata.jsonl`` lines ``{"input": ..., "edited": ..., "instruction": ...}`` (paths
  relative to ``root``; the InstructPix2Pix triplets exported to files).

``predict_root`` points at the user's own inputs for ``predict``: for ``sr`` every image file
there is a low-resolution input (``lr``); for ``inpaint`` every ``<stem>.<ext>`` with a
``<stem>_mask.png`` beside it (white = fill); for ``depth`` depth maps; for ``canny`` edge maps,
each with an optional ``<stem>.txt`` prompt (all inputs have one or none does: then
``model.init_args.prompt``); for ``edit`` a
``metadata.jsonl`` as above without ``edited``. ``predict_root`` may also be a list of files or
folders or a ``.txt``/``.json`` manifest. Every input of any size is processed: it is fitted to
the canvas (resize + pad, ``datamodules.predict_inputs``) and the output is mapped back, so SR
outputs are exactly ``scale`` x the input and the other tasks keep the input's size. Each batch
also carries ``name`` (a unique output stem), ``path`` and ``placement``.

Degradations / masks: train samples draw fresh randomness at every read from torch's global
generator (reproducible under ``seed_everything``); validation samples are fixed by
``(seed, index)``.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from datamodules._common import EmbeddedDataModule, TensorDictDataset, collate_dicts
from datamodules.degradation import DegradationConfig, RealESRGANDegradation, StageConfig
from datamodules.photos import PhotoCropsDataModule
from datamodules.predict_inputs import expand_inputs, fit_to_canvas, predict_loader, unique_names

log = logging.getLogger(__name__)

TASKS = ("sr", "inpaint", "depth", "edit", "canny")
MASK_MODES = ("free_form", "box", "mixed")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
EDIT_INSTRUCTIONS = ("make it brighter", "make it grayscale", "flip it horizontally", "invert the colors")


def read_image(path: Path, mode: str = "RGB") -> Tensor:
    """An image file as float32 ``[C, H, W]`` in [-1, 1] (raises naming the file when unreadable)."""
    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert(mode), dtype=np.float32)
    except Exception as error:  # noqa: BLE001
        raise RuntimeError(f"cannot read image file {path}: {error}") from error
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1.0


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


# ------------------------------------------------------------------------------------------ masks
def box_mask(size: int, rng: np.random.Generator, min_frac: float = 0.1, max_frac: float = 0.5) -> np.ndarray:
    """A random axis-aligned box (Palette-style), area fraction in [min_frac, max_frac]."""
    area = rng.uniform(min_frac, max_frac) * size * size
    aspect = rng.uniform(0.5, 2.0)
    h = int(min(size, max(1, round((area * aspect) ** 0.5))))
    w = int(min(size, max(1, round(area / max(h, 1)))))
    top, left = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
    mask = np.zeros((size, size), dtype=np.float32)
    mask[top : top + h, left : left + w] = 1.0
    return mask


def free_form_mask(size: int, rng: np.random.Generator, strokes: tuple[int, int] = (1, 4),
                   width_frac: tuple[float, float] = (0.05, 0.15)) -> np.ndarray:
    """Random brush strokes (random walks of thick discs), the free-form masks of inpainting work."""
    yy, xx = np.mgrid[0:size, 0:size]
    mask = np.zeros((size, size), dtype=bool)
    for _ in range(rng.integers(strokes[0], strokes[1] + 1)):
        y, x = rng.uniform(0, size, 2)
        radius = rng.uniform(*width_frac) * size / 2
        for _ in range(rng.integers(4, 10)):
            angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.3) * size
            ny, nx = np.clip(y + length * np.sin(angle), 0, size - 1), np.clip(x + length * np.cos(angle), 0, size - 1)
            for s in np.linspace(0, 1, 8):
                cy, cx = y + s * (ny - y), x + s * (nx - x)
                mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
            y, x = ny, nx
    return mask.astype(np.float32)


def random_mask(size: int, rng: np.random.Generator, mode: str) -> Tensor:
    if mode == "mixed":
        mode = "box" if rng.random() < 0.5 else "free_form"
    mask = box_mask(size, rng) if mode == "box" else free_form_mask(size, rng)
    return torch.from_numpy(mask)[None]


# ------------------------------------------------------------------------------------------ stand-ins
def luminance_depth_stand_in(image: Tensor) -> Tensor:
    """STAND-IN, not a depth estimator: inverted, blurred luminance in [-1, 1] (``[..., 1, H, W]``)."""
    lum = (0.299 * image[..., 0:1, :, :] + 0.587 * image[..., 1:2, :, :] + 0.114 * image[..., 2:3, :, :])
    flat = lum.reshape(-1, 1, *lum.shape[-2:])
    blurred = F.avg_pool2d(F.pad(flat, (2, 2, 2, 2), mode="replicate"), 5, stride=1)
    return (-blurred).reshape(lum.shape).clamp(-1, 1)


def sobel_edges_stand_in(image: Tensor, threshold: float = 0.25) -> Tensor:
    """STAND-IN, not OpenCV's Canny: thresholded Sobel magnitude of the luminance, in {-1, 1} (``[..., 1, H, W]``)."""
    lum = (0.299 * image[..., 0:1, :, :] + 0.587 * image[..., 1:2, :, :] + 0.114 * image[..., 2:3, :, :])
    flat = F.pad(lum.reshape(-1, 1, *lum.shape[-2:]), (1, 1, 1, 1), mode="replicate")
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3)
    gx, gy = F.conv2d(flat, kx), F.conv2d(flat, kx.transpose(-1, -2))
    edges = (torch.sqrt(gx * gx + gy * gy) > threshold * 8).float() * 2 - 1
    return edges.reshape(lum.shape)


def procedural_edit(image: Tensor, index: int) -> tuple[Tensor, str]:
    """STAND-IN editing triplet: one of :data:`EDIT_INSTRUCTIONS` applied to ``image``."""
    k = index % len(EDIT_INSTRUCTIONS)
    if k == 0:
        edited = (image + 0.4).clamp(-1, 1)
    elif k == 1:
        edited = (0.299 * image[0:1] + 0.587 * image[1:2] + 0.114 * image[2:3]).expand_as(image)
    elif k == 2:
        edited = image.flip(-1)
    else:
        edited = -image
    return edited.contiguous(), EDIT_INSTRUCTIONS[k]


# ------------------------------------------------------------------------------------------ dataset
class TaskDataset(Dataset):
    """Adds the task's condition to each HR sample of ``base`` (a dataset of ``{"image": ...}``)."""

    def __init__(self, base: Dataset, task: str, split: str, seed: int, degradation: RealESRGANDegradation,
                 mask_mode: str, depth_estimator: Optional[Callable[[Tensor], Tensor]] = None) -> None:
        self.base, self.task, self.split, self.seed = base, task, split, int(seed)
        self.degradation, self.mask_mode, self.depth_estimator = degradation, mask_mode, depth_estimator

    def __len__(self) -> int:
        return len(self.base)

    def _seed(self, index: int) -> int:
        if self.split == "train":
            return int(torch.randint(0, 2**62, ()))
        return int(np.random.default_rng([self.seed, 1, int(index)]).integers(0, 2**62))

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.base[index])
        image = item["image"]
        seed = self._seed(index)
        if self.task == "sr":
            gen = torch.Generator().manual_seed(seed)
            lr = self.degradation((image[None] + 1) / 2, gen)[0]
            item["lr"] = lr * 2 - 1
        elif self.task == "inpaint":
            mask = random_mask(image.shape[-1], np.random.default_rng(seed), self.mask_mode)
            item["mask"] = mask
            item["masked_image"] = image * (1 - mask)
        elif self.task == "depth" and "depth" not in item:
            estimator = self.depth_estimator or luminance_depth_stand_in
            with torch.no_grad():
                item["depth"] = estimator(image[None])[0].float()
        elif self.task == "canny" and "canny" not in item:
            item["canny"] = sobel_edges_stand_in(image[None])[0]
        elif self.task == "edit" and "source" not in item:
            edited, instruction = procedural_edit(image, index)
            item["source"], item["image"], item["caption"] = image, edited, instruction
        return item


class _FolderCrops(Dataset):
    """Square crops of image files: random for train; for val ``crops_per_file`` crops per file at positions
    fixed by ``(seed, index)`` (e.g. 3,000 random DIV2K/DF2K patches, the StableSR protocol of Table 5.2)."""

    def __init__(self, files: list[Path], size: int, train: bool, crops_per_file: int = 1, seed: int = 0) -> None:
        self.files, self.size, self.train = files, int(size), train
        self.crops_per_file, self.seed = (1 if train else max(1, int(crops_per_file))), int(seed)

    def __len__(self) -> int:
        return len(self.files) * self.crops_per_file

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        image = read_image(self.files[index // self.crops_per_file])
        if self.train or self.crops_per_file == 1:
            return {"image": _crop(image, self.size, self.train)}
        state = torch.random.get_rng_state()
        torch.manual_seed(int(np.random.default_rng([self.seed, 2, index]).integers(0, 2**62)))
        try:
            return {"image": _crop(image, self.size, True)}
        finally:
            torch.random.set_rng_state(state)


def _crop(image: Tensor, size: int, train: bool, *others: Tensor) -> Any:
    h, w = image.shape[-2:]
    if min(h, w) < size:
        scale = size / min(h, w)
        new = (max(size, round(h * scale)), max(size, round(w * scale)))
        image = F.interpolate(image[None], size=new, mode="bicubic", antialias=True, align_corners=False)[0]
        others = tuple(F.interpolate(o[None], size=new, mode="nearest")[0] for o in others)
        h, w = new
    top = int(torch.randint(0, h - size + 1, ())) if train else (h - size) // 2
    left = int(torch.randint(0, w - size + 1, ())) if train else (w - size) // 2
    crops = [t[..., top : top + size, left : left + size] for t in (image, *others)]
    return crops[0] if not others else tuple(crops)


class _DepthFolder(Dataset):
    def __init__(self, pairs: list[tuple[Path, Optional[Path]]], size: int, train: bool, key: str = "depth") -> None:
        self.pairs, self.size, self.train, self.key = pairs, size, train, key

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        image_path, depth_path = self.pairs[index]
        image = read_image(image_path)
        if depth_path is None:
            return {"image": _crop(image, self.size, self.train)}
        if depth_path.suffix == ".npy":
            d = torch.from_numpy(np.load(depth_path).astype(np.float32))[None]
            d = 2 * (d - d.min()) / (d.max() - d.min()).clamp_min(1e-8) - 1
        else:
            d = read_image(depth_path, mode="L")
        d = F.interpolate(d[None], size=image.shape[-2:], mode="bilinear", align_corners=False)[0]
        image, d = _crop(image, self.size, self.train, d)
        return {"image": image, self.key: d}


class _EditFolder(Dataset):
    def __init__(self, root: Path, rows: list[dict], size: int, train: bool) -> None:
        self.root, self.rows, self.size, self.train = root, rows, size, train

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        source = read_image(self.root / row["input"])
        item: dict[str, Any] = {"caption": str(row["instruction"])}
        if "edited" in row:
            edited = F.interpolate(read_image(self.root / row["edited"])[None], size=source.shape[-2:],
                                   mode="bicubic", align_corners=False)[0]
            source, edited = _crop(source, self.size, self.train, edited)
            item["image"] = edited
        else:
            source = _crop(source, self.size, False)
        item["source"] = source
        return item


class _PredictInputs(Dataset):
    """The user's own inputs for ``predict`` (module docstring), each fitted to the model canvas.

    Every input keeps its own size through ``datamodules.predict_inputs``: it is resized to fit
    the canvas (``size``; ``size / scale`` for the SR low-resolution input) and padded
    (``placement`` records how), and the module maps the output back with
    ``restore_from_canvas(output, placement, output_scale)``: SR outputs are exactly
    ``scale`` x the input (12x8 at x4 -> 48x32), the other tasks keep the input's size.
    """

    def __init__(self, spec: Any, task: str, scale: int, size: int) -> None:
        self.task, self.scale, self.size = task, int(scale), int(size)
        if task == "edit":
            root = Path(spec if isinstance(spec, (str, Path)) else spec[0]).expanduser()
            meta = root / "metadata.jsonl"
            if not meta.is_file():
                raise FileNotFoundError(f"data.predict_root: edit inputs need {meta} (lines of input/instruction)")
            self.rows = [json.loads(line) for line in meta.read_text().splitlines() if line.strip()]
            self.items = [root / row["input"] for row in self.rows]
        else:
            self.items = expand_inputs(spec, key="data.predict_root", extensions=IMAGE_EXTENSIONS,
                                       exclude=lambda p: p.stem.endswith("_mask"))
        self.names = unique_names(self.items)
        self.prompts: Optional[list[str]] = None
        if task == "canny":
            texts = [p.with_suffix(".txt") for p in self.items]
            have = [t.is_file() for t in texts]
            if any(have) and not all(have):
                missing = next(t for t, h in zip(texts, have) if not h)
                raise FileNotFoundError(f"data.predict_root: {missing} is missing (some canny inputs have a <stem>.txt "
                                        "prompt: give every input one, or none to use model.init_args.prompt)")
            if any(have):
                self.prompts = [t.read_text().strip() for t in texts]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path, name = self.items[index], self.names[index]
        side = self.size // self.scale if self.task == "sr" else self.size
        info: dict[str, Any] = {"name": name, "path": str(path), "output_scale": float(self.scale if self.task == "sr" else 1)}
        if self.task == "edit":
            source, info["placement"] = fit_to_canvas(read_image(path), side, side)
            return {"source": source, "caption": self.rows[index]["instruction"], **info}
        if self.task == "sr":
            lr, info["placement"] = fit_to_canvas(read_image(path), side, side)
            return {"lr": lr, **info}
        if self.task == "depth":
            depth, info["placement"] = fit_to_canvas(read_image(path, mode="L"), side, side)
            return {"depth": depth, **info}
        if self.task == "canny":
            edges, info["placement"] = fit_to_canvas(read_image(path, mode="L"), side, side, fill=-1.0)
            return {"canny": edges, **info, **({"caption": self.prompts[index]} if self.prompts else {})}
        mask_path = path.with_name(f"{path.stem}_mask.png")
        if not mask_path.is_file():
            raise FileNotFoundError(f"inpainting input {path} has no mask {mask_path} (white = region to fill)")
        image, info["placement"] = fit_to_canvas(read_image(path), side, side)
        raw_mask = (read_image(mask_path, mode="L") > 0).float()
        if raw_mask.shape[-2:] != read_image(path).shape[-2:]:
            raise ValueError(f"inpainting mask {mask_path} is {tuple(raw_mask.shape[-2:])}, its image {path} is "
                             f"{tuple(read_image(path).shape[-2:])}: they must have the same size")
        mask, _ = fit_to_canvas(raw_mask, side, side, fill=0.0, interpolation="nearest")
        return {"masked_image": image * (1 - mask), "mask": mask, "image": image, **info}


class CoDiTaskDataModule(EmbeddedDataModule):
    """Conditional-task data for CoDi and the SR fine-tuning of the scaling study (module docstring).

    Args:
        task: ``'sr'``, ``'inpaint'``, ``'depth'`` or ``'edit'``.
        root: dataset folder (layouts in the module docstring); ``None`` = embedded photos.
        size: HR crop side in pixels (512 in the thesis; 64 or less for tests).
        scale: SR factor (4).
        degradation: overrides of :class:`~datamodules.degradation.DegradationConfig` fields; the
            keys ``first`` / ``second`` take dicts of :class:`~datamodules.degradation.StageConfig` fields.
        mask_mode: ``'free_form'``, ``'box'`` or ``'mixed'`` inpainting masks.
        depth_estimator: callable ``images [B, 3, H, W] in [-1, 1] -> depth [B, 1, H, W] in [-1, 1]``
            (the user's estimator, e.g. a DPT/MiDaS wrapper); ``None`` uses depth files or the stand-in.
        predict_root: the user's inputs for ``predict``: image files, folders or manifests (``.txt`` /
            ``.json``), every one processed at its own size (``_PredictInputs``); ``None`` predicts
            on the val split.
        crops_per_image / short_side / images: embedded photo crops.
        val_crops_per_image: validation crops per photo (embedded) or per validation file (``root``; seeded
            random positions when > 1, the centre crop when 1).
        test_pairs: size of the ``test`` set: that many seeded random crops of the validation files, each
            with its own seeded degradation / mask (3,000 in ``configs/codi_sr.yaml``: the StableSR protocol
            of Table 5.2, "3,000 randomly degraded image pairs"); ``None``: ``test`` is the validation split.
            Needs ``root`` with image files (tasks ``sr`` / ``inpaint``).
    """

    STAND_IN = "embedded photos (stand-in)"  # the results rows' ``dataset`` when ``root`` is null (metrics.results_rows.dataset_field)

    def __init__(
        self,
        task: str = "sr",
        root: Optional[str] = None,
        size: int = 64,
        scale: int = 4,
        degradation: Optional[dict[str, Any]] = None,
        mask_mode: str = "mixed",
        depth_estimator: Optional[Callable[[Tensor], Tensor]] = None,
        predict_root: Union[str, list[str], None] = None,
        crops_per_image: int = 16,
        val_crops_per_image: int = 4,
        short_side: Optional[int] = 256,
        images: Optional[list[str]] = None,
        batch_size: int = 8,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        pin_memory: bool = False,
        test_pairs: Optional[int] = None,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, pin_memory)
        if test_pairs is not None and (root is None or task not in ("sr", "inpaint") or int(test_pairs) < 1):
            raise ValueError(f"data.init_args.test_pairs={test_pairs!r} needs a positive count, a data root and task sr or "
                             f"inpaint (got root={root!r}, task={task!r}); set test_pairs: null to test on the val split")
        self.test_pairs = None if test_pairs is None else int(test_pairs)
        self._val_files: list[Path] = []
        if task not in TASKS:
            raise ValueError(f"task {task!r} is not one of {list(TASKS)}")
        if mask_mode not in MASK_MODES:
            raise ValueError(f"mask_mode {mask_mode!r} is not one of {list(MASK_MODES)}")
        if size % scale:
            raise ValueError(f"size {size} must be divisible by scale {scale}")
        self.task, self.root, self.size, self.scale = task, root, int(size), int(scale)
        self.mask_mode, self.depth_estimator, self.predict_root = mask_mode, depth_estimator, predict_root
        self.crops_per_image, self.val_crops_per_image = crops_per_image, val_crops_per_image
        self.short_side, self.images = short_side, images
        self.degradation = RealESRGANDegradation(build_degradation_config(scale, degradation))

    def _base(self) -> tuple[Dataset, Dataset]:
        if self.root is None:
            photos = PhotoCropsDataModule(
                size=self.size, crops_per_image=self.crops_per_image, val_crops_per_image=self.val_crops_per_image,
                images=self.images, short_side=self.short_side, seed=self.seed, resample_train_crops=True,
                val_fraction=self.val_fraction,
            )
            log.info("CoDiTaskDataModule(%s): root is null, using the embedded scikit-image photos", self.task)
            return photos.build_datasets()
        root = Path(self.root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"CoDiTaskDataModule: root {root} does not exist")
        if self.task == "edit":
            meta = root / "metadata.jsonl"
            if not meta.is_file():
                raise FileNotFoundError(f"edit task: {meta} is missing (lines of input/edited/instruction)")
            rows = [json.loads(line) for line in meta.read_text().splitlines() if line.strip()]
            cut = max(1, int(len(rows) * self.val_fraction))
            return _EditFolder(root, rows[cut:], self.size, True), _EditFolder(root, rows[:cut], self.size, False)
        if self.task in ("depth", "canny"):
            files = _files(root / "images")
            if not files:
                raise FileNotFoundError(f"{self.task} task: no images under {root / 'images'}")
            pairs = []
            for f in files:
                found = [root / self.task / f"{f.stem}{ext}" for ext in (".png", ".npy")]
                depth = next((p for p in found if p.is_file()), None)
                if depth is None and (self.task == "canny" or self.depth_estimator is None):
                    raise FileNotFoundError(f"{self.task} task: {f} has no {self.task} file ({found[0]} or {found[1]})"
                                            + (" and no depth_estimator is configured" if self.task == "depth" else ""))
                pairs.append((f, depth))
            cut = max(1, int(len(pairs) * self.val_fraction))
            return (_DepthFolder(pairs[cut:], self.size, True, self.task),
                    _DepthFolder(pairs[:cut], self.size, False, self.task))
        if (root / "train").is_dir() and (root / "val").is_dir():
            train_files, val_files = _files(root / "train"), _files(root / "val")
        else:
            files = _files(root)
            order = np.random.default_rng(self.seed).permutation(len(files))
            cut = max(1, int(len(files) * self.val_fraction))
            val_files = [files[i] for i in order[:cut]]
            train_files = [files[i] for i in order[cut:]]
        if not train_files or not val_files:
            raise FileNotFoundError(f"CoDiTaskDataModule: too few images under {root}")
        self._val_files = val_files
        return (_FolderCrops(train_files, self.size, True),
                _FolderCrops(val_files, self.size, False, self.val_crops_per_image, self.seed))

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        train, val = self._base()
        wrap = lambda base, split: TaskDataset(base, self.task, split, self.seed, self.degradation,  # noqa: E731
                                               self.mask_mode, self.depth_estimator)
        return wrap(train, "train"), wrap(val, "val")

    def test_dataset(self) -> Dataset:
        """``test_pairs`` seeded crops of the validation files with seeded conditions (the Table 5.2 protocol)."""
        if not self._val_files:
            self._base()
        per_file = -(-self.test_pairs // len(self._val_files))
        crops = _FolderCrops(self._val_files, self.size, False, per_file, self.seed + 1)
        chosen = np.sort(np.random.default_rng([self.seed, 3]).permutation(len(crops))[: self.test_pairs])
        return torch.utils.data.Subset(TaskDataset(crops, self.task, "test", self.seed + 1, self.degradation,
                                                   self.mask_mode, self.depth_estimator), chosen.tolist())

    def test_dataloader(self):
        if self.test_pairs is None:
            return super().test_dataloader()
        return self._loader(self.test_dataset(), shuffle=False)

    def predict_dataloader(self):
        if self.predict_root is None:
            return super().predict_dataloader()
        dataset = _PredictInputs(self.predict_root, self.task, self.scale, self.size)
        log.info("CoDi predict (%s): %d inputs from %s", self.task, len(dataset), self.predict_root)
        sizes = [self.size] * len(dataset)  # every input is fitted to the same canvas
        return predict_loader(dataset, sizes, self.batch_size, collate_dicts, self.num_workers,
                              getattr(self, "trainer", None), "data.predict_root")


def build_degradation_config(scale: int, overrides: Optional[dict[str, Any]]) -> DegradationConfig:
    """A :class:`DegradationConfig` with ``overrides`` (nested dicts for the two stages)."""
    config = DegradationConfig(scale=scale)
    for key, value in (overrides or {}).items():
        if key in ("first", "second"):
            stage: StageConfig = getattr(config, key)
            for k, v in dict(value).items():
                if not hasattr(stage, k):
                    raise ValueError(f"degradation.{key}.{k} is not a StageConfig field")
                setattr(stage, k, v)
        elif hasattr(config, key):
            setattr(config, key, value)
        else:
            raise ValueError(f"degradation.{key} is not a DegradationConfig field")
    return config


__all__ = ["CoDiTaskDataModule", "MASK_MODES", "TASKS", "TaskDataset", "box_mask", "free_form_mask",
           "luminance_depth_stand_in", "procedural_edit", "sobel_edges_stand_in", "random_mask", "read_image"]

"""Generated portrait-editing pairs (thesis 000, Ch. 5, §5.3 / §5.5.1) and their embedded stand-in.

**Tasks and prompts (§5.5.1).** Two tasks, four directions each, one model per task:

* costume: ``[Y]`` = "normal costume"; ``[Z]`` in "cute flower costume", "cute white sheep costume",
  "Santa Claus costume", "traditional golden palace costume" (short names flower / sheep / santa / royal);
* expression: ``[Y]`` = "neutral expression"; ``[Z]`` in angry / shocked / laughing / crying.

``p = "the same [X] on the left and right"``, ``p_a = "a [X], [Y]"``, ``p_b = "a [X], [Z]"`` with
``[X]`` the gender word (man / woman) of the identity image (:func:`pair_prompts`).

**Pair layout** (written by ``lightning_modules.portrait_editing.PortraitPairGenerator`` through
``cli.py predict``, read here): a folder with ``pairs.json``::

    {"task": "costume", "pairs": [{"x_A": "a/0001.png", "x_B": "b/0001.png", "direction": "santa",
                                   "p_a": "a woman, normal costume", "p_b": "a woman, Santa Claus costume"}, ...]}

paths relative to the folder (a ``.jsonl`` file with one pair object per line is read too; the
``pairs.rank<r>.json`` shares of a multi-GPU generation are joined). The
1,000-pair validation set (§5.3: 100 pairs from the same pipeline + 900 without identity
embeddings but with ChatGPT-written descriptions in the prompts) has the same layout in its own
folder (``val_root``); an optional ``"subset"`` field per pair (``"ffhq_identity"`` /
``"described"``) is carried into the batch. Without ``val_root`` the last ``val_fraction`` of the
training manifest is held out.

**Embedded default** (``root: null``): procedural cartoon portraits (random skin, hair, face shape,
clothes, position) and their edits: costume directions recolour and pattern the clothes region,
expression directions redraw the mouth and brows. The edit is local and known, so the edit mask
and a tiny fit can be checked on CPU. It is a stand-in, not the paper's data; the real pipeline's
output (a tiny random generator's pair folder) is read by the same layout code (tested).

Batches: ``x_A``, ``x_B`` ``[B, 3, H, W]`` in ``[-1, 1]``, ``direction`` ``[B]`` (index in the
task's list), ``p_a``, ``p_b``, ``name`` (lists). Predict (``predict_inputs`` + ``direction``):
``x_A``, ``p_a``, ``p_b``, ``name``, ``path``, ``placement`` (pad to the canvas, see docs).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules._common import EmbeddedDataModule, GeneratedDataset, collate_dicts
from datamodules.predict_inputs import InputSpec, PredictImages, expand_inputs, fit_to_canvas, load_image_tensor, predict_loader

log = logging.getLogger(__name__)

TASKS: dict[str, dict[str, Any]] = {
    "costume": {
        "source": "normal costume",
        "directions": {
            "flower": "cute flower costume",
            "sheep": "cute white sheep costume",
            "santa": "Santa Claus costume",
            "royal": "traditional golden palace costume",
        },
        "mask_threshold": 0.2,
    },
    "expression": {
        "source": "neutral expression",
        "directions": {"angry": "angry", "shocked": "shocked", "laughing": "laughing", "crying": "crying"},
        "mask_threshold": 0.35,
    },
}
GENDERS = ("man", "woman")
_STREAMS = {"train": 0, "val": 1, "identity": 2, "pose": 3}


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of item ``index`` of ``split`` (train / val / identity / pose)."""
    return np.random.default_rng([int(seed), _STREAMS[split], int(index)])


def check_task(task: str) -> dict[str, Any]:
    if task not in TASKS:
        raise ValueError(f"unknown portrait-editing task {task!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[task]


def direction_names(task: str) -> list[str]:
    return list(check_task(task)["directions"])


def resolve_direction(task: str, direction: str) -> str:
    """The short name of ``direction`` (a short name or the full ``[Z]`` text); unknown -> ValueError."""
    table = check_task(task)["directions"]
    if direction in table:
        return direction
    for name, text in table.items():
        if str(direction).strip().lower() == text.lower():
            return name
    raise ValueError(f"unknown edit direction {direction!r} for task {task!r}; valid directions: "
                     + ", ".join(f"{k} ({v!r})" for k, v in table.items()))


def pair_prompts(task: str, direction: str, gender: str = "woman", description: str = "") -> tuple[str, str, str]:
    """``(p, p_a, p_b)`` of §5.5.1; ``description`` (validation subset 2) is appended to each."""
    spec = check_task(task)
    z = spec["directions"][resolve_direction(task, direction)]
    extra = f", {description}" if description else ""
    return (f"the same {gender} on the left and right{extra}", f"a {gender}, {spec['source']}{extra}",
            f"a {gender}, {z}{extra}")


# ---------------------------------------------------------------------------------------- manifest layout
def read_pair_manifest(root: str | Path, manifest: str = "pairs.json", task: Optional[str] = None) -> list[dict[str, Any]]:
    """The pairs of ``root/manifest`` with absolute paths; missing files / unknown directions are one error."""
    root = Path(root).expanduser()
    path = root / manifest
    if not path.is_file():
        raise FileNotFoundError(f"pair manifest not found: {path} (expected the layout written by "
                                "`cli.py predict -c configs/portrait_pairs.yaml`, see datamodules/portrait_pairs.py)")
    text = path.read_text()
    if path.suffix == ".jsonl":
        pairs = [json.loads(line) for line in text.splitlines() if line.strip()]
        file_task = None
    else:
        data = json.loads(text)
        pairs = list(data["pairs"] if isinstance(data, dict) else data)
        file_task = data.get("task") if isinstance(data, dict) else None
        for share in sorted(root.glob(f"{path.stem}.rank*.json")):  # other ranks' shares of a multi-GPU generation
            extra = json.loads(share.read_text())
            pairs += list(extra["pairs"] if isinstance(extra, dict) else extra)
    task = task or file_task or "costume"
    if not pairs:
        raise ValueError(f"pair manifest {path} lists no pairs")
    out, missing = [], []
    for i, pair in enumerate(pairs):
        absent = [k for k in ("x_A", "x_B", "direction", "p_a", "p_b") if k not in pair]
        if absent:
            raise ValueError(f"pair manifest {path}: entry {i} lacks {absent}")
        item = dict(pair)
        for key in ("x_A", "x_B"):
            file = Path(pair[key])
            file = file if file.is_absolute() else root / file
            if not file.is_file():
                missing.append(str(file))
            item[key] = file
        item["direction"] = resolve_direction(task, pair["direction"])
        out.append(item)
    if missing:
        raise FileNotFoundError(f"pair manifest {path}: {len(missing)} image file(s) missing, e.g. {missing[:3]}")
    return out


class ManifestPairs(Dataset):
    """Pairs of a manifest resized (stretched) to ``size`` x ``size``."""

    def __init__(self, pairs: Sequence[Mapping[str, Any]], task: str, size: int) -> None:
        self.pairs, self.size = list(pairs), int(size)
        self.names = direction_names(task)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        x_a, _ = fit_to_canvas(load_image_tensor(pair["x_A"]), self.size, self.size, "stretch")
        x_b, _ = fit_to_canvas(load_image_tensor(pair["x_B"]), self.size, self.size, "stretch")
        return {"x_A": x_a.clamp(-1, 1), "x_B": x_b.clamp(-1, 1), "direction": self.names.index(pair["direction"]),
                "p_a": str(pair["p_a"]), "p_b": str(pair["p_b"]), "name": Path(pair["x_A"]).stem,
                "subset": str(pair.get("subset", "generated"))}


# ---------------------------------------------------------------------------------------- embedded portraits
def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def procedural_pair(rng: np.random.Generator, size: int, task: str, direction: str) -> tuple[Tensor, Tensor, Tensor]:
    """``(x_A, x_B, edit_region)``: a cartoon portrait, its edit, and where the edit changed pixels."""
    s = float(size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    bg = rng.uniform(0.55, 0.95, 3)
    skin = rng.uniform([0.55, 0.4, 0.3], [0.95, 0.8, 0.7])
    hair = rng.uniform(0.0, 0.5, 3)
    clothes = rng.uniform(0.1, 0.7, 3)
    cx, cy = s * rng.uniform(0.42, 0.58), s * rng.uniform(0.36, 0.44)
    ry, rx = s * rng.uniform(0.17, 0.21), s * rng.uniform(0.13, 0.17)
    image = np.ones((size, size, 3), np.float32) * bg
    body = _ellipse(yy, xx, s * 1.02, cx, s * 0.32, s * 0.36)
    hair_m = _ellipse(yy, xx, cy - ry * 0.25, cx, ry * 1.05, rx * 1.12)
    face = _ellipse(yy, xx, cy, cx, ry, rx)
    image[body] = clothes
    image[hair_m] = hair
    image[face] = skin
    eye_y, eye_dx = cy - ry * 0.15, rx * 0.42
    for sx in (-1, 1):
        image[_ellipse(yy, xx, eye_y, cx + sx * eye_dx, ry * 0.09, rx * 0.1)] = 0.08
    mouth_y = cy + ry * 0.5
    neutral_mouth = (np.abs(yy - mouth_y) < max(1.0, s * 0.008)) & (np.abs(xx - cx) < rx * 0.35)
    image[neutral_mouth] = (0.45, 0.15, 0.15)
    edited = image.copy()
    name = resolve_direction(task, direction)
    if task == "costume":
        colour = {"flower": (0.95, 0.45, 0.7), "sheep": (0.97, 0.97, 0.95), "santa": (0.8, 0.08, 0.08),
                  "royal": (0.85, 0.68, 0.15)}[name]
        edited[body] = colour
        stripe = body & (((xx + yy) // max(2.0, s / 16)) % 2 == 0)
        accent = {"flower": (0.3, 0.7, 0.3), "sheep": (0.85, 0.85, 0.85), "santa": (0.98, 0.98, 0.98),
                  "royal": (0.55, 0.1, 0.45)}[name]
        edited[stripe] = accent
    else:
        edited[neutral_mouth] = skin
        if name == "angry":
            for sx in (-1, 1):
                brow = (np.abs(yy - (eye_y - ry * 0.2 + sx * 0 - (xx - cx) * sx * 0.15)) < s * 0.012) & (np.abs(xx - (cx + sx * eye_dx)) < rx * 0.18)
                edited[brow] = 0.05
            edited[_ellipse(yy, xx, mouth_y + ry * 0.05, cx, ry * 0.05, rx * 0.3)] = (0.35, 0.05, 0.05)
        elif name == "shocked":
            edited[_ellipse(yy, xx, mouth_y, cx, ry * 0.16, rx * 0.16)] = (0.2, 0.02, 0.02)
        elif name == "laughing":
            smile = _ellipse(yy, xx, mouth_y - ry * 0.05, cx, ry * 0.2, rx * 0.38) & (yy > mouth_y - ry * 0.05)
            edited[smile] = (0.55, 0.08, 0.1)
        else:  # crying
            edited[_ellipse(yy, xx, mouth_y + ry * 0.05, cx, ry * 0.06, rx * 0.25)] = (0.4, 0.1, 0.1)
            for sx in (-1, 1):
                edited[_ellipse(yy, xx, eye_y + ry * 0.3, cx + sx * eye_dx, ry * 0.18, rx * 0.05)] = (0.4, 0.7, 0.95)
    region = np.any(np.abs(edited - image) > 1e-6, axis=2)
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float() * 2.0 - 1.0  # noqa: E731
    return to_t(image), to_t(edited), torch.from_numpy(region)[None].float()


class _MakePair:
    """Picklable generator of embedded pair ``index`` of ``split``."""

    def __init__(self, seed: int, split: str, size: int, task: str, gender: str) -> None:
        self.seed, self.split, self.size, self.task, self.gender = seed, split, size, task, gender

    def __call__(self, index: int) -> dict[str, Any]:
        rng = sample_rng(self.seed, self.split, index)
        names = direction_names(self.task)
        direction = names[index % len(names)]
        gender = GENDERS[int(rng.integers(0, 2))] if self.gender == "random" else self.gender
        x_a, x_b, region = procedural_pair(rng, self.size, self.task, direction)
        _, p_a, p_b = pair_prompts(self.task, direction, gender)
        return {"x_A": x_a, "x_B": x_b, "edit_region": region, "direction": names.index(direction),
                "p_a": p_a, "p_b": p_b, "name": f"{self.split}{index:05d}_{direction}", "subset": "embedded"}


class PortraitPairsDataModule(EmbeddedDataModule):
    """Generated pairs for MCDM training / Table 5.1 evaluation (module docstring for the layout).

    Args:
        root: the training pair folder (``pairs.json``); ``null`` = the embedded procedural pairs.
        val_root: the 1,000-pair validation folder (same layout); ``null``: the last ``val_fraction``
            of ``root``'s pairs (or embedded validation pairs).
        manifest: the manifest file name inside each folder (``pairs.json`` or ``*.jsonl``).
        task: ``costume`` or ``expression`` (directions and prompt templates).
        size: training / evaluation resolution (512 in the paper).
        num_pairs, num_val_pairs: embedded pairs per split.
        gender: ``[X]`` of the embedded prompts and of predict prompts (``man``, ``woman`` or, for the
            embedded pairs, ``random``). [choice] predict has no gender detector: the user names it.
        predict_inputs: the user's portraits (files / folders / manifests; any size).
        direction: the edit direction of ``predict`` (short name or the ``[Z]`` text).
        predict_fit: ``pad`` (default) or ``stretch`` to the square canvas.
    """

    def __init__(
        self,
        root: Optional[str] = None,
        val_root: Optional[str] = None,
        manifest: str = "pairs.json",
        task: str = "costume",
        size: int = 512,
        num_pairs: int = 64,
        num_val_pairs: int = 8,
        gender: str = "random",
        predict_inputs: InputSpec = None,
        direction: Optional[str] = None,
        predict_fit: str = "pad",
        batch_size: int = 4,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, pin_memory)
        check_task(task)
        if direction is not None:
            resolve_direction(task, direction)
        if gender not in (*GENDERS, "random", "person"):
            raise ValueError(f"gender must be one of {GENDERS + ('random', 'person')}, got {gender!r}")
        self.root, self.val_root, self.manifest, self.task = root, val_root, manifest, task
        self.size, self.num_pairs, self.num_val_pairs = int(size), int(num_pairs), int(num_val_pairs)
        self.gender, self.predict_inputs, self.direction, self.predict_fit = gender, predict_inputs, direction, predict_fit
        self.save_hyperparameters()

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        if self.root is None:
            return (GeneratedDataset(_MakePair(self.seed, "train", self.size, self.task, self.gender), self.num_pairs),
                    GeneratedDataset(_MakePair(self.seed, "val", self.size, self.task, self.gender), self.num_val_pairs))
        pairs = read_pair_manifest(self.root, self.manifest, self.task)
        if self.val_root is not None:
            val = read_pair_manifest(self.val_root, self.manifest, self.task)
            return ManifestPairs(pairs, self.task, self.size), ManifestPairs(val, self.task, self.size)
        n_val = max(1, int(round(len(pairs) * self.val_fraction))) if len(pairs) > 1 else 0
        train, val = pairs[: len(pairs) - n_val] or pairs, pairs[len(pairs) - n_val:] or pairs
        return ManifestPairs(train, self.task, self.size), ManifestPairs(val, self.task, self.size)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        if self.predict_inputs is None:
            raise ValueError("portrait editing predict needs --data.predict_inputs (portrait files/folders) "
                             f"and --data.direction (one of {direction_names(self.task)})")
        if self.direction is None:
            raise ValueError(f"portrait editing predict needs --data.direction, one of {direction_names(self.task)}")
        files = expand_inputs(self.predict_inputs, key="data.predict_inputs")
        gender = "person" if self.gender == "random" else self.gender
        _, p_a, p_b = pair_prompts(self.task, self.direction, gender)
        dataset = _EditRequests(PredictImages(files, self.size, self.size, self.predict_fit), p_a, p_b,
                                resolve_direction(self.task, self.direction))
        return predict_loader(dataset, [(self.size, self.size)] * len(dataset), self.batch_size, collate_dicts,
                              self.num_workers, trainer=getattr(self, "trainer", None), key="data.predict_inputs")


class _EditRequests(Dataset):
    def __init__(self, images: PredictImages, p_a: str, p_b: str, direction: str) -> None:
        self.images, self.p_a, self.p_b, self.direction = images, p_a, p_b, direction

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.images[index]
        return {"x_A": item.pop("image"), **item, "p_a": self.p_a, "p_b": self.p_b, "direction_name": self.direction}


# ---------------------------------------------------------------------------------------- pair generation inputs
OPENPOSE_HEAD_LIMBS = ((1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (1, 2), (1, 5), (2, 3), (5, 6))
OPENPOSE_COLOURS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
                    (0, 255, 0), (0, 255, 85), (0, 255, 170))


def procedural_pose(rng: np.random.Generator, size: int) -> Tensor:
    """An OpenPose-style head-shot skeleton on black ``[3, size, size]`` in ``[-1, 1]`` (embedded pose pool)."""
    from PIL import Image, ImageDraw

    s = float(size)
    cx, cy, tilt = s * rng.uniform(0.4, 0.6), s * rng.uniform(0.33, 0.43), rng.uniform(-0.15, 0.15)
    pts = {0: (cx, cy), 1: (cx + tilt * s * 0.2, cy + s * 0.22), 14: (cx - s * 0.05, cy - s * 0.04),
           15: (cx + s * 0.05, cy - s * 0.04), 16: (cx - s * 0.11, cy - s * 0.01), 17: (cx + s * 0.11, cy - s * 0.01)}
    neck = pts[1]
    pts[2], pts[5] = (neck[0] - s * 0.2, neck[1] + s * 0.03), (neck[0] + s * 0.2, neck[1] + s * 0.03)
    pts[3], pts[6] = (pts[2][0] - s * 0.04, min(s - 1, pts[2][1] + s * 0.25)), (pts[5][0] + s * 0.04, min(s - 1, pts[5][1] + s * 0.25))
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    width = max(1, size // 64)
    for (a, b), colour in zip(OPENPOSE_HEAD_LIMBS, OPENPOSE_COLOURS):
        draw.line([pts[a], pts[b]], fill=colour, width=width)
    for x, y in pts.values():
        draw.ellipse([x - width, y - width, x + width, y + width], fill=(255, 255, 255))
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def pose_pool_files(pose_pool: str | Path) -> list[Path]:
    """The image files of the pose pool folder; an empty or missing pool is one clear error."""
    folder = Path(pose_pool).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"data.pose_pool: {folder} is not a folder (OpenPose maps of the 1000 'a person, head shot' "
                                "images, thesis §5.5.1)")
    files = expand_inputs(folder, key="data.pose_pool") if any(folder.iterdir()) else []
    if not files:
        raise ValueError(f"data.pose_pool: {folder} holds no pose images (.png/.jpg/...); the pair generator draws one per pair")
    return files


class _ImagesOnly(Dataset):
    def __init__(self, items: Any) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        return {"image": item["x_A"] if isinstance(item, dict) else item}


class _FolderImages(Dataset):
    def __init__(self, files: Sequence[Path], size: int) -> None:
        self.files, self.size = list(files), int(size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, _ = fit_to_canvas(load_image_tensor(self.files[index]), self.size, self.size, "stretch")
        return {"image": image.clamp(-1, 1)}


class _PairRequests(Dataset):
    """One request per (identity, direction): identity image, pose (drawn with the seed), gender."""

    def __init__(self, identities: Sequence[tuple[str, Optional[Path], Optional[Tensor]]], directions: Sequence[str],
                 poses: Sequence[Path] | None, genders: Mapping[str, str], default_gender: str, size: int, seed: int) -> None:
        self.identities, self.directions, self.poses = list(identities), list(directions), poses
        self.genders, self.default_gender, self.size, self.seed = dict(genders), default_gender, int(size), int(seed)

    def __len__(self) -> int:
        return len(self.identities) * len(self.directions)

    def __getitem__(self, index: int) -> dict[str, Any]:
        ident, direction = divmod(index, len(self.directions))
        name, path, image = self.identities[ident]
        if image is None:
            image, _ = fit_to_canvas(load_image_tensor(path), self.size, self.size, "stretch")
        rng = sample_rng(self.seed, "pose", index)
        if self.poses is None:
            pose, pose_path = procedural_pose(rng, self.size), "embedded"
        else:
            pose_path = self.poses[int(rng.integers(0, len(self.poses)))]
            pose, _ = fit_to_canvas(load_image_tensor(pose_path), self.size, self.size, "stretch")
        gender = self.genders.get(name, self.default_gender)
        if gender not in GENDERS:
            raise ValueError(f"gender of identity {name!r} is {gender!r}; it must be one of {GENDERS}")
        return {"identity": image.clamp(-1, 1), "pose": pose.clamp(-1, 1), "direction": self.directions[direction],
                "gender": gender, "name": name, "path": str(path) if path is not None else name, "pose_path": str(pose_path)}


class PairGenerationDataModule(EmbeddedDataModule):
    """Inputs of the pair generator (§5.5.1): FFHQ images for the identity encoder, requests for ``predict``.

    Args:
        root: FFHQ image folder (recursive) for ``fit`` (identity-encoder training); ``null``: the
            embedded procedural portraits.
        identities: identity images for ``predict`` (files / folders / manifests); ``null``: embedded
            portraits (``num_identities``) or, with ``root``, the last ``num_identities`` images of ``root``.
        pose_pool: folder of OpenPose pose maps (one drawn per pair with the seed); ``null``: embedded
            procedural head-shot skeletons. An empty pool is an error.
        task / directions: the task and the directions to generate (``null``: all four).
        gender: ``[X]`` for every identity (``man`` / ``woman``), unless ``genders`` (a JSON file
            ``{identity stem: gender}``, e.g. from a face-attribute detector: [?] the thesis detects
            it, the detector is not named) gives it.
        size: image side of each half (512).
        num_images: embedded training portraits; ``num_identities``: embedded identities for predict.
    """

    def __init__(
        self,
        root: Optional[str] = None,
        identities: InputSpec = None,
        pose_pool: Optional[str] = None,
        task: str = "costume",
        directions: Optional[Sequence[str]] = None,
        gender: str = "woman",
        genders: Optional[str] = None,
        size: int = 512,
        num_images: int = 32,
        num_identities: int = 2,
        batch_size: int = 4,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, pin_memory)
        check_task(task)
        self.directions = [resolve_direction(task, d) for d in (directions or direction_names(task))]
        if gender not in GENDERS:
            raise ValueError(f"data.gender must be one of {GENDERS}, got {gender!r}")
        self.root, self.identities, self.pose_pool, self.task = root, identities, pose_pool, task
        self.gender, self.genders = gender, genders
        self.size, self.num_images, self.num_identities = int(size), int(num_images), int(num_identities)
        self.save_hyperparameters()

    def _embedded(self, split: str, count: int) -> GeneratedDataset:
        return GeneratedDataset(_MakePair(self.seed, split, self.size, self.task, "woman"), count)

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        if self.root is None:
            return _ImagesOnly(self._embedded("train", self.num_images)), _ImagesOnly(self._embedded("val", max(1, self.num_images // 8)))
        files = expand_inputs(self.root, key="data.root")
        n_val = max(1, int(round(len(files) * self.val_fraction))) if len(files) > 1 else 0
        return _FolderImages(files[: len(files) - n_val] or files, self.size), _FolderImages(files[len(files) - n_val:] or files, self.size)

    def predict_dataloader(self) -> DataLoader:
        if self.identities is not None:
            files = expand_inputs(self.identities, key="data.identities")
            from datamodules.predict_inputs import unique_names

            idents = [(n, f, None) for n, f in zip(unique_names(files), files)]
        elif self.root is not None:
            files = expand_inputs(self.root, key="data.root")[-self.num_identities:]
            idents = [(f.stem, f, None) for f in files]
        else:
            made = self._embedded("identity", self.num_identities)
            idents = [(f"identity{i:05d}", None, made[i]["x_A"]) for i in range(len(made))]
        poses = pose_pool_files(self.pose_pool) if self.pose_pool is not None else None
        genders: dict[str, str] = {}
        if self.genders is not None:
            path = Path(self.genders).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"data.genders: {path} not found (a JSON object {{identity stem: man|woman}})")
            genders = json.loads(path.read_text())
        dataset = _PairRequests(idents, self.directions, poses, genders, self.gender, self.size, self.seed)
        return predict_loader(dataset, [(self.size, self.size)] * len(dataset), self.batch_size, collate_dicts,
                              self.num_workers, trainer=getattr(self, "trainer", None), key="data.identities")


__all__ = ["GENDERS", "ManifestPairs", "PairGenerationDataModule", "pose_pool_files", "procedural_pose", "PortraitPairsDataModule", "TASKS", "check_task", "direction_names",
           "pair_prompts", "procedural_pair", "read_pair_manifest", "resolve_direction"]

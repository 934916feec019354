"""Readers of the four DiFT datasets in their published layouts (thesis 001 Ch. 4 §4.4).

* **CIFAR-10 64x64** as image folders: ``<root>/<split>/<class>/*.png`` (the usual export of
  the python pickles; images upsampled bicubically to ``size``, 64 in the thesis).
* **CelebV-Text** (Yu et al. 2023): ``<root>/videos/<id>.mp4`` (or already extracted frames
  ``<root>/frames/<id>/*.png``), captions ``<root>/texts/<id>.txt`` (first line used) and the
  precomputed T5 embeddings ``<root>/t5/<id>.pt`` / ``.npy`` / ``.safetensors`` (``[tokens, dim]``;
  the embedding folder is our layout: the dataset ships text, the embeddings are computed once
  with the T5-XXL encoder). Splits: ``<root>/<split>.txt`` lists ids, else a seeded split.
* **ShapeNet cars** as SRN / PixelNeRF ship them: ``<root>/cars_<split>/<object>/rgb/*.png``,
  ``pose/*.txt`` (16 numbers, camera-to-world, OpenCV axes) and ``intrinsics.txt`` (first line
  ``f cx cy 0``, last line ``H W``), normalised here to image units.
* **Super Mario Bros** (World 1-1, the authors' release; the chapter gives no file layout, so
  this is our reading): ``<root>/<split>/<episode>/frames/*.png`` and ``actions.txt`` with one
  integer action id per frame.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.predict_inputs import load_image_tensor

__all__ = ["CIFARFolder", "CelebVText", "MarioFrames", "SRNCars", "load_embedding", "read_srn_intrinsics"]


def _resize(image: Tensor, size: int) -> Tensor:
    if image.shape[-2:] == (size, size):
        return image
    return F.interpolate(image.unsqueeze(0), size=(size, size), mode="bicubic", align_corners=False, antialias=True)[0].clamp(-1, 1)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what}: {path} does not exist")
    return path


def load_embedding(path: Path) -> Tensor:
    """A precomputed embedding ``[tokens, dim]`` from ``.pt`` (weights_only), ``.npy`` or ``.safetensors``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text embedding file {path} does not exist")
    if path.suffix == ".npy":
        value = torch.from_numpy(np.load(path))
    elif path.suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        value = tensors.get("embedding", next(iter(tensors.values())))
    elif path.suffix == ".pt":
        value = torch.load(path, map_location="cpu", weights_only=True)
    else:
        raise ValueError(f"text embedding file {path}: use .pt, .npy or .safetensors")
    value = value.float()
    if value.dim() == 3 and value.shape[0] == 1:
        value = value[0]
    if value.dim() != 2:
        raise ValueError(f"text embedding file {path}: expected [tokens, dim], got {tuple(value.shape)}")
    return value


class CIFARFolder(Dataset):
    def __init__(self, root: str, split: str, size: int = 64) -> None:
        folder = _require(Path(root) / split, "CIFAR-10 image folder")
        self.files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if not self.files:
            raise FileNotFoundError(f"CIFAR-10 image folder {folder} holds no images")
        self.size = int(size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        image = _resize(load_image_tensor(self.files[index]), self.size)
        return {"views": image.unsqueeze(0), "image": image}


class CelebVText(Dataset):
    def __init__(self, root: str, ids: Sequence[str], size: int, frames: int, text_tokens: Optional[int] = None) -> None:
        self.root, self.ids, self.size, self.frames, self.text_tokens = Path(root), list(ids), int(size), int(frames), text_tokens

    @staticmethod
    def list_ids(root: str, split: str) -> Optional[list[str]]:
        file = Path(root) / f"{split}.txt"
        return [line.strip() for line in file.read_text().splitlines() if line.strip()] if file.is_file() else None

    @staticmethod
    def all_ids(root: str) -> list[str]:
        base = Path(root)
        ids = sorted({p.stem for p in (base / "videos").glob("*.mp4")} | {p.name for p in (base / "frames").glob("*") if p.is_dir()})
        if not ids:
            raise FileNotFoundError(f"CelebV-Text root {root}: no videos/<id>.mp4 or frames/<id>/ found")
        return ids

    def __len__(self) -> int:
        return len(self.ids)

    def _frames(self, vid: str) -> Tensor:
        folder = self.root / "frames" / vid
        if folder.is_dir():
            files = sorted(folder.glob("*.png"))[: self.frames]
            video = torch.stack([_resize(load_image_tensor(f), self.size) for f in files])
        else:
            from datamodules.video_clips import decode_video

            video = decode_video(_require(self.root / "videos" / f"{vid}.mp4", "CelebV-Text video"), self.size, self.size, self.frames)
            video = video.float() / 127.5 - 1
        if video.shape[0] < self.frames:
            raise ValueError(f"CelebV-Text video {vid} has {video.shape[0]} frames, data.clip_frames={self.frames}")
        return video

    def __getitem__(self, index: int) -> dict:
        vid = self.ids[index]
        video = self._frames(vid)
        embedding = None
        for ext in (".pt", ".npy", ".safetensors"):
            if (self.root / "t5" / f"{vid}{ext}").is_file():
                embedding = load_embedding(self.root / "t5" / f"{vid}{ext}")
                break
        if embedding is None:
            raise FileNotFoundError(f"CelebV-Text {vid}: no precomputed T5 embedding {self.root / 't5' / vid}.pt|.npy|.safetensors")
        caption_file = self.root / "texts" / f"{vid}.txt"
        caption = caption_file.read_text().splitlines()[0].strip() if caption_file.is_file() else ""
        return {"views": video, "video": video, "frame_index": torch.arange(self.frames).float(), "text": embedding, "caption": caption}


def read_srn_intrinsics(path: Path) -> Tensor:
    """SRN ``intrinsics.txt`` -> normalised ``K [3, 3]`` (``f / W``, ``cx / W``, ``cy / H``)."""
    lines = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    try:
        f, cx, cy = (float(v) for v in lines[0][:3])
        height, width = (float(v) for v in lines[-1][:2])
    except (ValueError, IndexError) as error:
        raise ValueError(f"SRN intrinsics file {path}: expected 'f cx cy 0' first and 'H W' last ({error})") from error
    return torch.tensor([[f / width, 0.0, cx / width], [0.0, f / height, cy / height], [0.0, 0.0, 1.0]])


class SRNCars(Dataset):
    def __init__(self, root: str, split: str, size: int, views: int, seed: int = 0) -> None:
        folder = _require(Path(root) / f"cars_{split}", "ShapeNet cars (SRN layout)")
        self.objects = sorted(p for p in folder.iterdir() if (p / "rgb").is_dir())
        if not self.objects:
            raise FileNotFoundError(f"ShapeNet cars folder {folder} holds no <object>/rgb/ folders")
        self.size, self.views, self.seed = int(size), int(views), int(seed)

    def __len__(self) -> int:
        return len(self.objects)

    def __getitem__(self, index: int) -> dict:
        obj = self.objects[index]
        files = sorted((obj / "rgb").glob("*.png"))
        if len(files) < self.views + 1:
            raise ValueError(f"{obj}: {len(files)} views, but {self.views} target views + 1 input view were asked for")
        order = np.random.default_rng([self.seed, index]).permutation(len(files))[: self.views + 1]
        images, poses = [], []
        for i in order:
            images.append(_resize(load_image_tensor(files[i]), self.size))
            pose_file = _require(obj / "pose" / f"{files[i].stem}.txt", "SRN pose")
            poses.append(torch.tensor([float(v) for v in pose_file.read_text().split()]).reshape(4, 4))
        k = read_srn_intrinsics(_require(obj / "intrinsics.txt", "SRN intrinsics"))
        return {"views": torch.stack(images[1:]), "camera": torch.stack(poses[1:]), "intrinsics": k.expand(self.views, 3, 3).clone(),
                "input_view": images[0], "input_camera": poses[0]}


def read_actions(path: Path, num_actions: int) -> Tensor:
    """``actions.txt`` (one integer id per line) -> ids ``[F]`` (clear error on bad lines)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"action file {path} does not exist")
    ids = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            ids.append(int(line.split()[0]))
        except ValueError as error:
            raise ValueError(f"action file {path}, line {n}: {line!r} is not an integer action id") from error
    ids_t = torch.tensor(ids, dtype=torch.long)
    if len(ids) and (ids_t.min() < 0 or ids_t.max() >= num_actions):
        raise ValueError(f"action file {path}: ids must be in [0, {num_actions}), got {ids_t.min()}..{ids_t.max()}")
    return ids_t


class MarioFrames(Dataset):
    """Windows of ``frames`` consecutive frames from every episode (stride = ``frames``)."""

    def __init__(self, root: str, split: str, size: int, frames: int, num_actions: int) -> None:
        folder = _require(Path(root) / split, "Super Mario Bros split")
        self.size, self.frames, self.num_actions = int(size), int(frames), int(num_actions)
        self.windows: list[tuple[list[Path], Tensor]] = []
        for episode in sorted(p for p in folder.iterdir() if p.is_dir()):
            files = sorted((episode / "frames").glob("*.png"))
            actions = read_actions(episode / "actions.txt", num_actions)
            if len(actions) < len(files):
                raise ValueError(f"{episode / 'actions.txt'} has {len(actions)} actions for {len(files)} frames")
            for start in range(0, len(files) - self.frames + 1, self.frames):
                self.windows.append((files[start: start + self.frames], actions[start: start + self.frames]))
        if not self.windows:
            raise FileNotFoundError(f"Super Mario Bros split {folder}: no episode with {self.frames} frames")

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict:
        files, actions = self.windows[index]
        video = torch.stack([_resize(load_image_tensor(f), self.size) for f in files])
        return {"views": video, "frame_index": torch.arange(self.frames).float(),
                "actions": F.one_hot(actions, self.num_actions).float(), "target": video[1:]}

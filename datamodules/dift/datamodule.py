"""``DiFTDataModule``: the four DiFT modalities, published layouts or embedded defaults (thesis 001 Ch. 4 §4.4).

Batch keys (per item; collated with a batch axis first):

* ``views [V, 3, H, W]`` in [-1, 1]: the views of one field (V = 1 image, ``clip_frames``
  frames of a video or game, ``views_per_field`` camera views); ``image``: the first view;
* ``frame_index [V]`` (video, game); ``camera [V, 4, 4]`` + ``intrinsics [V, 3, 3]`` and the
  one-shot condition ``input_view [3, H, W]`` (3D); ``actions [V, A]`` one-hot (game);
  ``text [Z, D]`` precomputed T5 embeddings + ``caption`` (video); ``video`` (= ``views``,
  the FVD key); ``target`` (game: frames 1.., what the rollout must reproduce).

``source``: ``embedded`` (``root`` null; :mod:`datamodules.dift.embedded`), ``cifar10``,
``celebv_text``, ``srn_cars`` or ``mario`` (:mod:`datamodules.dift.layouts`).

Predict (``python cli.py predict``; every input processed, outputs named after inputs):
``image``: ``num_samples`` samples; ``video``: one video per embedding file in
``predict_text`` (``.pt``/``.npy``/``.safetensors``; without files, the validation captions);
``views``: every image of ``predict_inputs`` is the input view, rendered at ``predict_views``
cameras on an orbit (our default: elevation 30 deg, evenly spaced azimuths, radius 3,
normalised focal 1.2); ``game``: every start frame of ``predict_inputs`` with the action file
``predict_actions`` (one for all inputs, or one per input; one id per line; it must cover the
start frame plus ``predict_frames`` frames). Input images of any size are fitted to the model's
square canvas with the suite's ``pad`` mapping, and the generated views / frames are mapped
back to the input's size and aspect ratio (``restore_from_canvas``); videos from text are
written at the model size.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from datamodules._common import EmbeddedDataModule, GeneratedDataset, collate_dicts, split_indices
from datamodules.dift import embedded as emb
from datamodules.dift import layouts
from datamodules.predict_inputs import IMAGE_EXTENSIONS, expand_inputs, fit_to_canvas, load_image_tensor, release_predict_limit, unique_names

__all__ = ["DiFTDataModule", "SOURCES"]

SOURCES = {"image": ("embedded", "cifar10"), "video": ("embedded", "celebv_text"), "views": ("embedded", "srn_cars"),
           "game": ("embedded", "mario")}


class _Subset(Dataset):
    def __init__(self, base: Dataset, indices: Sequence[int]) -> None:
        self.base, self.indices = base, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        return self.base[self.indices[i]]


def _digits_item(index: int, images: torch.Tensor) -> dict:
    image = images[index].expand(3, -1, -1).clone()
    return {"views": image.unsqueeze(0), "image": image}


def orbit_cameras(count: int, elevation_deg: float = 30.0, distance: float = 3.0) -> torch.Tensor:
    elevation = np.deg2rad(elevation_deg)
    poses = []
    for i in range(count):
        azimuth = 2 * np.pi * i / count
        position = distance * np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
        poses.append(emb.look_at(position))
    return torch.from_numpy(np.stack(poses)).float()


class DiFTDataModule(EmbeddedDataModule):
    """Fields of one modality (module docstring).

    Args:
        modality: ``image``, ``video``, ``views`` or ``game``.
        source: ``embedded`` or the published dataset of the modality.
        root: dataset folder (``None`` with ``embedded``).
        size: view side in pixels (64 CIFAR-10, 256 CelebV-Text, 128 ShapeNet).
        clip_frames: frames per video / game field.
        eval_clip_frames: game only: frames per validation / test clip (``None``: ``clip_frames``);
            Table 4.2 evaluates 100 frames, so its clips hold 101 (the first is context only).
        views_per_field: target camera views per 3D field.
        text_dim, text_tokens: size of the embedded stand-in caption embeddings.
        num_actions: game action classes.
        num_train, num_val: embedded fields per split.
    """

    #: the results rows' ``dataset`` per modality on embedded data (metrics.results_rows.dataset_field)
    STAND_INS = {"image": "embedded digits (stand-in for CIFAR-10)",
                 "video": "embedded moving shapes (stand-in for CelebV-Text)",
                 "views": "embedded sphere scenes (stand-in for ShapeNet cars)",
                 "game": "embedded sprite game (stand-in for Super Mario Bros)"}

    @property
    def stand_in_name(self) -> str:
        """The embedded stand-in of this modality, named in results rows instead of the paper's dataset."""
        return self.STAND_INS[self.modality]

    def __init__(
        self,
        modality: str = "image",
        source: str = "embedded",
        root: Optional[str] = None,
        size: int = 64,
        clip_frames: int = 16,
        eval_clip_frames: Optional[int] = None,
        views_per_field: int = 8,
        text_dim: int = 4096,
        text_tokens: int = 16,
        num_actions: int = len(emb.GAME_ACTIONS),
        num_train: int = 256,
        num_val: int = 32,
        num_samples: Optional[int] = None,
        predict_text: Union[str, Sequence[str], None] = None,
        predict_inputs: Union[str, Sequence[str], None] = None,
        predict_actions: Union[str, Sequence[str], None] = None,
        predict_views: int = 8,
        predict_frames: int = 16,
        batch_size: int = 8,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, val_fraction=val_fraction, seed=seed)
        if modality not in SOURCES:
            raise ValueError(f"data.modality={modality!r} is not one of {list(SOURCES)}")
        if source not in SOURCES[modality]:
            raise ValueError(f"data.source={source!r} is not one of {list(SOURCES[modality])} for modality {modality!r}")
        if source != "embedded" and not root:
            raise ValueError(f"data.source={source!r} needs data.root (the dataset folder)")
        self.modality, self.source, self.root, self.size = modality, source, root, int(size)
        self.clip_frames, self.views_per_field = int(clip_frames), int(views_per_field)
        if eval_clip_frames is not None and (modality != "game" or int(eval_clip_frames) < 2):
            raise ValueError(f"data.eval_clip_frames={eval_clip_frames} needs modality 'game' and at least 2 frames")
        self.eval_clip_frames = int(eval_clip_frames) if eval_clip_frames is not None else self.clip_frames
        self.text_dim, self.text_tokens, self.num_actions = int(text_dim), int(text_tokens), int(num_actions)
        self.num_train, self.num_val = int(num_train), int(num_val)
        self.predict_num_samples = num_samples
        self.predict_text, self.predict_inputs, self.predict_actions = predict_text, predict_inputs, predict_actions
        self.predict_views, self.predict_frames = int(predict_views), int(predict_frames)

    # ------------------------------------------------------------------ datasets
    def _embedded(self, split: str) -> Dataset:
        length = self.num_train if split == "train" else self.num_val
        if self.modality == "video":
            make = partial(emb.make_video, split=split, seed=self.seed, size=self.size, frames=self.clip_frames,
                           text_dim=self.text_dim, text_tokens=self.text_tokens)
        elif self.modality == "views":
            make = partial(emb.make_views, split=split, seed=self.seed, size=self.size, views=self.views_per_field)
        else:
            make = partial(emb.make_game, split=split, seed=self.seed, size=self.size,
                           frames=self.clip_frames if split == "train" else self.eval_clip_frames)
        return GeneratedDataset(make, length)

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        if self.source == "embedded":
            if self.modality == "image":
                from datamodules.embedded_digits import load_digits_images

                images, _ = load_digits_images(self.size)
                train, val = split_indices(len(images), self.val_fraction, self.seed)
                base = GeneratedDataset(partial(_digits_item, images=images), len(images))
                return _Subset(base, train.tolist()), _Subset(base, val.tolist())
            return self._embedded("train"), self._embedded("val")
        if self.source == "cifar10":
            return layouts.CIFARFolder(self.root, "train", self.size), layouts.CIFARFolder(self.root, "test", self.size)
        if self.source == "srn_cars":
            return (layouts.SRNCars(self.root, "train", self.size, self.views_per_field, self.seed),
                    layouts.SRNCars(self.root, "test", self.size, self.views_per_field, self.seed))
        if self.source == "mario":
            return (layouts.MarioFrames(self.root, "train", self.size, self.clip_frames, self.num_actions),
                    layouts.MarioFrames(self.root, "test", self.size, self.eval_clip_frames, self.num_actions))
        train_ids = layouts.CelebVText.list_ids(self.root, "train")
        val_ids = layouts.CelebVText.list_ids(self.root, "test")
        if train_ids is None or val_ids is None:
            ids = layouts.CelebVText.all_ids(self.root)
            train, val = split_indices(len(ids), self.val_fraction, self.seed)
            train_ids, val_ids = [ids[i] for i in train], [ids[i] for i in val]
        return (layouts.CelebVText(self.root, train_ids, self.size, self.clip_frames),
                layouts.CelebVText(self.root, val_ids, self.size, self.clip_frames))

    # ------------------------------------------------------------------ predict
    def _image_requests(self) -> list[dict]:
        if self.predict_inputs is None:
            raise ValueError(f"predict for modality {self.modality!r} needs --data.predict_inputs (image files or a folder)")
        files = expand_inputs(self.predict_inputs, key="data.predict_inputs", extensions=IMAGE_EXTENSIONS)
        out = []
        for file, name in zip(files, unique_names(files)):
            image, place = fit_to_canvas(load_image_tensor(file), self.size, self.size, "pad")
            out.append({"input_view": image, "name": name, "path": str(file), "placement": place})
        return out

    def predict_requests(self) -> list[dict]:
        """The predict items of the modality (module docstring)."""
        if self.modality == "video":
            if self.predict_text is None:
                self.setup()
                return [dict(self.val_dataset[i], name=f"val{i:04d}") for i in range(min(len(self.val_dataset), self.batch_size))]
            files = expand_inputs(self.predict_text, key="data.predict_text", extensions=(".pt", ".npy", ".safetensors"))
            return [{"text": layouts.load_embedding(f), "name": n, "path": str(f)} for f, n in zip(files, unique_names(files))]
        if self.modality == "views":
            cameras = orbit_cameras(self.predict_views)
            k = torch.from_numpy(emb.DEFAULT_INTRINSICS).float().expand(self.predict_views, 3, 3).clone()
            return [dict(r, camera=cameras, intrinsics=k) for r in self._image_requests()]
        requests = self._image_requests()
        specs = self.predict_actions
        if specs is None:
            raise ValueError("predict for the game needs --data.predict_actions (an action file: one id per line)")
        specs = [specs] if isinstance(specs, (str, Path)) else list(specs)
        if len(specs) not in (1, len(requests)):
            raise ValueError(f"data.predict_actions: give one action file or one per input ({len(requests)}), got {len(specs)}")
        need = 1 + self.predict_frames
        for i, request in enumerate(requests):
            file = Path(specs[0] if len(specs) == 1 else specs[i])
            ids = layouts.read_actions(file, self.num_actions)
            if len(ids) < need:
                raise ValueError(f"action file {file} has {len(ids)} actions; the rollout needs {need} "
                                 f"(the start frame + data.predict_frames={self.predict_frames})")
            request["actions"] = F.one_hot(ids[:need], self.num_actions).float()
            request["action_file"] = str(file)
        return requests

    def predict_dataloader(self) -> DataLoader:
        if self.modality == "image":
            return super().predict_dataloader()
        requests = self.predict_requests()
        release_predict_limit(getattr(self, "trainer", None), len(requests), "data.predict_inputs")
        # embedding files may differ in token count: one prompt per batch then
        size = 1 if self.modality == "video" and self.predict_text is not None else self.batch_size
        return DataLoader(requests, batch_size=size, shuffle=False, collate_fn=collate_dicts)

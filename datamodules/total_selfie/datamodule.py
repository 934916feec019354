"""``TotalSelfieDataModule``: training pairs, per-capture fine-tuning and capture folders
(thesis 000, Ch. 3, §3.2.1, §3.2.2, supplement §3.5.5, §3.6.1).

Stages (``mode``):

* ``"main"`` (selfie-conditioned inpainting training, Eq. 3.1): synthetic pairs from ``root``
  (``layouts.read_pair``) or, with ``root: null``, embedded stick-figure pairs
  (:mod:`.embedded`; logged as such). Batches: ``image`` (``I'_gt``), ``mask`` (``M'``, 1 =
  inpaint), ``selfies`` ``[B, 4, 3, S, S]`` (face, upper, lower, shoes), and where known
  ``background``, ``foreground``, ``foreground_image``, ``pose``.
* ``"finetune"`` (per-capture fine-tuning, §3.5.5): ``finetune_samples`` (200) paste-augmented
  images of one ``capture``: a random candidate ``I_n`` (files in ``<capture>/candidates/``, the
  no-pose generations of ``predict``; [GAP] fallback when absent: the capture's reference photos),
  a random selfie resized to the height of its body part's box in ``I_n`` and pasted, centred,
  into the masked background ``I_b * (1 - M)``. As in the authors' ``generate_augmentation_pbe.py``
  [EXT], ``loss_mask`` keeps the loss to the known pixels (outside ``M`` and the pasted selfie).
  Its validation / test split is the capture's ground-truth photo when it has one.

Test split (Table 3.1): ``test_root`` captures with ``gt.*`` (the real photo; its parsing gives
the foreground, the mask ``M`` = box x1.1 and the Canny pose ``I_t``, "we employ ground truth
Canny Edge to define the target pose for all rows"); without ``test_root``, the validation split.

Predict: ``predict_captures`` (capture folders, or folders holding capture folders; every one
is processed). The background and the photos are brought to the square model canvas with
``fit`` (``pad`` keeps the aspect ratio, the output is mapped back to the background's frame);
selfies are resized to the CLIP input. Without ``predict_captures`` the embedded captures are used.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules._common import EmbeddedDataModule, GeneratedDataset, collate_dicts, sample_rng, split_counts
from datamodules.predict_inputs import fit_to_canvas, release_predict_limit
from datamodules.total_selfie.embedded import embedded_capture, embedded_pair
from datamodules.total_selfie.layouts import SELFIE_NAMES, find_image, pair_folders, read_capture_files, read_pair, resize
from datamodules.total_selfie.paste import part_box, paste_selfie
from lightning_modules.total_selfie.parsing import HumanParser, StandInHumanParser
from lightning_modules.total_selfie.reference_selection import (
    is_full_body, parsing_canny, person_box, scaled_box_mask,
)

log = logging.getLogger(__name__)
MODES = ("main", "finetune")
_PART_GROUP = {"face": "face", "upper": "upper", "lower": "lower", "shoes": "shoes"}


class _ListDataset(Dataset):
    def __init__(self, items: Sequence[Any]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        return self.items[index]


class _PairFolders(Dataset):
    def __init__(self, folders: Sequence[Path], size: int, selfie_size: int) -> None:
        self.folders, self.size, self.selfie_size = list(folders), size, selfie_size

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return read_pair(self.folders[index], self.size, self.selfie_size)


def evaluation_item(capture: dict[str, Any], parser: HumanParser, size: int, selfie_size: int,
                    labels: Optional[torch.Tensor] = None) -> dict[str, Any]:
    """A Table 3.1 item from a capture with its real photo: pose, mask and foreground from the photo's parsing."""
    if capture.get("gt") is None:
        raise FileNotFoundError(f"capture {capture['path']} has no gt.png (the real full-body photo for evaluation)")
    gt = resize(capture["gt"], size)
    if labels is None:
        labels = parser.parse(gt)
    labels = torch.nn.functional.interpolate(labels[None, None].float(), size=(size, size), mode="nearest")[0, 0].long()
    fg = (labels > 0).float()[None]
    return {
        "image": gt, "background": resize(capture["background"], size), "foreground": fg,
        "foreground_image": gt * fg - (1 - fg), "pose": parsing_canny(labels),
        "mask": scaled_box_mask(person_box(labels), size, size),
        "selfies": torch.stack([resize(capture[n], selfie_size) for n in SELFIE_NAMES]), "name": capture["name"],
    }


class PasteAugmentation(Dataset):
    """The 200 fine-tuning images of one capture (module docstring, §3.5.5)."""

    def __init__(self, capture: dict[str, Any], candidates: Sequence[torch.Tensor], parser: HumanParser, size: int,
                 selfie_size: int, num_samples: int, seed: int, mask_scale: float = 1.1) -> None:
        self.parser, self.size, self.num_samples, self.seed = parser, size, int(num_samples), int(seed)
        groups = parser.groups()
        self.groups = groups
        self.candidates = [resize(c, size) for c in candidates]
        self.candidate_maps = [parser.parse(c) for c in self.candidates]
        boxes = [person_box(m) for m in self.candidate_maps]
        top = min(b[0] for b in boxes); left = min(b[1] for b in boxes)
        bottom = max(b[2] for b in boxes); right = max(b[3] for b in boxes)
        self.mask = scaled_box_mask((top, left, bottom, right), size, size, mask_scale)
        self.background = resize(capture["background"], size)
        self.selfies_full = {n: capture[n] for n in SELFIE_NAMES}
        self.crops = {}
        for name in SELFIE_NAMES:  # crop each selfie to its own body part (the authors' crop before pasting)
            image = capture[name]
            labels = set(groups[_PART_GROUP[name]]) | (set(groups.get("face", set())) | {2} if name == "face" else set())
            box = part_box(parser.parse(image), labels)
            self.crops[name] = image if box is None else image[:, box[0]:box[2], box[1]:box[3]]
        self.selfies = torch.stack([resize(capture[n], selfie_size) for n in SELFIE_NAMES])

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = sample_rng(self.seed, "train", index)
        masked = self.background * (1 - self.mask) - self.mask  # the masked I_b (black inside M)
        loss_mask = 1 - self.mask
        for _ in range(len(self.candidates) * len(SELFIE_NAMES)):
            k = int(rng.integers(len(self.candidates)))
            name = SELFIE_NAMES[int(rng.integers(len(SELFIE_NAMES)))]
            box = part_box(self.candidate_maps[k], set(self.groups[_PART_GROUP[name]]))
            if box is not None:
                break
        else:
            raise ValueError("no body part found in any fine-tuning candidate (human parsing returned no garments)")
        image = paste_selfie(masked, self.crops[name], box)
        pasted = paste_selfie(torch.zeros_like(masked[:1]), torch.ones_like(self.crops[name][:1]), box)
        loss_mask = torch.maximum(loss_mask, pasted)
        return {"image": image.clamp(-1, 1), "background": self.background, "mask": self.mask, "selfies": self.selfies,
                "loss_mask": loss_mask, "name": f"augment{index:04d}_{name}"}


class TotalSelfieDataModule(EmbeddedDataModule):
    """Total Selfie data (module docstring).

    Args:
        root: synthetic pair folder (``<root>/train|val/<pair>/...``); ``None``: embedded pairs.
        test_root: folder of evaluation captures (each with ``gt.*``) for Table 3.1; ``None``: the val split.
        mode: ``"main"`` or ``"finetune"``.
        capture: the capture folder fine-tuned on (``mode: finetune``); ``None``: embedded capture 0.
        predict_captures: capture folders (or parents of capture folders) for ``predict``.
        size: model resolution (512); selfie_size: CLIP input side (224).
        num_samples: embedded pairs in total (train + val); finetune_samples: paste-augmented images (200).
        num_eval_captures: embedded evaluation captures (test split of ``mode: finetune`` with no capture).
        fit: ``"pad"`` or ``"stretch"`` for predict backgrounds / photos on the square canvas.
        human_parser: parser for evaluation captures and fine-tuning (``None``: the named stand-in).
    """

    def __init__(self, root: Optional[str] = None, test_root: Optional[str] = None, mode: str = "main",
                 capture: Optional[str] = None, predict_captures: Optional[list[str]] = None, size: int = 512,
                 selfie_size: int = 224, num_samples: int = 256, finetune_samples: int = 200, fit: str = "pad",
                 human_parser: Optional[HumanParser] = None, batch_size: int = 12, num_workers: int = 0,
                 val_fraction: float = 0.1, seed: int = 0, pin_memory: bool = False) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, pin_memory)
        if mode not in MODES:
            raise ValueError(f"data.init_args.mode={mode!r} is not one of {list(MODES)}")
        if fit not in ("pad", "stretch"):
            raise ValueError(f"data.init_args.fit={fit!r} is not 'pad' or 'stretch'")
        self.root, self.test_root, self.mode, self.capture = root, test_root, mode, capture
        self.predict_captures = list(predict_captures or [])
        self.size, self.selfie_size = int(size), int(selfie_size)
        self.num_samples, self.finetune_samples, self.fit = int(num_samples), int(finetune_samples), fit
        self.parser = human_parser or StandInHumanParser()
        self.test_dataset: Optional[Dataset] = None

    # ------------------------------------------------------------------ datasets
    def _capture(self) -> dict[str, Any]:
        if self.capture is None:
            return embedded_capture(self.seed, 0, self.size, self.selfie_size)
        return read_capture_files(Path(self.capture))

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        if self.mode == "finetune":
            capture = self._capture()
            candidates = self._candidates(capture)
            log.info("per-capture fine-tuning on %s: %d paste-augmented images from %d candidates",
                     capture["path"], self.finetune_samples, len(candidates))
            train = PasteAugmentation(capture, candidates, self.parser, self.size, self.selfie_size, self.finetune_samples,
                                      self.seed)
            val = _ListDataset([evaluation_item(capture, self.parser, self.size, self.selfie_size, capture.get("gt_labels"))]
                               if capture.get("gt") is not None else [train[0]])
            return train, val
        if self.root is None:
            num_train, num_val = split_counts(self.num_samples, self.val_fraction)
            log.info("using embedded stick-figure selfie pairs (generated, no download): %d train / %d val at %d px",
                     num_train, num_val, self.size)
            return tuple(GeneratedDataset(lambda i, s=split: embedded_pair(self.seed, s, i, self.size, self.selfie_size), n)
                         for split, n in (("train", num_train), ("val", num_val)))
        root = Path(self.root)
        return (_PairFolders(pair_folders(root, "train"), self.size, self.selfie_size),
                _PairFolders(pair_folders(root, "val"), self.size, self.selfie_size))

    def _candidates(self, capture: dict[str, Any]) -> list[torch.Tensor]:
        """``I_n`` candidates: ``<capture>/candidates/*`` if present, else the full-body photos (fallback, [GAP])."""
        folder = Path(str(capture["path"])) / "candidates"
        if folder.is_dir():
            from datamodules.codi_tasks import IMAGE_EXTENSIONS
            from datamodules.predict_inputs import load_image_tensor

            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            if files:
                return [load_image_tensor(p) for p in files]
        photos = ([capture["reference"]] if capture.get("reference") is not None else []) + list(capture["photos"])
        groups = self.parser.groups()
        full = [p for p in photos if is_full_body(self.parser.parse(p), groups)]
        if not full:
            raise ValueError(f"capture {capture['path']}: no full-body photo among photos/ (and no candidates/) to place "
                             "the selfies for fine-tuning")
        return full

    def setup(self, stage: Optional[str] = None) -> None:
        super().setup(stage)
        if stage in (None, "test") and self.test_dataset is None and self.test_root is not None:
            root = Path(self.test_root)
            folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
            if not folders:
                raise FileNotFoundError(f"data.init_args.test_root: no capture folders in {root}")
            self.test_dataset = _ListDataset([evaluation_item(read_capture_files(f), self.parser, self.size,
                                                              self.selfie_size) for f in folders])

    def test_dataloader(self) -> DataLoader:
        if self.test_root is None:
            return super().test_dataloader()
        self.setup("test")
        return DataLoader(self.test_dataset, batch_size=self.batch_size, collate_fn=collate_dicts, num_workers=self.num_workers)

    # ------------------------------------------------------------------ predict
    def _capture_folders(self) -> list[Path]:
        folders: list[Path] = []
        for spec in self.predict_captures:
            path = Path(spec).expanduser()
            if not path.is_dir():
                raise FileNotFoundError(f"data.init_args.predict_captures: {path} is not a capture folder")
            if find_image(path, "face", required=False) is not None or find_image(path, "background", required=False):
                folders.append(path)
            else:
                inner = sorted(p for p in path.iterdir() if p.is_dir())
                if not inner:
                    raise FileNotFoundError(f"data.init_args.predict_captures: {path} holds no capture (face.png, ...)")
                folders.extend(inner)
        return folders

    def predict_item(self, capture: dict[str, Any]) -> dict[str, Any]:
        """A capture brought to the model canvas (``fit``), selfies kept at their size."""
        background, place = fit_to_canvas(capture["background"], self.size, self.size, self.fit)
        item = {name: capture[name] for name in SELFIE_NAMES}
        item.update(background=background, placement=place, name=capture["name"], path=capture["path"],
                    photos=[fit_to_canvas(p, self.size, self.size, self.fit)[0] for p in capture["photos"]],
                    photo_paths=list(capture["photo_paths"]),
                    reference=None if capture.get("reference") is None else fit_to_canvas(capture["reference"], self.size, self.size, self.fit)[0],
                    reference_path=capture.get("reference_path"),
                    pose=None if capture.get("pose") is None else fit_to_canvas(capture["pose"], self.size, self.size, self.fit, fill=0.0)[0],
                    pose_path=capture.get("pose_path"))
        return item

    def predict_dataloader(self) -> DataLoader:
        if self.predict_captures:
            folders = self._capture_folders()
            release_predict_limit(self.trainer if self._trainer_attached() else None, len(folders), "data.init_args.predict_captures")
            dataset: Dataset = _LazyCaptures(folders, self)
        else:
            log.info("predict: no data.init_args.predict_captures given; using 2 embedded stick-figure captures")
            dataset = _ListDataset([self.predict_item(embedded_capture(self.seed, i, self.size, self.selfie_size)) for i in range(2)])
        return DataLoader(dataset, batch_size=1, collate_fn=lambda items: {"captures": list(items)}, num_workers=0)

    def _trainer_attached(self) -> bool:
        try:
            return self.trainer is not None
        except RuntimeError:
            return False


class _LazyCaptures(Dataset):
    def __init__(self, folders: Sequence[Path], owner: TotalSelfieDataModule) -> None:
        self.folders, self.owner = list(folders), owner

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.owner.predict_item(read_capture_files(self.folders[index]))


__all__ = ["MODES", "PasteAugmentation", "TotalSelfieDataModule", "evaluation_item"]

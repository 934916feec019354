"""Text-image pairs for the LDM scaling study (thesis 001, Ch. 2: ~600M internal WebLI pairs, not public).

``TextImageDataModule`` reads the common caption-beside-image layout: every image file under
``root`` (``root/train`` and ``root/val`` if both exist, else a seeded split) with a ``<stem>.txt``
caption next to it (a missing caption is reported by name). Batches: ``image`` ``[B, 3, size, size]``
in [-1, 1] (resized to cover, centre-cropped) and ``caption`` (list of strings). A COCO-2014
validation export (images + captions, the thesis's FID/CLIP set) fits the same layout.

``coco_captions`` (``captions_val2014.json``) with ``coco_images`` (the ``val2014/`` folder) makes the
``test`` split the thesis's text-to-image protocol (Table 2.1): ``coco_pairs`` (30,000) distinct COCO-2014
validation images drawn with a fixed seed, one of each image's five captions (also seeded) as the prompt;
the real images feed FID, the captions the generator and CLIP score. ([GAP] the thesis says "30k samples"
of COCO-2014 val without the selection; distinct images, one random caption each, is the usual protocol.)

``root: null`` is the embedded default: the scikit-learn digits (3 channels) with the caption
``"a handwritten digit <label>"`` (``prompt_template``) in every item, so conditioned metrics
(CLIP score, batch key ``caption``) run on it; ``label`` is kept too.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from datamodules._common import EmbeddedDataModule, TensorDictDataset, collate_dicts, split_indices
from datamodules.codi_tasks import IMAGE_EXTENSIONS, read_image
from datamodules.embedded_digits import load_digits_images
from datamodules.predict_inputs import PromptRequests, read_prompts, release_predict_limit

log = logging.getLogger(__name__)


class _CaptionedDigits(TensorDictDataset):
    """The embedded digits with ``caption = prompt_template.format(label)`` added to each item (``tensors`` kept)."""

    def __init__(self, tensors: dict, prompt_template: str) -> None:
        super().__init__(tensors)
        self.prompt_template = prompt_template

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        item["caption"] = self.prompt_template.format(int(item["label"]))
        return item


class _CaptionedImages(Dataset):
    def __init__(self, files: list[Path], size: int) -> None:
        self.files, self.size = files, int(size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        path = self.files[index]
        caption_path = path.with_suffix(".txt")
        if not caption_path.is_file():
            raise FileNotFoundError(f"image {path} has no caption file {caption_path}")
        return {"image": _cover_crop(read_image(path), self.size), "caption": caption_path.read_text().strip()}


def _cover_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    image = F.interpolate(image[None], size=new, mode="bicubic", antialias=True, align_corners=False)[0]
    top, left = (new[0] - size) // 2, (new[1] - size) // 2
    return image[:, top : top + size, left : left + size].clamp(-1, 1)


def read_coco_captions(annotations: Union[str, Path], images: Union[str, Path], pairs: int,
                       seed: int = 0) -> list[tuple[Path, str]]:
    """``pairs`` seeded (image file, caption) pairs of distinct images from a COCO captions JSON (module docstring)."""
    import json

    path, folder = Path(annotations).expanduser(), Path(images).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"data.init_args.coco_captions: {path} does not exist (COCO's captions_val2014.json)")
    if not folder.is_dir():
        raise FileNotFoundError(f"data.init_args.coco_images: {folder} does not exist (COCO's val2014/ image folder)")
    try:
        data = json.loads(path.read_text())
        files = {int(im["id"]): im["file_name"] for im in data["images"]}
        captions: dict[int, list[str]] = {}
        for ann in data["annotations"]:
            captions.setdefault(int(ann["image_id"]), []).append(str(ann["caption"]).strip())
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"data.init_args.coco_captions: {path} is not a COCO captions file ({err!r}; needs "
                         "'images' [id, file_name] and 'annotations' [image_id, caption])") from None
    ids = sorted(i for i in files if captions.get(i))
    if pairs > len(ids):
        raise ValueError(f"data.init_args.coco_pairs={pairs} but {path} has only {len(ids)} captioned images")
    rng = np.random.default_rng([seed, 2014])
    chosen = sorted(rng.choice(len(ids), size=pairs, replace=False).tolist())
    out = []
    for i in chosen:
        image_id = ids[i]
        options = captions[image_id]
        out.append((folder / files[image_id], options[int(rng.integers(len(options)))]))
    return out


class _CocoPairs(Dataset):
    def __init__(self, pairs: list[tuple[Path, str]], size: int) -> None:
        self.pairs, self.size = pairs, int(size)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        path, caption = self.pairs[index]
        if not path.is_file():
            raise FileNotFoundError(f"COCO image {path} (listed in data.init_args.coco_captions) does not exist")
        return {"image": _cover_crop(read_image(path), self.size), "caption": caption}


class TextImageDataModule(EmbeddedDataModule):
    """Captioned images (module docstring). Args: ``root``, ``size``, ``prompt_template`` (embedded digits).

    ``prompts`` (predict): the user's prompts, strings on the command line and/or ``.txt`` files
    (one prompt per line), each drawn ``samples_per_prompt`` times (seed ``seed + request``);
    every prompt is processed (no ``limit_predict_batches``). ``None``: the validation captions.

    ``coco_captions`` / ``coco_images`` / ``coco_pairs``: the COCO-2014 ``test`` split (module docstring);
    ``None``: ``test`` is the validation split.
    """

    STAND_IN = "embedded captioned images (stand-in for text-image pairs)"  # the results rows' ``dataset`` when ``root`` is null (metrics.results_rows.dataset_field)

    def __init__(self, root: Optional[str] = None, size: int = 512, prompt_template: str = "a handwritten digit {}",
                 batch_size: int = 64, num_workers: int = 0, val_fraction: float = 0.1, seed: int = 0,
                 pin_memory: bool = False, prompts: Union[str, list[str], None] = None,
                 samples_per_prompt: int = 1, coco_captions: Optional[str] = None, coco_images: Optional[str] = None,
                 coco_pairs: int = 30000) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, pin_memory)
        if (coco_captions is None) != (coco_images is None):
            raise ValueError("data.init_args.coco_captions and coco_images go together (the JSON and its val2014/ folder)")
        if int(coco_pairs) < 1:
            raise ValueError(f"data.init_args.coco_pairs must be >= 1, got {coco_pairs}")
        self.coco_captions, self.coco_images, self.coco_pairs = coco_captions, coco_images, int(coco_pairs)
        self.root, self.size, self.prompt_template = root, int(size), prompt_template
        self.prompts, self.samples_per_prompt = prompts, int(samples_per_prompt)

    def predict_dataloader(self) -> DataLoader:
        if self.prompts is None:
            return super().predict_dataloader()
        requests = PromptRequests(read_prompts(self.prompts, "data.prompts"), self.samples_per_prompt, self.seed)
        release_predict_limit(getattr(self, "trainer", None), len(requests), "data.prompts")
        return DataLoader(requests, batch_size=self.batch_size, shuffle=False, collate_fn=collate_dicts)

    def test_dataloader(self) -> DataLoader:
        if self.coco_captions is None:
            return super().test_dataloader()
        pairs = read_coco_captions(self.coco_captions, self.coco_images, self.coco_pairs, self.seed)
        log.info("TextImageDataModule: test = %d COCO-2014 val pairs from %s", len(pairs), self.coco_captions)
        return self._loader(_CocoPairs(pairs, self.size), shuffle=False)

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        if self.root is None:
            images, labels = load_digits_images(self.size)
            images = images.expand(-1, 3, -1, -1).contiguous()
            log.info("TextImageDataModule: root is null, using the embedded digits with captions %r", self.prompt_template)
            tr, va = split_indices(len(images), self.val_fraction, self.seed)
            return (_CaptionedDigits({"image": images[tr], "label": labels[tr]}, self.prompt_template),
                    _CaptionedDigits({"image": images[va], "label": labels[va]}, self.prompt_template))
        root = Path(self.root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"TextImageDataModule: root {root} does not exist")

        def files(folder: Path) -> list[Path]:
            return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)

        if (root / "train").is_dir() and (root / "val").is_dir():
            train, val = files(root / "train"), files(root / "val")
        else:
            every = files(root)
            order = np.random.default_rng(self.seed).permutation(len(every))
            cut = max(1, int(len(every) * self.val_fraction))
            val, train = [every[i] for i in order[:cut]], [every[i] for i in order[cut:]]
        if not train or not val:
            raise FileNotFoundError(f"TextImageDataModule: too few images under {root}")
        return _CaptionedImages(train, self.size), _CaptionedImages(val, self.size)


__all__ = ["TextImageDataModule", "read_coco_captions"]

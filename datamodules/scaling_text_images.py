"""Text-image pairs for the LDM scaling study (thesis 001, Ch. 2: ~600M internal WebLI pairs, not public).

``TextImageDataModule`` reads the common caption-beside-image layout: every image file under
``root`` (``root/train`` and ``root/val`` if both exist, else a seeded split) with a ``<stem>.txt``
caption next to it (a missing caption is reported by name). Batches: ``image`` ``[B, 3, size, size]``
in [-1, 1] (resized to cover, centre-cropped) and ``caption`` (list of strings). A COCO-2014
validation export (images + captions, the thesis's FID/CLIP set) fits the same layout.

``root: null`` is the embedded default: the scikit-learn digits (3 channels) with the caption
``"a handwritten digit <label>"``; ``label`` is kept too.
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
        image = read_image(path)
        h, w = image.shape[-2:]
        scale = self.size / min(h, w)
        new = (max(self.size, round(h * scale)), max(self.size, round(w * scale)))
        image = F.interpolate(image[None], size=new, mode="bicubic", antialias=True, align_corners=False)[0]
        top, left = (new[0] - self.size) // 2, (new[1] - self.size) // 2
        image = image[:, top : top + self.size, left : left + self.size].clamp(-1, 1)
        return {"image": image, "caption": caption_path.read_text().strip()}


class TextImageDataModule(EmbeddedDataModule):
    """Captioned images (module docstring). Args: ``root``, ``size``, ``prompt_template`` (embedded digits).

    ``prompts`` (predict): the user's prompts, strings on the command line and/or ``.txt`` files
    (one prompt per line), each drawn ``samples_per_prompt`` times (seed ``seed + request``);
    every prompt is processed (no ``limit_predict_batches``). ``None``: the validation captions.
    """

    STAND_IN = "embedded captioned images (stand-in for text-image pairs)"  # the results rows' ``dataset`` when ``root`` is null (metrics.results_rows.dataset_field)

    def __init__(self, root: Optional[str] = None, size: int = 512, prompt_template: str = "a handwritten digit {}",
                 batch_size: int = 64, num_workers: int = 0, val_fraction: float = 0.1, seed: int = 0,
                 pin_memory: bool = False, prompts: Union[str, list[str], None] = None,
                 samples_per_prompt: int = 1) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, pin_memory)
        self.root, self.size, self.prompt_template = root, int(size), prompt_template
        self.prompts, self.samples_per_prompt = prompts, int(samples_per_prompt)

    def predict_dataloader(self) -> DataLoader:
        if self.prompts is None:
            return super().predict_dataloader()
        requests = PromptRequests(read_prompts(self.prompts, "data.prompts"), self.samples_per_prompt, self.seed)
        release_predict_limit(getattr(self, "trainer", None), len(requests), "data.prompts")
        return DataLoader(requests, batch_size=self.batch_size, shuffle=False, collate_fn=collate_dicts)

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        if self.root is None:
            images, labels = load_digits_images(self.size)
            images = images.expand(-1, 3, -1, -1).contiguous()
            log.info("TextImageDataModule: root is null, using the embedded digits with captions %r", self.prompt_template)
            tr, va = split_indices(len(images), self.val_fraction, self.seed)
            return (TensorDictDataset({"image": images[tr], "label": labels[tr]}),
                    TensorDictDataset({"image": images[va], "label": labels[va]}))
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


__all__ = ["TextImageDataModule"]

"""Human parsing behind one interface (thesis 000, Ch. 3, §3.5.3; parsing model of ref. [301]).

Total Selfie uses a human-parsing network for the semantic maps of the selfies, of the photo
collection (reference selection), of the reference (target pose = Canny of the map, mask = its
box x 1.1) and of the generated image (crops for appearance refinement). The authors' code runs
M2FP (detectron2, CIHP labels; not importable here). This module defines:

* :class:`HumanParser`: ``parse(image [3, H, W] in [-1, 1]) -> LongTensor [H, W]`` and
  ``label_names`` (id -> name). Garment groups are found from the names
  (:func:`garment_groups`), so any label vocabulary works (ATR, LIP, CIHP).
* :class:`SegformerHumanParser`: a real parser loaded from a local folder (or cached hub id) in
  the transformers layout, e.g. a SegFormer fine-tuned on ATR (``mattmdjaga/segformer_b2_clothes``,
  18 labels). [GAP] Not the thesis's M2FP checkpoint; any ``AutoModelForSemanticSegmentation``
  human parser with ``id2label`` names fits.
* :class:`StandInHumanParser`: a **stand-in for tests** (no network): foreground = pixels far from
  the image's border colour, labelled by height inside the person box (face, upper clothes,
  pants, shoes). It makes the pipeline runnable, not the paper's parsing.
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

#: ATR label vocabulary (the stand-in uses it; SegFormer-ATR checkpoints share it).
ATR_LABELS: dict[int, str] = {
    0: "Background", 1: "Hat", 2: "Hair", 3: "Sunglasses", 4: "Upper-clothes", 5: "Skirt", 6: "Pants",
    7: "Dress", 8: "Belt", 9: "Left-shoe", 10: "Right-shoe", 11: "Face", 12: "Left-leg", 13: "Right-leg",
    14: "Left-arm", 15: "Right-arm", 16: "Bag", 17: "Scarf",
}
_GROUP_WORDS: dict[str, tuple[str, ...]] = {
    "upper": ("upper", "coat", "jacket", "dress", "scarf", "shirt", "top", "hoodie", "sweater", "vest", "torso-skin"),
    "lower": ("pants", "skirt", "dress", "belt", "shorts", "jeans", "leggings", "trouser"),
    "shoes": ("shoe", "boot", "sock", "footwear", "sneaker"),
    "face": ("face",),
    "hands": ("arm", "hand", "glove"),
}


def garment_groups(label_names: Mapping[int, str]) -> dict[str, set[int]]:
    """``{upper, lower, shoes, face, hands}`` -> label ids whose name contains one of the group's words."""
    out: dict[str, set[int]] = {group: set() for group in _GROUP_WORDS}
    for index, name in label_names.items():
        low = str(name).lower()
        for group, words in _GROUP_WORDS.items():
            if any(word in low for word in words):
                out[group].add(int(index))
    return out


class HumanParser:
    """Interface: a semantic human-parsing map per image (module docstring)."""

    label_names: dict[int, str] = ATR_LABELS
    is_stand_in: bool = False

    def parse(self, image: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def groups(self) -> dict[str, set[int]]:
        return garment_groups(self.label_names)


class StandInHumanParser(HumanParser):
    """**Stand-in** parser for tests and the embedded data (module docstring); ATR label ids.

    Args:
        threshold: colour distance (in [-1, 1] units, max over channels) from the border colour
            above which a pixel is foreground.
        bands: fractions of the person box height where face / upper / pants / shoes start.
    """

    is_stand_in = True

    def __init__(self, threshold: float = 0.25, bands: tuple[float, float, float, float] = (0.0, 0.14, 0.5, 0.9)) -> None:
        self.threshold = float(threshold)
        self.bands = tuple(float(b) for b in bands)

    def parse(self, image: Tensor) -> Tensor:
        image = image.float()
        border = torch.cat([image[:, 0], image[:, -1], image[:, :, 0], image[:, :, -1]], dim=1)
        colour = border.median(dim=1).values.view(3, 1, 1)
        fg = (image - colour).abs().amax(0) > self.threshold
        labels = torch.zeros(image.shape[-2:], dtype=torch.long)
        rows = torch.nonzero(fg.any(1)).flatten()
        if rows.numel() == 0:
            return labels
        top, bottom = int(rows[0]), int(rows[-1]) + 1
        height = max(1, bottom - top)
        ids = (11, 4, 6, 9)  # Face, Upper-clothes, Pants, Left-shoe
        for k, (start, label) in enumerate(zip(self.bands, ids)):
            end = self.bands[k + 1] if k + 1 < len(self.bands) else 1.0
            r0, r1 = top + int(round(start * height)), top + int(round(end * height))
            band = torch.zeros_like(fg)
            band[r0:r1] = True
            labels[fg & band] = label
        return labels


class SegformerHumanParser(HumanParser):
    """A transformers semantic-segmentation human parser from ``path`` (module docstring).

    Args:
        path: local folder (``config.json`` + weights + ``preprocessor_config.json``) or cached hub id.
        device: where the network runs (``None``: CPU until :meth:`to`).
    """

    SOURCE = "https://huggingface.co/mattmdjaga/segformer_b2_clothes (SegFormer-B2 on ATR, 18 labels) or any ATR/LIP parser"

    def __init__(self, path: str, device: Optional[str] = None) -> None:
        from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

        from lightning_modules.components.pretrained_paths import require_files

        root = require_files(path, "model.init_args.human_parser.init_args.path", ["config.json"], self.SOURCE)
        self.model = AutoModelForSemanticSegmentation.from_pretrained(str(root), local_files_only=True).eval()
        self.processor = AutoImageProcessor.from_pretrained(str(root), local_files_only=True)
        self.label_names = {int(k): str(v) for k, v in self.model.config.id2label.items()}
        if device:
            self.model.to(device)

    @torch.no_grad()
    def parse(self, image: Tensor) -> Tensor:
        import numpy as np

        array = ((image.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
        inputs = self.processor(images=np.ascontiguousarray(array), return_tensors="pt")
        device = next(self.model.parameters()).device
        logits = self.model(pixel_values=inputs["pixel_values"].to(device)).logits
        logits = F.interpolate(logits.float(), size=image.shape[-2:], mode="bilinear", align_corners=False)
        return logits.argmax(1)[0].cpu()


__all__ = ["ATR_LABELS", "HumanParser", "SegformerHumanParser", "StandInHumanParser", "garment_groups"]

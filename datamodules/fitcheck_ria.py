"""Reference image augmentation (RIA) for Fit-Check training (thesis 000, Ch. 4).

Seed lines ~749 (§4.2.1 "Reference Image Augmentation"), 906-910 (supplement: the procedure) and
920 (probability): during training the front and back references ``I'_fr`` / ``I'_bk`` come from
the same video as the ground truth, so they share its lighting; test-time selfies do not. For 50%
of the training samples **both** references are re-toned: each reference is matted (SAM 2 [210]),
composited over a background drawn from a background database (a different one for front and
back), passed with its foreground mask through a pretrained image harmonisation network [42]
(Chen et al., "Dense pixel-to-pixel harmonization via continuous image representation"), and its
background is removed again (white, like every matted reference here).

Each external model sits behind a small interface with real loading code from a path:

* :class:`Matting` ``(image [3, H, W] in [-1, 1]) -> alpha [1, H, W] in [0, 1]``:
  :class:`Sam2Matting` loads SAM 2 from a local ``transformers`` folder (``Sam2Model`` +
  ``Sam2Processor``, e.g. a ``save_pretrained`` copy of ``facebook/sam2.1-hiera-large``) and
  prompts it with the image centre ([GAP]: the thesis does not say how SAM 2 is prompted; a
  centred person is the selfie setting). CPU stand-in: :class:`WhiteBackgroundMatting`
  (alpha = pixels that are not white in an already matted frame), named as a stand-in.
* :class:`Harmoniser` ``(composite [3, H, W], mask [1, H, W]) -> harmonised [3, H, W]``:
  :class:`TorchScriptHarmoniser` loads a TorchScript export of the harmonisation network (the
  authors' repository, github.com/WindVChen/INR-Harmonization, ships PyTorch code, whose
  architecture is not rewritten in this suite: export it with ``torch.jit.trace`` on
  ``(composite [1, 3, H, W] in [0, 1], mask [1, 1, H, W])``). CPU stand-in:
  :class:`ColourTransferHarmoniser` (per-channel mean / std of the foreground moved towards the
  background's, a Reinhard-style colour transfer), named as a stand-in.
* :class:`BackgroundDatabase`: every ``*.png`` / ``*.jpg`` under a folder (the thesis's 800-image
  background database), or a list of tensors (the embedded backgrounds).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class Matting(Protocol):
    name: str

    def __call__(self, image: Tensor) -> Tensor: ...


class Harmoniser(Protocol):
    name: str

    def __call__(self, composite: Tensor, mask: Tensor) -> Tensor: ...


def _require_path(key: str, path: Optional[str], expected: str, source: str, folder: bool) -> Path:
    if not path:
        raise ValueError(f"{key} is not set: expected {expected} ({source})")
    p = Path(path)
    if (folder and not p.is_dir()) or (not folder and not p.is_file()):
        raise FileNotFoundError(f"{key}={path} not found: expected {expected} ({source})")
    return p


class WhiteBackgroundMatting:
    """CPU **stand-in** for SAM 2 on frames that are already matted (background white): alpha = not white."""

    name = "stand-in: white-background threshold (not SAM 2)"

    def __init__(self, threshold: float = 0.96) -> None:
        self.threshold = float(threshold)

    def __call__(self, image: Tensor) -> Tensor:
        unit = (image.float() + 1) / 2
        return (unit.min(dim=0, keepdim=True).values < self.threshold).float()


class Sam2Matting:
    """SAM 2 [210] from a local ``transformers`` folder, prompted with one point at the image centre."""

    SOURCE = "huggingface.co/facebook/sam2.1-hiera-large saved with save_pretrained (config.json, model weights, preprocessor)"

    def __init__(self, path: str, key: str = "data.init_args.ria_matting", device: str = "cpu") -> None:
        from transformers import Sam2Model, Sam2Processor

        folder = _require_path(key, path, "a SAM 2 transformers folder", self.SOURCE, folder=True)
        self.model = Sam2Model.from_pretrained(str(folder)).to(device).eval()
        self.processor = Sam2Processor.from_pretrained(str(folder))
        self.device = device
        self.name = f"SAM 2 ({folder.name})"

    @torch.no_grad()
    def __call__(self, image: Tensor) -> Tensor:
        h, w = image.shape[-2:]
        array = ((image.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
        inputs = self.processor(images=array, input_points=[[[[w / 2, h / 2]]]], input_labels=[[[1]]],
                                return_tensors="pt").to(self.device)
        outputs = self.model(**inputs, multimask_output=False)
        masks = self.processor.post_process_masks(outputs.pred_masks.cpu(), inputs["original_sizes"].cpu())[0]
        return masks.reshape(-1, h, w)[:1].float()


class ColourTransferHarmoniser:
    """CPU **stand-in** for the harmonisation network: the foreground's per-channel mean / std are moved
    ``strength`` of the way to the background's (Reinhard-style colour transfer in RGB)."""

    name = "stand-in: colour transfer (not the harmonisation network [42])"

    def __init__(self, strength: float = 0.5) -> None:
        self.strength = float(strength)

    def __call__(self, composite: Tensor, mask: Tensor) -> Tensor:
        fg, bg = mask.float(), 1 - mask.float()
        eps = 1e-6

        def stats(weight: Tensor) -> tuple[Tensor, Tensor]:
            total = weight.sum().clamp_min(eps)
            mean = (composite * weight).sum(dim=(1, 2), keepdim=True) / total
            var = ((composite - mean) ** 2 * weight).sum(dim=(1, 2), keepdim=True) / total
            return mean, var.clamp_min(eps).sqrt()

        if fg.sum() < 1 or bg.sum() < 1:
            return composite.clone()
        fg_mean, fg_std = stats(fg)
        bg_mean, bg_std = stats(bg)
        mean = fg_mean + self.strength * (bg_mean - fg_mean)
        std = fg_std + self.strength * (bg_std - fg_std)
        toned = (composite - fg_mean) / fg_std * std + mean
        return (fg * toned + bg * composite).clamp(-1, 1)


class TorchScriptHarmoniser:
    """The harmonisation network [42] as a TorchScript export: ``(composite [1,3,H,W] in [0,1], mask [1,1,H,W]) -> [1,3,H,W]``."""

    SOURCE = "a torch.jit.trace export of github.com/WindVChen/INR-Harmonization (its released weights)"

    def __init__(self, path: str, key: str = "data.init_args.ria_harmoniser", device: str = "cpu") -> None:
        file = _require_path(key, path, "a TorchScript harmonisation network (.pt)", self.SOURCE, folder=False)
        try:
            self.module = torch.jit.load(str(file), map_location=device).eval()
        except Exception as error:  # noqa: BLE001 - a state dict or a corrupt file
            raise ValueError(f"{key}={path} is not a TorchScript module ({error.__class__.__name__}); {self.SOURCE}") from None
        self.device = device
        self.name = f"harmoniser TorchScript ({file.name})"

    @torch.no_grad()
    def __call__(self, composite: Tensor, mask: Tensor) -> Tensor:
        x = ((composite.float() + 1) / 2).unsqueeze(0).to(self.device)
        out = self.module(x, mask.float().unsqueeze(0).to(self.device))
        if isinstance(out, (tuple, list)):
            out = out[0]
        if out.shape != x.shape:
            raise ValueError(f"the harmoniser returned {tuple(out.shape)}, expected {tuple(x.shape)}")
        return (out[0].cpu() * 2 - 1).clamp(-1, 1)


class BackgroundDatabase:
    """Background images for RIA: a folder of PNG/JPG files, or tensors; resized to the model's frame."""

    def __init__(self, source: str | Sequence[Tensor], height: int, width: int,
                 key: str = "data.init_args.ria_background_database") -> None:
        self.height, self.width = int(height), int(width)
        self.images: list[Tensor] = []
        self.files: list[Path] = []
        if isinstance(source, (str, Path)):
            folder = _require_path(key, str(source), "a folder of background images", "the 800-image background database", folder=True)
            self.files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise FileNotFoundError(f"{key}={source} holds no {'/'.join(IMAGE_SUFFIXES)} images")
        else:
            self.images = [F.interpolate(t.unsqueeze(0).float(), size=(height, width), mode="bilinear",
                                         align_corners=False, antialias=True)[0] for t in source]
            if not self.images:
                raise ValueError(f"{key}: the background list is empty")

    def __len__(self) -> int:
        return len(self.files) or len(self.images)

    def __getitem__(self, index: int) -> Tensor:
        if self.files:
            from datamodules.fitcheck_videos import load_image

            return load_image(self.files[index], self.height, self.width)
        return self.images[index]

    def sample(self, rng: np.random.Generator) -> Tensor:
        return self[int(rng.integers(len(self)))]


class ReferenceAugmentation:
    """Matting -> composite over a database background -> harmonise -> remove the background (white).

    ``__call__(front, back, rng)`` returns the two (matted) references, both re-toned with
    probability ``p`` (0.5, seed line 920), each over its own random background.
    """

    def __init__(self, matting: Matting, harmoniser: Harmoniser, backgrounds: BackgroundDatabase, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"reference augmentation probability must be in [0, 1], got {p}")
        self.matting, self.harmoniser, self.backgrounds, self.p = matting, harmoniser, backgrounds, float(p)

    def augment(self, reference: Tensor, background: Tensor) -> Tensor:
        alpha = self.matting(reference).to(reference.dtype)
        composite = alpha * reference + (1 - alpha) * background
        harmonised = self.harmoniser(composite, alpha)
        return alpha * harmonised + (1 - alpha) * 1.0

    def __call__(self, front: Tensor, back: Tensor, rng: np.random.Generator) -> tuple[Tensor, Tensor, bool]:
        if self.p == 0.0 or rng.random() >= self.p:
            return front, back, False
        return self.augment(front, self.backgrounds.sample(rng)), self.augment(back, self.backgrounds.sample(rng)), True

    @property
    def name(self) -> str:
        return f"RIA p={self.p}: {self.matting.name}; {self.harmoniser.name}; {len(self.backgrounds)} backgrounds"


def build_reference_augmentation(p: float, matting: Optional[str], harmoniser: Optional[str],
                                 background_database: Optional[str], height: int, width: int,
                                 fallback_backgrounds: Sequence[Tensor] = ()) -> Optional[ReferenceAugmentation]:
    """RIA from config paths; ``"stand-in"`` selects the named CPU stand-ins; ``p == 0`` disables it."""
    if p == 0.0:
        return None
    matting_model: Matting = WhiteBackgroundMatting() if matting == "stand-in" else Sam2Matting(
        matting, "data.init_args.ria_matting")  # type: ignore[arg-type]
    harmoniser_model: Harmoniser = ColourTransferHarmoniser() if harmoniser == "stand-in" else TorchScriptHarmoniser(
        harmoniser, "data.init_args.ria_harmoniser")  # type: ignore[arg-type]
    if background_database in (None, "stand-in"):
        if not fallback_backgrounds:
            raise ValueError("data.init_args.ria_background_database is not set: a folder of background images "
                             "(the thesis's 800-image database); or set reference_augmentation_p: 0")
        backgrounds = BackgroundDatabase(list(fallback_backgrounds), height, width)
    else:
        backgrounds = BackgroundDatabase(background_database, height, width)
    augmentation = ReferenceAugmentation(matting_model, harmoniser_model, backgrounds, p)
    log.info("reference image augmentation: %s", augmentation.name)
    return augmentation


__all__ = ["Matting", "Harmoniser", "WhiteBackgroundMatting", "Sam2Matting", "ColourTransferHarmoniser",
           "TorchScriptHarmoniser", "BackgroundDatabase", "ReferenceAugmentation", "build_reference_augmentation"]

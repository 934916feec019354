"""Face undistortion and appearance refinement of Total Selfie (thesis 000, Ch. 3, §3.2.2, supplement
§3.4 and §3.5.6), each behind an interface.

**Face undistortion** (§3.4): the face selfie is FFHQ-aligned and passed through facevid2vid [266]
fine-tuned on EG3D renders (source = driving = the distorted face). The network is the authors'
(released as ``face_correction/ckpt/00000196-checkpoint.pth.tar``); it is not re-implemented
here. :class:`CommandFaceUndistorter` runs the authors' script on the file (real loading: their
code and checkpoint), :class:`IdentityFaceUndistorter` is the **named stand-in** (returns the face
unchanged: the "Ours-FU" ablation behaves exactly like it).

**Appearance refinement** (§3.5.6): the face and shoe regions of the generated ``I_o`` are found by
human parsing, cropped, edited with SDEdit [179] using the two-concept DreamBooth (prompts
"a sks face" / "a hta shoes") and pasted back; the hands with a plain SD model.
:class:`AppearanceRefiner` does crop -> SDEdit -> paste for any :class:`SDEditModel`;
:class:`DiffusionSDEdit` wraps the suite's text-to-image module (``ScaledLDM`` /
``ScaledLDMDreamBooth`` of ``lightning_modules/ldm_scaling``, loaded from a checkpoint of
``configs/total_selfie_dreambooth.yaml``): it noises the crop's latent to ``t0 = 1 - strength`` and
integrates the suite's DDIM from there (SDEdit). [GAP] The thesis gives no SDEdit strength; the
default 0.4 is configurable per part; crops are squared, expanded by 20 % and resized to the
model's resolution.
"""
from __future__ import annotations

import logging
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger(__name__)

PART_PROMPTS = {"face": "a sks face", "shoes": "a hta shoes", "hands": "a photo of hands"}


class FaceUndistorter:
    """Interface: ``undistort(face [3, H, W] in [-1, 1]) -> [3, H, W]``."""

    is_stand_in = False

    def undistort(self, face: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class IdentityFaceUndistorter(FaceUndistorter):
    """**Stand-in**: no undistortion (the face selfie as captured)."""

    is_stand_in = True

    def undistort(self, face: Tensor) -> Tensor:
        return face


class CommandFaceUndistorter(FaceUndistorter):
    """Run an external facevid2vid undistortion command on a file (the authors' ``face_correction``).

    Args:
        command: argv list with ``{input}`` and ``{output}`` placeholders, e.g.
            ``[python, face_correction/run_selfies_single.py, --checkpoint,
            face_correction/ckpt/00000196-checkpoint.pth.tar, --source, "{input}", --output, "{output}"]``.
    """

    def __init__(self, command: Sequence[str]) -> None:
        if not command:
            raise ValueError("model.init_args.face_undistorter.init_args.command is empty")
        self.command = [str(part) for part in command]

    def undistort(self, face: Tensor) -> Tensor:
        from datamodules.predict_inputs import load_image_tensor
        from lightning_modules.components.image_io import save_images

        with tempfile.TemporaryDirectory() as folder:
            source = save_images(face.unsqueeze(0), Path(folder), "face")[0]
            target = Path(folder) / "undistorted.png"
            argv = [part.format(input=str(source), output=str(target)) for part in self.command]
            result = subprocess.run(argv, capture_output=True, text=True)
            if result.returncode != 0 or not target.is_file():
                raise RuntimeError(f"face undistortion command failed ({result.returncode}): {' '.join(argv)}\n"
                                   f"{result.stderr[-2000:]}")
            out = load_image_tensor(target)
        return F.interpolate(out[None], size=face.shape[-2:], mode="bilinear", align_corners=False)[0]


class SDEditModel:
    """Interface: ``edit(images [B, 3, S, S] in [-1, 1], prompt, strength, generator) -> same shape``."""

    resolution: int = 512

    def edit(self, images: Tensor, prompt: str, strength: float, generator: Optional[torch.Generator] = None) -> Tensor:
        raise NotImplementedError  # pragma: no cover - interface


class DiffusionSDEdit(SDEditModel):
    """SDEdit with a suite text-to-image module (``ScaledLDM`` / ``ScaledLDMDreamBooth``).

    Args:
        model: the module itself, or ``None`` with ``checkpoint`` + ``model_config``.
        checkpoint: a Lightning checkpoint of that module (``network.*`` weights are loaded).
        model_config: constructor arguments of the module when loading from ``checkpoint``.
        model_class: import path of the module class.
        num_steps: DDIM steps of the full chain (SDEdit runs the last ``strength`` share of them).
        guidance_scale: CFG scale of the edit (``None``: the module's).
        resolution: crop side given to the model (its training resolution).
    """

    def __init__(self, model: Any = None, checkpoint: Optional[str] = None, model_config: Optional[Mapping[str, Any]] = None,
                 model_class: str = "lightning_modules.ldm_scaling.dreambooth.ScaledLDMDreamBooth", num_steps: int = 50,
                 guidance_scale: Optional[float] = None, resolution: int = 512) -> None:
        if model is None:
            if checkpoint is None:
                raise ValueError("DiffusionSDEdit needs a model or a checkpoint (model.init_args.refiner.init_args.sdedit)")
            import importlib

            from lightning_modules.components.safe_load import safe_torch_load

            module_name, _, cls_name = model_class.rpartition(".")
            model = getattr(importlib.import_module(module_name), cls_name)(**dict(model_config or {}))
            state = safe_torch_load(Path(checkpoint), key="model.init_args.refiner.init_args.sdedit.init_args.checkpoint")
            network = {k[len("network."):]: v for k, v in state["state_dict"].items() if k.startswith("network.")}
            model.network.load_state_dict(network)
        self.model = model.eval()
        self.num_steps, self.guidance_scale, self.resolution = int(num_steps), guidance_scale, int(resolution)

    @torch.no_grad()
    def edit(self, images: Tensor, prompt: str, strength: float, generator: Optional[torch.Generator] = None) -> Tensor:
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"SDEdit strength must be in (0, 1], got {strength}")
        model = self.model
        device = next(model.network.parameters()).device
        latents = model.encode(images.to(device))
        grid = model.sampling_grid(self.num_steps, device).double().cpu()
        t0 = 1.0 - float(strength)
        start = int(torch.searchsorted(grid, torch.tensor(t0, dtype=torch.float64)))
        start = min(max(0, start), len(grid) - 2)
        sub = grid[start:]
        noise = torch.randn(latents.shape, generator=generator, device=device)
        t_start = torch.full((latents.shape[0],), float(sub[0]), device=device)
        x = model.path.add_noise(latents, noise, t_start)
        context = model.context([prompt] * latents.shape[0])
        scale = model.guidance_scale if self.guidance_scale is None else float(self.guidance_scale)
        denoiser = model.denoiser(context, scale)
        out = model.sampler.sample(denoiser, model.path, x, sub.to(device), generator=generator)
        return model.decode(out).clamp(-1, 1).to(images.device)


def _square_box(mask: Tensor, expand: float, height: int, width: int) -> Optional[tuple[int, int, int, int]]:
    rows, cols = torch.nonzero(mask.any(1)).flatten(), torch.nonzero(mask.any(0)).flatten()
    if rows.numel() == 0:
        return None
    cy, cx = (int(rows[0]) + int(rows[-1]) + 1) / 2, (int(cols[0]) + int(cols[-1]) + 1) / 2
    side = max(int(rows[-1]) + 1 - int(rows[0]), int(cols[-1]) + 1 - int(cols[0]))
    side = min(max(8, int(round(side * expand))), height, width)
    top = int(min(max(0, round(cy - side / 2)), height - side))
    left = int(min(max(0, round(cx - side / 2)), width - side))
    return top, left, top + side, left + side


class AppearanceRefiner:
    """Crop -> SDEdit -> paste for the face, shoes and hands (module docstring).

    Args:
        sdedit: the DreamBooth :class:`SDEditModel` (face and shoes).
        hands_sdedit: the plain SD :class:`SDEditModel` for the hands (``None``: hands skipped).
        parts: which parts to refine.
        strength: SDEdit strength per part (or one float).
        expand: crop box enlargement around the parsed region.
        prompts: prompt per part (defaults: "a sks face", "a hta shoes").
    """

    def __init__(self, sdedit: SDEditModel, hands_sdedit: Optional[SDEditModel] = None,
                 parts: Sequence[str] = ("face", "shoes", "hands"), strength: float | Mapping[str, float] = 0.4,
                 expand: float = 1.2, prompts: Optional[Mapping[str, str]] = None) -> None:
        unknown = [p for p in parts if p not in PART_PROMPTS]
        if unknown:
            raise ValueError(f"refiner parts {unknown} are not among {list(PART_PROMPTS)}")
        self.sdedit, self.hands_sdedit = sdedit, hands_sdedit
        self.parts = list(parts)
        self.strength = dict(strength) if isinstance(strength, Mapping) else {p: float(strength) for p in PART_PROMPTS}
        self.expand = float(expand)
        self.prompts = {**PART_PROMPTS, **dict(prompts or {})}

    def refine(self, image: Tensor, label_map: Tensor, groups: Mapping[str, set[int]],
               generator: Optional[torch.Generator] = None) -> tuple[Tensor, dict[str, list[int]]]:
        """``I_o [3, H, W]`` + its parsing -> ``I_a`` and the crop box of every refined part."""
        out = image.clone()
        boxes: dict[str, list[int]] = {}
        height, width = image.shape[-2:]
        for part in self.parts:
            model = self.hands_sdedit if part == "hands" else self.sdedit
            if model is None:
                continue
            region = torch.zeros_like(label_map, dtype=torch.bool)
            for label in groups.get(part, set()):
                region |= label_map == label
            box = _square_box(region, self.expand, height, width)
            if box is None:
                continue
            top, left, bottom, right = box
            crop = out[:, top:bottom, left:right][None]
            size = model.resolution
            small = F.interpolate(crop.float(), size=(size, size), mode="bicubic", align_corners=False, antialias=True)
            edited = model.edit(small.clamp(-1, 1), self.prompts[part], float(self.strength.get(part, 0.4)), generator)
            back = F.interpolate(edited.float().cpu(), size=(bottom - top, right - left), mode="bicubic", align_corners=False)
            out[:, top:bottom, left:right] = back[0].clamp(-1, 1)
            boxes[part] = [top, left, bottom, right]
        return out, boxes


__all__ = ["AppearanceRefiner", "CommandFaceUndistorter", "DiffusionSDEdit", "FaceUndistorter",
           "IdentityFaceUndistorter", "PART_PROMPTS", "SDEditModel"]

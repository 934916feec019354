"""Offline generation of the synthetic selfie -> full-body pairs (thesis 000, Ch. 3, §3.2.1, supplement §3.5.1).

"We employ RealisticVision as the pretrained Stable Diffusion with OpenPose ControlNet v1.1 to generate
I'_gt. The guidance scale is set to 7.5, the denoising step is 20, and the ControlNet scale is 1.0. OpenPose
Skeleton images ... are detected from a subset of the Human Bodies in the Wild dataset. The text prompt used is
'a [gender], [place], [upper], [lower], [shoes], standing, front-facing, RAW photo, full body shot, 8k uhd,
high quality, film grain'. ... we use CodeFormer to enhance the details of face regions." Then the parsing
map gives the person box (scaled up, ``M'``), and the selfies are simulated by homography
(:mod:`.homography`). The result is written in the pair layout of :mod:`.layouts`.

This is an offline command (weights from local paths, nothing downloaded)::

    python -m datamodules.total_selfie.generate --out data/total_selfie/pairs/train --num 1000 \
        --sd pretrained/realisticVisionV51 --controlnet pretrained/control_v11p_sd15_openpose \
        --poses data/hbw_openpose --parser pretrained/segformer_b2_clothes \
        [--codeformer-command "python inference_codeformer.py -w 0.7 --input_path {input} --output_path {output}"]

* ``--poses``: a folder of OpenPose skeleton images with, beside each ``<name>.png``, its 18 keypoints as
  ``<name>.json`` (``{"keypoints": [[x, y], ...]}``, -1 for missing; OpenPose-18 order) from HBW [48].
* CodeFormer [338] runs as an external command on each image (``{input}`` / ``{output}``); it is skipped
  when not given (a documented departure: faces are then not enhanced).
* [GAP] slot values beyond the thesis's examples and the box scaling of PbE's strategy ("scaled up
  following [298]") are our choices: ``SLOTS`` below and a scale of 1.1 ... 1.3 drawn per pair.

The selfie-simulation tables (:data:`.homography.TYPICAL_KEYPOINTS`) are hand-set defaults; ``--typical``
takes a JSON measured on real selfies ({category: {keypoint index: [x, y] in [0, 1]}}).
"""
from __future__ import annotations

import argparse
import json
import logging
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

SLOTS: dict[str, list[str]] = {
    "gender": ["man", "woman"],
    "place": ["beach", "park", "street", "restaurant", "cafe", "shopping mall", "office", "living room", "forest"],
    "upper": ["shirt", "hoodie", "sweater", "jacket", "t-shirt", "blouse", "coat"],
    "lower": ["jeans", "leggings", "shorts", "skirt", "trousers"],
    "shoes": ["sneakers", "heels", "boots", "flats", "sandals"],
}
TEMPLATE = ("a {gender}, {place}, {upper}, {lower}, {shoes}, standing, front-facing, RAW photo, full body shot, "
            "8k uhd, high quality, film grain")


def random_prompt(rng: np.random.Generator) -> str:
    """One prompt of the §3.5.1 template with random slot values."""
    return TEMPLATE.format(**{slot: values[int(rng.integers(len(values)))] for slot, values in SLOTS.items()})


def load_pose_folder(folder: Path) -> list[tuple[Path, np.ndarray]]:
    """``(skeleton image, keypoints [18, 2])`` pairs of ``folder`` (module docstring); errors name the file."""
    items = []
    for image in sorted(folder.glob("*.png")):
        meta = image.with_suffix(".json")
        if not meta.is_file():
            raise FileNotFoundError(f"{meta} is missing (keypoints of the skeleton {image})")
        keypoints = np.asarray(json.loads(meta.read_text())["keypoints"], dtype=np.float64)
        if keypoints.shape != (18, 2):
            raise ValueError(f"{meta}: expected 18 OpenPose keypoints [[x, y], ...], got shape {keypoints.shape}")
        items.append((image, keypoints))
    if not items:
        raise FileNotFoundError(f"no skeleton images (*.png + *.json) in {folder}")
    return items


def build_pipeline(sd_path: str, controlnet_path: str, device: str) -> Any:
    """RealisticVision + OpenPose ControlNet v1.1 as a diffusers pipeline, from local folders only."""
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    from lightning_modules.components.pretrained_paths import require_files

    sd = require_files(sd_path, "--sd", ["model_index.json"], "RealisticVision v5.1 in diffusers layout")
    cn = require_files(controlnet_path, "--controlnet", ["config.json"], "https://huggingface.co/lllyasviel/control_v11p_sd15_openpose")
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    controlnet = ControlNetModel.from_pretrained(str(cn), torch_dtype=dtype, local_files_only=True)
    pipe = StableDiffusionControlNetPipeline.from_pretrained(str(sd), controlnet=controlnet, torch_dtype=dtype,
                                                             safety_checker=None, local_files_only=True)
    return pipe.to(device)


def enhance_faces(image_path: Path, command: Optional[Sequence[str]]) -> None:
    """CodeFormer as an external command, in place; nothing when no command is given."""
    if not command:
        return
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / image_path.name
        argv = [part.format(input=str(image_path), output=str(out)) for part in command]
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0 or not out.is_file():
            raise RuntimeError(f"CodeFormer command failed ({result.returncode}): {' '.join(argv)}\n{result.stderr[-2000:]}")
        out.replace(image_path)


def write_pair(folder: Path, gt: torch.Tensor, keypoints: np.ndarray, labels: torch.Tensor, rng: np.random.Generator,
               selfie_size: int = 224, typical: Optional[dict] = None) -> None:
    """Write ``gt.png``, the four simulated selfies, ``mask.png`` (box x 1.1..1.3), ``foreground.png`` and ``pose.png``."""
    from datamodules.total_selfie.homography import simulate_selfies
    from lightning_modules.components.image_io import to_uint8
    from lightning_modules.total_selfie.reference_selection import parsing_canny, person_box, scaled_box_mask
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    save = lambda t, name: Image.fromarray(to_uint8(t[None])[0].numpy()).save(folder / f"{name}.png")  # noqa: E731
    height, width = gt.shape[-2:]
    save(gt, "gt")
    for name, selfie in zip(("face", "upper", "lower", "shoes"), simulate_selfies(gt, keypoints, selfie_size, typical)):
        save(selfie, name)
    mask = scaled_box_mask(person_box(labels), height, width, float(rng.uniform(1.1, 1.3)))
    save(mask.expand(3, -1, -1) * 2 - 1, "mask")
    save((labels > 0).float()[None].expand(3, -1, -1) * 2 - 1, "foreground")
    save(parsing_canny(labels) * 2 - 1, "pose")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Generate Total Selfie's synthetic selfie -> full-body pairs (offline)")
    parser.add_argument("--out", required=True, help="output folder (one sub-folder per pair)")
    parser.add_argument("--num", type=int, default=100, help="pairs to generate")
    parser.add_argument("--sd", required=True, help="RealisticVision v5.1 diffusers folder")
    parser.add_argument("--controlnet", required=True, help="OpenPose ControlNet v1.1 folder")
    parser.add_argument("--poses", required=True, help="folder of OpenPose skeleton images + keypoint JSON")
    parser.add_argument("--parser", required=True, help="human-parsing model folder (SegformerHumanParser)")
    parser.add_argument("--codeformer-command", default=None, help="CodeFormer command with {input} / {output}")
    parser.add_argument("--typical", default=None, help="JSON of measured typical keypoints per category")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--guidance", type=float, default=7.5)        # §3.5.1
    parser.add_argument("--steps", type=int, default=20)              # §3.5.1
    parser.add_argument("--controlnet-scale", type=float, default=1.0)  # §3.5.1
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    from datamodules.predict_inputs import load_image_tensor
    from lightning_modules.total_selfie.parsing import SegformerHumanParser
    from PIL import Image

    poses = load_pose_folder(Path(args.poses))
    pipe = build_pipeline(args.sd, args.controlnet, args.device)
    human_parser = SegformerHumanParser(args.parser, device=args.device)
    typical = None
    if args.typical:
        raw = json.loads(Path(args.typical).read_text())
        typical = {cat: {int(k): tuple(v) for k, v in table.items()} for cat, table in raw.items()}
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    for index in range(args.num):
        skeleton, keypoints = poses[int(rng.integers(len(poses)))]
        prompt = random_prompt(rng)
        hint = Image.open(skeleton).convert("RGB")
        scale = (args.size / hint.width, args.size / hint.height)
        generator = torch.Generator(device=args.device).manual_seed(args.seed * 1_000_003 + index)
        image = pipe(prompt, image=hint.resize((args.size, args.size)), num_inference_steps=args.steps,
                     guidance_scale=args.guidance, controlnet_conditioning_scale=args.controlnet_scale,
                     height=args.size, width=args.size, generator=generator).images[0]
        folder = out / f"pair{index:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / "gt.png")
        enhance_faces(folder / "gt.png", args.codeformer_command)
        gt = load_image_tensor(folder / "gt.png")
        kp = np.where(keypoints >= 0, keypoints * np.array(scale), -1.0)
        write_pair(folder, gt, kp, human_parser.parse(gt), rng, typical=typical)
        (folder / "prompt.txt").write_text(prompt + "\n")
        log.info("pair %d/%d: %s", index + 1, args.num, prompt)


if __name__ == "__main__":
    main()

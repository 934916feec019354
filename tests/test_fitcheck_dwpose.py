"""DWPose detector wrapper and CLIFF yaw inside ``fitcheck_prepare`` (thesis 000 Ch. 4 §4.3.5; issue 15.4/15.8).

The two ONNX sessions are :class:`FixedOutputSession` stand-ins returning planted raw outputs, so
the tests check the suite's pre/post-processing (letterbox, YOLOX decoding, person crop, SimCC
decoding, COCO-WholeBody -> OpenPose-18) and its wiring, not DWPose's accuracy.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.fitcheck_dwpose import (DETECTOR_FILE, POSE_FILE, DWPoseDetector, FixedOutputSession, crop_person,
                                         letterbox)
from datamodules.fitcheck_prepare import (CliffTorchScript, DetectedPoses, MedianBackground,
                                          MedianDifferenceMatting, prepare_video, yaw_from_rotmat)

H, W = 320, 240  # letterbox ratio 2 into 640 x 640


def _planted_detector_output() -> np.ndarray:
    """One person anchor: stride 32, grid (x 5, y 10), size exp(log 4) * 32 = 128 px at 640 -> box
    centre (80, 160), side 64 in the 240 x 320 image."""
    raw = np.zeros((1, 8400, 85), np.float32)
    index = 80 * 80 + 40 * 40 + 10 * 20 + 5
    raw[0, index, 2:4] = np.log(4.0)
    raw[0, index, 4], raw[0, index, 5] = 0.9, 0.9
    return raw


def _planted_pose_output() -> tuple[np.ndarray, np.ndarray]:
    """Every keypoint at the crop centre (bins 288 / 384), the nose at the crop's left edge, the face unsure."""
    x, y = np.zeros((1, 133, 576), np.float32), np.zeros((1, 133, 768), np.float32)
    x[0, :, 288], y[0, :, 384] = 0.9, 0.9
    x[0, 0, 288], x[0, 0, 0] = 0.0, 0.9
    x[0, 23:91, 288] = 0.1
    return x, y


def _detector(tmp_path: Path) -> DWPoseDetector:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name in (DETECTOR_FILE, POSE_FILE):
        (tmp_path / name).write_bytes(b"onnx")
    outputs = {DETECTOR_FILE: [_planted_detector_output()], POSE_FILE: list(_planted_pose_output())}
    return DWPoseDetector(str(tmp_path), session_factory=lambda path: FixedOutputSession(outputs[path.name]))


def test_dwpose_pipeline_decodes_planted_outputs_into_openpose_keypoints(tmp_path: Path) -> None:
    detector = _detector(tmp_path)
    pose = detector(np.zeros((H, W, 3), np.uint8))
    blob = detector.detector.calls[0]["input"]
    assert blob.shape == (1, 3, 640, 640) and blob[0, 0, 0, 639] == 114.0 and blob[0, 0, 639, 0] == 0.0  # 640 x 480 image, padded on the right
    assert detector.pose.calls[0]["input"].shape == (1, 3, 384, 288)
    # box 64 x 64 -> 1.25x = 80 wide, 3:4 -> 106.7 high, centred (80, 160): centre bins map back to it
    np.testing.assert_allclose(pose["bodies"][2], [80 / W, 160 / H], atol=1e-6)  # right shoulder (COCO 6)
    np.testing.assert_allclose(pose["bodies"][1], [80 / W, 160 / H], atol=1e-6)  # neck = shoulders' midpoint
    np.testing.assert_allclose(pose["bodies"][0], [40 / W, 160 / H], atol=1e-6)  # nose at the crop's left edge
    assert pose["hands"].shape == (2, 21, 2) and np.all(pose["faces"] == -1.0), "face below 0.3 is missing"
    with pytest.raises(FileNotFoundError, match="dw-ll_ucoco_384.onnx"):
        (tmp_path / POSE_FILE).unlink()
        DWPoseDetector(str(tmp_path))


def test_person_crop_centres_the_box() -> None:
    image = np.zeros((H, W, 3), np.uint8)
    image[150:170, 70:90] = 255  # bright square at the box centre (80, 160)
    crop, centre, scale = crop_person(image, [48, 128, 112, 192])
    np.testing.assert_allclose(centre, [80, 160]) and np.testing.assert_allclose(scale, [80, 80 / 0.75], rtol=1e-6)
    assert crop[0, 192, 144] > 1.5 and crop[0, 5, 5] < -1.5  # bright centre, dark (zero-padded) corner
    blob, ratio = letterbox(image)
    assert ratio == 2.0 and blob[0, 0, 320, 160] == 255.0


def test_prepare_runs_the_detector_and_cliff_on_every_kept_frame(tmp_path: Path) -> None:
    pytest.importorskip("av")
    from lightning_modules.fitcheck.video_io import write_mp4

    video = tmp_path / "raw" / "capture.mp4"
    video.parent.mkdir()
    frames = -torch.ones(8, 3, 64, 48)
    frames[:, :, 20:50, 15:30] = 0.6
    write_mp4(frames, video, fps=8)

    class HalfTurn(torch.nn.Module):  # stands for CLIFF: root rotated by pi about y (faces the camera)
        def forward(self, crops: torch.Tensor, info: torch.Tensor):
            turn = torch.tensor([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]])
            return turn.expand(crops.shape[0], 24, 3, 3) + 0 * info.sum(), info

    cliff_file = tmp_path / "cliff.pt"
    torch.jit.trace(HalfTurn(), (torch.zeros(2, 3, 224, 224), torch.zeros(2, 3))).save(str(cliff_file))
    cliff = CliffTorchScript(str(cliff_file))
    folder = prepare_video(video, tmp_path / "train", 4, DetectedPoses(_detector(tmp_path / "dw")), cliff,
                           MedianDifferenceMatting(), MedianBackground())
    assert len(list((folder / "poses").glob("*.png"))) == 2
    keypoints = np.load(folder / "dwpose.npz")
    assert keypoints["bodies"].shape == (2, 18, 2)
    assert np.allclose(np.load(folder / "dwpose.npz")["body_scores"][:, 2], 0.9)
    import json

    assert json.loads((folder / "orientation.json").read_text())["yaw"] == [0.0, 0.0]
    meta = json.loads((folder / "prepared.json").read_text())["models"]
    assert "stand-in sessions" in meta["poses"] and "CLIFF TorchScript" in meta["yaw"]
    assert np.allclose(yaw_from_rotmat(np.eye(3)[None]), 180.0)


def test_predict_detects_missing_selfie_poses_with_the_configured_detector(tmp_path: Path) -> None:
    from PIL import Image

    from datamodules.fitcheck_videos import FitCheckVideoDataModule

    for name in ("f.png", "b.png", "g.png"):
        Image.new("RGB", (W, H), (120, 80, 40)).save(tmp_path / name)
    kp = np.full((3, 18, 2), -1.0)
    kp[:, 1], kp[:, 2] = [0.5, 0.3], [0.5, 0.6]
    np.save(tmp_path / "poses.npy", kp)
    dm = FitCheckVideoDataModule(size=(32, 24), predict_front=str(tmp_path / "f.png"), predict_back=str(tmp_path / "b.png"),
                                 predict_background=str(tmp_path / "g.png"), predict_poses=str(tmp_path / "poses.npy"),
                                 predict_pose_detector=str(tmp_path / "dw"))
    dm._pose_detector = _detector(tmp_path / "dw")  # the stand-in sessions instead of onnxruntime
    item = dm.predict_dataloader().dataset[0]
    assert (item["front_pose"] > -1).any() and torch.equal(item["front_pose"], item["back_pose"])
    assert len(dm._pose_detector.detector.calls) == 2, "DWPose ran once per selfie"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install onnxruntime"):
            DWPoseDetector(str(tmp_path / "dw"))

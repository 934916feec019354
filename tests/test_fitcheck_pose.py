"""DWPose renders as MimicMotion draws them, resize + centre crop, required selfie poses (thesis 000 Ch. 4)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.fitcheck_pose import crop_keypoints, render_dwpose, resize_centre_crop
from datamodules.fitcheck_videos import FitCheckVideoDataModule


def _unit(render: torch.Tensor) -> np.ndarray:
    return ((render + 1) * 127.5).round().numpy()


def test_body_limbs_are_dimmed_ellipses_joints_full_and_colours_bgr_swapped() -> None:
    body = np.full((18, 2), -1.0)
    body[1], body[2] = [0.5, 0.2], [0.5, 0.8]  # neck -> right shoulder, vertical limb 0 (listed [255, 0, 0])
    out = _unit(render_dwpose(body, 216, 216, ref_w=216))  # ref scale = output: no resize
    mid = out[:, 108, 108]
    assert mid[2] == int(255 * 0.6) and mid[0] == 0 and mid[1] == 0, "limb 0 listed red, drawn blue, dimmed to 0.6"
    assert out[2, 108, 108 + 3] > 0 and out[2, 108, 108 + 6] == 0, "an ellipse of half-width 4, not a 1-px line"
    assert out[2, 43, 108] == 255, "joint discs are drawn after the dimming"
    low = body.copy()
    scores = np.ones(18)
    scores[2] = 0.2
    assert _unit(render_dwpose(low, 216, 216, body_scores=scores, ref_w=216))[:, 108, 108].sum() == 0, "conf < 0.3 skipped"


def test_hands_and_face_are_drawn_and_the_render_scales_from_2160() -> None:
    body = np.full((18, 2), -1.0)
    hands = np.full((2, 21, 2), -1.0)
    hands[0, 0], hands[0, 1] = [0.3, 0.5], [0.3, 0.7]
    faces = np.full((68, 2), -1.0)
    faces[0] = [0.7, 0.3]
    out = _unit(render_dwpose(body, 216, 216, hands=hands, faces=faces, ref_w=216))
    assert out[0, 108, 64] == 255 and out[1:, 108, 64].sum() == 0, "hand keypoints: red after the BGR->RGB swap"
    assert out[:, 130, 64].max() > 0, "hand bones"
    assert (out[:, 65, 151] == 255).all(), "face landmarks are white"
    body[1], body[2] = [0.5, 0.2], [0.5, 0.8]
    full = _unit(render_dwpose(body, 1024, 576))  # drawn at short side 2160, resized by 3.75 (MimicMotion's size)
    width = ((full[2] > 0).sum(1)[300:700]).max()
    assert 1 <= width <= 4, "8-px limbs at 2160 are ~2 px at 576"


def test_resize_centre_crop_keeps_aspect_and_keypoints_follow() -> None:
    image = torch.zeros(3, 40, 80)
    image[:, :, 40:] = 1.0  # right half white
    crop = resize_centre_crop(image, 32, 24)
    assert crop.shape == (3, 32, 24)
    assert crop[:, :, :10].mean() < 0.1 and crop[:, :, 14:].mean() > 0.9, "the centre of the landscape frame, not squeezed"
    kp = np.array([[0.5, 0.5], [0.05, 0.5], [-1, -1]])
    moved = crop_keypoints(kp, 40, 80, 32, 24)
    assert np.allclose(moved[0], [0.5, 0.5]) and moved[1, 0] < 0 and (moved[2] == -1).all()


def _png(path: Path, size: tuple[int, int]) -> str:
    Image.new("RGB", size, (120, 80, 40)).save(path)
    return str(path)


def test_predict_crops_to_the_model_frame_and_requires_selfie_poses(tmp_path: Path) -> None:
    kp = np.full((3, 18, 2), -1.0)
    kp[:, 1], kp[:, 2] = [0.5, 0.3], [0.5, 0.6]
    np.save(tmp_path / "poses.npy", kp)
    selfie = np.full((18, 2), -1.0)
    selfie[1], selfie[2] = [0.5, 0.3], [0.5, 0.6]
    np.save(tmp_path / "selfie.npy", selfie)
    common = dict(size=(32, 24), predict_front=_png(tmp_path / "f.png", (30, 40)), predict_back=_png(tmp_path / "b.png", (30, 40)),
                  predict_background=_png(tmp_path / "g.png", (96, 48)), predict_poses=str(tmp_path / "poses.npy"))
    batch = FitCheckVideoDataModule(**common, predict_front_pose=str(tmp_path / "selfie.npy"),
                                    predict_back_pose=str(tmp_path / "selfie.npy")).predict_dataloader().dataset[0]
    assert batch["pose"].shape == (3, 3, 32, 24) and "placement" not in batch
    column = (batch["pose"][0] > -1).any(0).any(0).nonzero().flatten().float().mean()
    assert abs(float(column) - 11.5) < 1.5, "the centred limb stays centred in the crop"
    with pytest.raises(ValueError, match="predict_front_pose is required"):
        FitCheckVideoDataModule(**common).predict_dataloader().dataset[0]


def test_predict_retrieves_the_background_by_ground_normal_and_grounds_the_feet(tmp_path: Path) -> None:
    import json

    rng = np.random.default_rng(0)
    library = {}
    for i, normal in enumerate(([0.0, -1.0, 0.0], [0.0, -0.8, -0.6])):
        kp = np.full((6, 18, 2), -1.0)
        kp[:, 1], kp[:, 10], kp[:, 13] = [0.5, 0.3], [0.45, 0.6], [0.55, 0.6]
        library[f"m{i}/yaw"] = np.linspace(0, np.pi * (i + 1), 6)
        library[f"m{i}/translation"] = np.zeros((6, 3))
        library[f"m{i}/keypoints"] = kp + rng.normal(0, 0.001, kp.shape)
        library[f"m{i}/ground_normal"] = np.array(normal)
        library[f"m{i}/horizon_y"] = np.array(0.3)
    np.savez(tmp_path / "library.npz", **library)
    np.savez(tmp_path / "imu.npz", time=np.arange(6) / 30, yaw=np.linspace(0, np.pi, 6), acceleration=np.zeros((6, 3)))
    rooms = tmp_path / "rooms"
    rooms.mkdir()
    for name, colour in (("flat.png", (200, 0, 0)), ("tilted.png", (0, 0, 200))):
        Image.new("RGB", (24, 32), colour).save(rooms / name)
    (rooms / "normals.json").write_text(json.dumps({
        "flat.png": {"normal": [0.0, -1.0, 0.05], "ground_y": 0.9, "horizon_y": 0.4}, "tilted.png": {"normal": [0.0, -0.7, -0.7]}}))
    selfie = np.full((18, 2), -1.0)
    selfie[1] = [0.5, 0.3]
    np.save(tmp_path / "selfie.npy", selfie)
    dm = FitCheckVideoDataModule(size=(32, 24), predict_front=_png(tmp_path / "f.png", (24, 32)),
                                 predict_back=_png(tmp_path / "b.png", (24, 32)), predict_background=str(rooms),
                                 predict_imu=str(tmp_path / "imu.npz"), predict_motion_library=str(tmp_path / "library.npz"),
                                 predict_front_pose=str(tmp_path / "selfie.npy"), predict_back_pose=str(tmp_path / "selfie.npy"),
                                 predict_top_k=2)
    dataset = dm.predict_dataloader().dataset
    item = dataset[0]
    assert dataset.background_horizon == 0.4, "the perspective scale (0.9-0.4)/(0.6-0.3) is applied"
    assert item["path"].endswith("flat.png") and item["background"][0].mean() > 0.4, "m0 (flat floor) -> flat.png"
    assert json.loads(item["background_ranking"])[0][0] == "flat.png"
    ankle_rows = (item["pose"][:, :, 26:, :] > -0.9).any(1).any(-1)
    assert ankle_rows.any(), "feet moved down to the room's ground line (0.9 of the height)"


def test_perspective_scale_of_foot_grounding() -> None:
    from datamodules.fitcheck_motion import ground_feet, perspective_scale

    assert perspective_scale(0.8, 0.4, 0.9, 0.3) == pytest.approx(0.6 / 0.4)
    with pytest.raises(ValueError, match="below the horizon"):
        perspective_scale(0.3, 0.4, 0.9, 0.3)
    kp = np.full((2, 18, 2), -1.0)
    kp[:, 0], kp[:, 10], kp[:, 13] = [10.0, 20.0], [8.0, 60.0], [12.0, 60.0]
    out = ground_feet(kp, ground_y=90.0, scale=1.5)
    assert out[0, 10, 1] == pytest.approx(90.0) and out[0, 10, 1] - out[0, 0, 1] == pytest.approx(1.5 * 40.0)

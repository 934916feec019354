"""Fit-Check training and predict on tiny random-weight parts (they test code, not the paper's numbers)."""
from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.fitcheck_videos import FitCheckImageItems, FitCheckVideoDataModule, render_pose
from fitcheck_tiny import random_batch, tiny_module


def test_tiny_fit_overfits_one_batch() -> None:
    torch.manual_seed(0)
    module = tiny_module(cond_dropout=0.0)
    batch = random_batch(frames=1)  # front + back + one target frame
    video, poses = module.compose_clip(batch)
    x_data = module.vae_encode(video)
    cond = module.conditions(batch, poses)
    optimizer = torch.optim.Adam(module.trainable_parameters(), lr=2e-3)
    losses = []
    for _ in range(4):
        generator = torch.Generator().manual_seed(5)  # the same (sigma, noise) every step: one fixed target
        loss = module.fitcheck_loss(x_data, cond, generator=generator).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < 0.6 * losses[0], losses


def test_weighted_loss_uses_the_shadow_map_at_latent_resolution() -> None:
    module = tiny_module(cond_dropout=0.0)
    batch = random_batch(frames=2)
    weight = torch.ones(1, 2, 1, 32, 24)
    weight[..., 16:, :] = 2.0  # beta = 2 in the lower half
    batch["loss_weight"] = weight
    video, poses = module.compose_clip(batch)
    x_data = module.vae_encode(video)
    latent_weight = module.pixel_weights(batch, x_data.shape)
    assert latent_weight.shape == (1, 4, 1, 16, 12)
    assert torch.all(latent_weight[:, :2] == 1), "generated reference frames keep weight 1"
    assert torch.all(latent_weight[:, 2:, :, 8:] == 2) and torch.all(latent_weight[:, 2:, :, :8] == 1)
    cond = module.conditions(batch, poses)
    plain = module.fitcheck_loss(x_data, cond, None, torch.Generator().manual_seed(1))
    doubled = module.fitcheck_loss(x_data, cond, torch.full_like(latent_weight, 2.0), torch.Generator().manual_seed(1))
    torch.testing.assert_close(doubled, 2 * plain)


class _ConstantItem:
    def __call__(self, index: int) -> dict:
        ones = torch.ones(3, 16, 12)
        return {"front": ones * 0.5, "back": ones * -0.5, "front_matted": ones, "back_matted": ones,
                "front_pose": -ones, "back_pose": -ones, "background": ones * 0.0,
                "front_mask": torch.zeros(1, 16, 12), "back_mask": torch.ones(1, 16, 12), "name": "x"}


def test_image_fine_tuning_items_choose_front_80_percent_and_shift_jointly() -> None:
    torch.manual_seed(0)
    items = FitCheckImageItems(_ConstantItem(), 16, 12, 3, shadow_weight=2.0, front_probability=0.8, split="train", seed=0)
    samples = [items(0) for _ in range(200)]
    front = np.array([float(s["gt_is_front"]) for s in samples])
    assert abs(front.mean() - 0.8) < 0.09  # 3 standard errors at n = 200
    sample = samples[int(np.argmin(front))]  # a back ground truth: mask = 1 -> weight 2 where defined
    assert sample["video"].shape == (3, 3, 16, 12) and torch.equal(sample["video"][0], sample["video"][2])
    assert set(sample["loss_weight"].unique().tolist()) <= {1.0, 2.0}
    shifted = [s for s in samples if (s["video"][0] > 0.99).any()]
    assert shifted, "joint shift/scale exposes undefined regions, filled with white"


def _png(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (24, 32)) -> str:
    Image.new("RGB", size, colour).save(path)
    return str(path)


def _selfie_pose(path: Path) -> str:
    kp = np.full((18, 2), -1.0)
    kp[1], kp[2], kp[5] = [0.5, 0.3], [0.4, 0.32], [0.6, 0.32]
    np.save(path, kp)
    return str(path)


def test_tiny_predict_from_imu_and_motion_library_writes_an_mp4(tmp_path: Path) -> None:
    from lightning_modules.fitcheck.video_io import read_mp4

    rng = np.random.default_rng(0)
    library = {}
    for i in range(3):
        n = 10 + i
        library[f"m{i}/yaw"] = np.linspace(0, (i + 1) * np.pi, n)
        library[f"m{i}/translation"] = np.zeros((n, 3))
        kp = np.full((n, 18, 2), 0.5) + rng.normal(0, 0.05, (n, 18, 2))
        library[f"m{i}/keypoints"] = kp
    np.savez(tmp_path / "library.npz", **library)
    np.savez(tmp_path / "imu.npz", time=np.arange(12) / 30, yaw=np.linspace(0, 3 * np.pi, 12), acceleration=np.zeros((12, 3)))
    datamodule = FitCheckVideoDataModule(
        size=(32, 24), num_frames=4, predict_front=_png(tmp_path / "front.png", (200, 50, 50)),
        predict_back=_png(tmp_path / "back.png", (50, 200, 50)), predict_background=_png(tmp_path / "bg.png", (90, 90, 200), (64, 32)),
        predict_imu=str(tmp_path / "imu.npz"), predict_motion_library=str(tmp_path / "library.npz"), predict_name="me",
        predict_front_pose=_selfie_pose(tmp_path / "front_pose.npy"), predict_back_pose=_selfie_pose(tmp_path / "back_pose.npy"),
        predict_fit="stretch",
    )
    module = tiny_module(num_sampling_steps=1, window=8, overlap=4)
    trainer = L.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.predict(module, datamodule=datamodule)
    mp4 = Path(module.predictions_dir) / "me.mp4"
    assert mp4.is_file()
    frames = read_mp4(mp4)
    assert frames.shape == (12, 16, 32, 3), "m2's 12 frames; references dropped; the 64x32 background's aspect"
    with Image.open(mp4.with_suffix(".png")) as first:
        assert first.size == (32, 16), "the first frame PNG, at the background's aspect ratio"
    manifest = json.loads((mp4.parent / "manifest.json").read_text())
    assert manifest["items"][0]["outputs"] == ["me.mp4", "me.png"]


def test_optional_face_refinement_runs_the_command_on_each_video(tmp_path: Path) -> None:
    import sys

    kp = np.full((3, 18, 2), -1.0)
    kp[:, 1], kp[:, 2] = [0.5, 0.3], [0.5, 0.6]
    np.save(tmp_path / "poses.npy", kp)
    datamodule = FitCheckVideoDataModule(
        size=(32, 24), predict_front=_png(tmp_path / "front.png", (200, 50, 50)), predict_back=_png(tmp_path / "back.png", (50, 200, 50)),
        predict_background=_png(tmp_path / "bg.png", (90, 90, 200)), predict_poses=str(tmp_path / "poses.npy"), predict_name="me",
        predict_front_pose=_selfie_pose(tmp_path / "fp.npy"), predict_back_pose=_selfie_pose(tmp_path / "bp.npy"),
    )
    stand_in = [sys.executable, "-c", "import shutil, sys; assert sys.argv[1].endswith('front.png'); shutil.copy(sys.argv[2], sys.argv[3])",
                "{source}", "{target}", "{output}"]  # stands in for FaceFusion's CLI
    module = tiny_module(num_sampling_steps=1, face_refinement_command=stand_in)
    trainer = L.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.predict(module, datamodule=datamodule)
    folder = Path(module.predictions_dir)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["items"][0]["outputs"] == ["me.mp4", "me.png", "me__face_refined.mp4"]
    assert (folder / "me__face_refined.mp4").read_bytes() == (folder / "me.mp4").read_bytes()


def test_render_pose_draws_limbs_only_between_visible_joints() -> None:
    kp = np.full((18, 2), -1.0)
    kp[1], kp[2] = [12, 5], [6, 8]
    image = render_pose(kp, 32, 24)
    assert image.shape == (3, 32, 24) and (image > -1).any()
    assert (render_pose(np.full((18, 2), -1.0), 32, 24) == -1).all()


class _MeanColour(torch.nn.Module):
    """A 3-feature stand-in extractor (per-image channel means) so FID runs without Inception weights."""

    num_features = 3

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(2, 3))


def test_tiny_test_writes_table_4_1_results_rows(tmp_path: Path) -> None:
    from lightning_modules.fitcheck.evaluation import FitCheckEvaluation
    from metrics import FrameFID, PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

    evaluation = FitCheckEvaluation(
        {"SSIM": StructuralSimilarityIndexMeasure(), "PSNR": PeakSignalNoiseRatio(), "FID": FrameFID(_MeanColour())},
        results_dir=str(tmp_path / "results"),
    )
    datamodule = FitCheckVideoDataModule(size=(32, 24), num_frames=4, embedded_videos=4, embedded_length=8,
                                         embedded_backgrounds="plain")
    module = tiny_module(num_sampling_steps=1)
    trainer = L.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_test_batches=1, callbacks=[evaluation])
    trainer.test(module, datamodule=datamodule)
    lines = (tmp_path / "results" / "fitcheck.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert {r["metric"] for r in rows} == {"SSIM", "PSNR", "FID"}
    assert all(r["paper"] == "fitcheck" and r["weights"] == "random" and r["data"] == "embedded" for r in rows)
    assert all(np.isfinite(float(r["value"])) for r in rows) and rows[0]["nfe"] == 2


def test_predict_inputs_read_a_pose_sequence_file(tmp_path: Path) -> None:
    kp = np.full((5, 18, 2), -1.0)
    kp[:, 1] = [0.5, 0.2]
    kp[:, 2] = [0.3, 0.25]
    np.save(tmp_path / "poses.npy", kp)
    datamodule = FitCheckVideoDataModule(
        size=(32, 24), predict_front=_png(tmp_path / "f.png", (1, 2, 3)), predict_back=_png(tmp_path / "b.png", (4, 5, 6)),
        predict_background=_png(tmp_path / "g.png", (7, 8, 9)), predict_poses=str(tmp_path / "poses.npy"),
        predict_front_pose=_selfie_pose(tmp_path / "fp.npy"), predict_back_pose=_selfie_pose(tmp_path / "bp.npy"),
    )
    batch = next(iter(datamodule.predict_dataloader()))
    assert batch["pose"].shape == (1, 5, 3, 32, 24) and (batch["pose"] > -1).any()
    assert batch["front"].shape == (1, 3, 32, 24) and batch["name"] == ["fitcheck"]
    with pytest.raises(ValueError, match="predict_poses"):
        FitCheckVideoDataModule(size=(32, 24), predict_front="f.png", predict_back="b.png",
                                predict_background="g.png").predict_dataloader().dataset[0]

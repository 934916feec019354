"""VIDM video data: published layouts (frame folders, video files), preprocessing, Beta tuples, bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from callbacks.media import save_mp4
from datamodules.vidm import VIDMDataModule
from datamodules.vidm.datamodule import beta_frame_pair, moving_shapes
from datamodules.vidm.layouts import fit_square


def _frame_folder(folder: Path, count: int, width: int = 24, height: int = 16, start: int = 0, skip: int | None = None) -> None:
    folder.mkdir(parents=True)
    for i in range(start, start + count):
        if i == skip:
            continue
        image = np.zeros((height, width, 3), dtype=np.uint8)
        image[:, :, 0] = i * 10  # frame number in the red channel
        image[:, : width // 2, 1] = 255  # left half green: shows flips and crops
        Image.fromarray(image).save(folder / f"{i:05d}.png")


def test_taichi_frame_folders_read_in_order_with_centre_crop_and_flip(tmp_path: Path) -> None:
    for split, n in (("train", 2), ("test", 1)):
        for v in range(n):
            _frame_folder(tmp_path / "taichi" / split / f"vid{v}", 10)
    dm = VIDMDataModule(task="motion", dataset="taichi", root=str(tmp_path / "taichi"), size=8, clip_length=6,
                        eval_frames=5, train_items=8, flip=True, batch_size=4)
    dm.setup("fit")
    clip = dm.val_dataset[0]["video"]
    assert clip.shape == (5, 3, 8, 8)
    reds = ((clip[:, 0, 0, 0] + 1) * 127.5).round()
    assert torch.equal(reds[1:] - reds[:-1], torch.full((4,), 10.0)), "consecutive frames in numbering order"
    flips = []
    for i in range(8):
        item = dm.train_dataset[i]
        assert 1 <= int(item["frame_index"]) <= 5
        green_left = bool(item["first"][1, :, 0].mean() > 0)
        flips.append(not green_left)
        assert all(bool(item[k][1, :, 0].mean() > 0) == green_left for k in ("previous", "target")), "one flip per item"
    assert any(flips) and not all(flips), "random x-flip"
    square = fit_square(Image.new("RGB", (30, 10)), 8)
    assert square.shape == (8, 8, 3)


def test_ucf101_video_files_are_decoded(tmp_path: Path) -> None:
    frames = [torch.full((3, 16, 24), -1.0 + 0.2 * i) for i in range(8)]
    for split in ("train", "test"):
        folder = tmp_path / "UCF-101" / split / "ApplyEyeMakeup"
        folder.mkdir(parents=True)
        assert save_mp4(frames, folder / "v_ApplyEyeMakeup_g01_c01.mp4", 8)
    dm = VIDMDataModule(task="content", dataset="ucf101", root=str(tmp_path / "UCF-101"), size=8, eval_frames=4, batch_size=2)
    dm.setup("fit")
    assert dm.train_dataset[0]["image"].shape == (3, 8, 8)
    clip = dm.val_dataset[0]["video"]
    assert clip.shape == (4, 3, 8, 8) and bool((clip[1:].mean((1, 2, 3)) > clip[:-1].mean((1, 2, 3))).all())


def test_frame_gaps_short_videos_and_missing_roots_are_errors_naming_them(tmp_path: Path) -> None:
    _frame_folder(tmp_path / "sky" / "sky_train" / "a" / "clip1", 10, skip=4)
    _frame_folder(tmp_path / "sky" / "sky_test" / "b" / "clip1", 10)
    dm = VIDMDataModule(dataset="sky", root=str(tmp_path / "sky"), size=8, clip_length=4, eval_frames=4)
    with pytest.raises(ValueError, match=r"clip1 has a gap in its numbering: frame 4 is missing"):
        dm.setup("fit")
    _frame_folder(tmp_path / "clevrer" / "video_train" / "short", 3)
    _frame_folder(tmp_path / "clevrer" / "video_validation" / "ok", 8)
    dm = VIDMDataModule(dataset="clevrer", root=str(tmp_path / "clevrer"), size=8, clip_length=6, eval_frames=4)
    with pytest.raises(ValueError, match=r"short has 3 frames, fewer than the 6-frame clip"):
        dm.setup("fit")
    _frame_folder(tmp_path / "clevrer" / "video_train" / "long", 8)
    dm = VIDMDataModule(dataset="clevrer", root=str(tmp_path / "clevrer"), size=8, clip_length=6, eval_frames=4,
                        short_videos="skip")
    dm.setup("fit")
    assert [v.path.name for v in dm.train_dataset.videos] == ["long"], "short_videos: skip drops the short one"
    with pytest.raises(ValueError, match="needs data.root"):
        VIDMDataModule(dataset="ucf101", root=None)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        VIDMDataModule(dataset="taichi", root=str(tmp_path / "nowhere")).setup("fit")


def test_beta_frame_pairs_and_moving_shapes() -> None:
    rng = np.random.default_rng(0)
    pairs = [beta_frame_pair(rng, 16) for _ in range(2000)]
    assert all(p == n - 1 and 1 <= n <= 15 for p, n in pairs)
    mean_n = np.mean([n for _, n in pairs])
    assert 9.5 < mean_n < 12.5, "the larger of a Beta(2,1) and a Beta(1,2) draw: mean 0.72 of the window"
    loose = [beta_frame_pair(rng, 16, adjacent_previous=False) for _ in range(200)]
    assert all(p < n for p, n in loose) and any(n - p > 1 for p, n in loose)
    video = moving_shapes(16, 6, np.random.default_rng(1))
    assert video.shape == (6, 3, 16, 16) and video.dtype == torch.uint8
    assert not torch.equal(video[0], video[-1]), "the squares move"


def test_embedded_default_mixes_a_bundled_clip_and_synthetic_shapes() -> None:
    dm = VIDMDataModule(task="motion", size=16, clip_length=8, eval_frames=8, embedded_max_frames=32, embedded_shapes=4,
                        embedded_shape_frames=16, batch_size=2)
    dm.setup("fit")
    names = [str(v.path) for v in dm.train_dataset.videos]
    assert any("bikes" in n for n in names) and any("shapes" in n for n in names)
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"first", "previous", "target", "frame_index"} and batch["first"].shape == (2, 3, 16, 16)

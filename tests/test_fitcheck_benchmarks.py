"""Fit-Check test-set readers (Tables 4.1-4.4): UBC Fashion, TikTok, self-captured layouts, back-view filter."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.fitcheck_benchmarks import FitCheckTestSet
from datamodules.fitcheck_videos import FitCheckVideoDataModule
from lightning_modules.fitcheck.evaluation import _paper_dataset


def _png(path: Path, value: int, size=(12, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value, value)).save(path)


def _sidecar(folder: Path, yaw: list[float]) -> None:
    for i in range(len(yaw)):
        _png(folder / "poses" / f"{i:05d}.png", 10 * i)
    (folder / "orientation.json").write_text(json.dumps({"yaw": yaw}))
    _png(folder / "background.png", 77)


def test_tiktok_layout_whole_videos_references_by_yaw_and_back_view_filter(tmp_path: Path) -> None:
    root = tmp_path / "TikTok_dataset"
    for seq, yaw in (("00001", [0, 90, 180, 270]), ("00002", [0, 10, 20, 30])):
        for i in range(8):  # stride 2 keeps 4
            _png(root / seq / "images" / f"{i + 1:04d}.png", 20 * i)
        _sidecar(root / "fitcheck_sidecar" / seq, [float(y) for y in yaw])
    data = FitCheckTestSet("tiktok", str(root), 16, 12, frame_stride=2)
    assert [v.name for v in data.videos] == ["00001"], "00002 has no back view"
    item = data[0]
    assert item["video"].shape == (4, 3, 16, 12) and item["pose"].shape == (4, 3, 16, 12)
    assert torch.equal(item["front"], item["video"][0]) and torch.equal(item["back"], item["video"][2])
    assert abs(float(item["background"].mean()) - (77 / 127.5 - 1)) < 1e-3
    with pytest.raises(FileNotFoundError, match="orientation.json"):
        FitCheckTestSet("tiktok", str(root), 16, 12, sidecar=str(tmp_path / "nowhere"))


def test_tiktok_split_is_the_back_view_filter_ids_from_a_file_and_the_chapter_count(tmp_path: Path, caplog) -> None:
    root = tmp_path / "TikTok_dataset"
    for seq, yaw in (("00001", [0, 180]), ("00002", [180, 0]), ("00003", [0, 10])):
        for i in range(2):
            _png(root / seq / "images" / f"{i + 1:04d}.png", 20 * i)
        _sidecar(root / "fitcheck_sidecar" / seq, [float(y) for y in yaw])
    with caplog.at_level("WARNING"):
        data = FitCheckTestSet("tiktok", str(root), 16, 12, frame_stride=1)
    assert data.video_names == ["00001", "00002"]
    assert "thesis evaluates 19" in caplog.text
    ids = tmp_path / "tiktok_test.txt"
    ids.write_text("# the authors' list\n00002\n00003\n")
    assert FitCheckTestSet("tiktok", str(root), 16, 12, frame_stride=1, ids=str(ids)).video_names == ["00002"]
    with pytest.raises(FileNotFoundError, match="00009"):
        FitCheckTestSet("tiktok", str(root), 16, 12, ids=["00001", "00009"])


def test_ubc_fashion_reads_test_mp4s_on_white_and_selfie_layout(tmp_path: Path) -> None:
    from lightning_modules.fitcheck.video_io import write_mp4

    root = tmp_path / "ubc"
    (root / "test").mkdir(parents=True)
    (root / "train").mkdir()
    write_mp4(torch.rand(8, 3, 16, 16) * 2 - 1, root / "test" / "A1.mp4", fps=30)
    write_mp4(torch.rand(8, 3, 16, 16) * 2 - 1, root / "train" / "B1.mp4", fps=30)
    _sidecar(root / "fitcheck_sidecar" / "A1", [0.0, 180.0])
    _sidecar(root / "fitcheck_sidecar" / "B1", [0.0, 180.0])
    assert [v.stem for v in FitCheckTestSet("ubc_fashion", str(root), 16, 16, split="train").videos] == ["B1"]
    item = FitCheckTestSet("ubc_fashion", str(root), 16, 16, frame_stride=4)[0]
    assert item["name"] == "A1" and item["video"].shape[0] == 2 and bool((item["background"] == 1).all())
    selfie = tmp_path / "selfie" / "capture01"
    for name in ("front", "back", "background", "front_pose", "back_pose"):
        _png(selfie / f"{name}.png", 50)
    for i in range(3):
        _png(selfie / "frames" / f"{i:05d}.png", 90)
        _png(selfie / "poses" / f"{i:05d}.png", 10)
    dm = FitCheckVideoDataModule(size=(16, 12), frame_stride=1, test_set="selfie", test_root=str(tmp_path / "selfie"))
    batch = next(iter(dm.test_dataloader()))
    assert batch["video"].shape == (1, 3, 3, 16, 12) and batch["name"] == ["capture01"]
    assert _paper_dataset(dm) == "self-captured selfie dataset"
    with pytest.raises(ValueError, match="test_root"):
        FitCheckVideoDataModule(test_set="tiktok")

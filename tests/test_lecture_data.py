"""Paired / unpaired readers in the published layouts, the embedded tasks, and their bad-input errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.lecture import PAIRED_TASKS, PairedDataModule, PredictImageFiles, UnpairedDataModule, make_paired_source
from datamodules.lecture.unpaired import to_domain_b


def _png(path: Path, width: int, height: int, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.full((height, width, 3), value, dtype=np.uint8)
    array[:, : width // 2] = 0  # left half black, right half grey
    Image.fromarray(array).save(path)
    return path


def test_side_by_side_pairs_split_into_a_and_b(tmp_path: Path) -> None:
    for split in ("train", "val"):
        _png(tmp_path / split / "0001.jpg", 64, 32)
    data = PairedDataModule(root=str(tmp_path), size=16, batch_size=1)
    data.setup()
    item = data.val_dataset[0]
    assert item["source"].shape == item["image"].shape == (3, 16, 16)
    assert item["source"].max() < -0.9 and item["image"].min() > -0.1  # A = black left half, B = grey right half
    flipped = PairedDataModule(root=str(tmp_path), size=16, direction="BtoA")
    flipped.setup()
    torch.testing.assert_close(flipped.val_dataset[0]["source"], item["image"])


def test_paired_image_whose_width_is_not_twice_its_height_names_the_file(tmp_path: Path) -> None:
    bad = _png(tmp_path / "train" / "bad.png", 30, 20)
    _png(tmp_path / "val" / "ok.png", 40, 20)
    data = PairedDataModule(root=str(tmp_path), size=16)
    data.setup()
    with pytest.raises(ValueError, match=f"{bad}.*twice its height"):
        data.train_dataset[0]


def test_unpaired_folders_read_and_an_empty_side_names_the_folder(tmp_path: Path) -> None:
    for side in ("trainA", "trainB", "testA", "testB"):
        _png(tmp_path / side / "x.png", 20, 20)
    data = UnpairedDataModule(root=str(tmp_path), size=16)
    data.setup()
    assert data.train_dataset[0]["image_a"].shape == data.val_dataset[0]["image_b"].shape == (3, 16, 16)
    (tmp_path / "trainB" / "x.png").unlink()
    with pytest.raises(ValueError, match="trainB is empty"):
        UnpairedDataModule(root=str(tmp_path), size=16).setup()
    with pytest.raises(FileNotFoundError, match="missing does not exist"):
        UnpairedDataModule(root=str(tmp_path / "missing"), size=16).setup()
    (tmp_path / "other" / "trainB").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="trainA is missing"):
        UnpairedDataModule(root=str(tmp_path / "other"), size=16).setup()


def test_embedded_unpaired_domains_share_no_source_digit() -> None:
    data = UnpairedDataModule(size=8, batch_size=4)
    data.setup()
    ds = data.train_dataset
    a = ds.a[:, :1].flatten(1)
    b_as_a = ds.b[:, :1]  # invert the domain-B map on the first channel back to digits
    ink = (b_as_a - 0.9) / (-1.0 - 0.9)
    restored = (ink * 2 - 1).flatten(1)
    distances = torch.cdist(a[:200], restored[:200])
    assert distances.min() > 1e-3, "a digit image appears in both domains"
    torch.testing.assert_close(to_domain_b(torch.full((1, 3, 2, 2), -1.0))[0, :, 0, 0], torch.tensor([0.9, 0.7, -0.2]))


@pytest.mark.parametrize("task", PAIRED_TASKS)
def test_embedded_paired_tasks_are_deterministic_functions_of_the_target(task: str) -> None:
    target = torch.rand(2, 3, 16, 16) * 2 - 1
    source = make_paired_source(task, target)
    assert source.shape == target.shape and source.min() >= -1 and source.max() <= 1
    torch.testing.assert_close(source, make_paired_source(task, target))
    if task == "inpaint_centre":
        assert (source[..., 4:12, 4:12] == 0).all() and torch.equal(source[..., :4, :], target[..., :4, :])
    if task == "grey2colour":
        assert torch.equal(source[:, 0], source[:, 1])
    with pytest.raises(ValueError, match="data.task"):
        make_paired_source("denoise", target)


def test_predict_inputs_keep_size_and_name_and_reject_missing_paths(tmp_path: Path) -> None:
    _png(tmp_path / "in" / "tall.png", 12, 30)
    _png(tmp_path / "in" / "wide.jpg", 50, 18)
    files = PredictImageFiles(str(tmp_path / "in"))
    assert [(f["name"], tuple(f["image"].shape)) for f in files] == [("tall", (3, 30, 12)), ("wide", (3, 18, 50))]
    with pytest.raises(FileNotFoundError, match="nope"):
        PredictImageFiles(str(tmp_path / "nope"))
    (tmp_path / "list.txt").write_text("in/wide.jpg\n")  # a manifest: only what it lists
    assert [f["name"] for f in PredictImageFiles(str(tmp_path / "list.txt"))] == ["wide"]

"""ImageFolderDataModule on temporary folders of generated images, and its bad-input errors."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.image_folder import ImageFolderDataModule, ImageReadError

# Class colours: every image of a class is mostly this colour, so labels can be checked from pixels.
COLOURS = {"cats": (220, 30, 30), "dogs": (30, 30, 220), "owls": (30, 200, 30)}


def write_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int], seed: int, mode: str = "RGB") -> None:
    rng = np.random.default_rng(seed)
    array = np.clip(np.array(colour) + rng.integers(-20, 21, size=(size[1], size[0], 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if mode == "RGBA":
        image = image.convert("RGBA")
    elif mode == "L":
        image = image.convert("L")
    image.save(path)


@pytest.fixture
def nested_folder(tmp_path: Path) -> Path:
    """root/<class>/[sub/]NN.png|jpg, 20 images of varied sizes and modes, plus noise files."""
    root = tmp_path / "images"
    index = 0
    for name, colour in COLOURS.items():
        for k in range(7 if name != "owls" else 6):
            sub = "deeper/" if k % 3 == 0 else ""
            ext = "jpg" if k % 4 == 1 else "png"
            mode = "RGBA" if k == 2 else ("L" if (k == 5 and name == "owls") else "RGB")
            write_image(root / name / f"{sub}{k:02d}.{ext}", colour, (40 + 7 * k, 30 + 5 * k), index, mode)
            index += 1
    (root / "cats" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    write_image(root / ".hidden" / "skip.png", (0, 0, 0), (20, 20), 99)
    return root


def build(root, **kwargs) -> ImageFolderDataModule:
    kwargs = {"size": 16, "batch_size": 4, **kwargs}
    datamodule = ImageFolderDataModule(root=None if root is None else str(root), **kwargs)
    datamodule.setup("fit")
    return datamodule


def all_samples(dataset) -> list[dict]:
    return [dataset[i] for i in range(len(dataset))]


def test_nested_folder_split_shapes_and_labels(nested_folder):
    datamodule = build(nested_folder, labels_from_subfolders=True, size=(16, 24), val_fraction=0.25)
    assert datamodule.classes == ["cats", "dogs", "owls"]
    train, val = datamodule.train_dataset, datamodule.val_dataset
    assert len(train) + len(val) == 20 and len(val) == 5  # hidden folder and .txt ignored
    assert not {str(p) for p in train.files} & {str(p) for p in val.files}
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape == (4, 3, 16, 24) and batch["image"].dtype == torch.float32
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1
    assert batch["label"].dtype == torch.long and batch["label"].shape == (4,)
    for sample, path in zip(all_samples(train) + all_samples(val), train.files + val.files):
        expected = datamodule.classes[int(sample["label"])]
        assert path.relative_to(nested_folder).parts[0] == expected
        if path.stem != "05" or expected != "owls":  # the one grey image has no dominant channel
            assert int(sample["image"].mean(dim=(1, 2)).argmax()) == int(np.argmax(COLOURS[expected]))
    for loader in (datamodule.val_dataloader(), datamodule.test_dataloader(), datamodule.predict_dataloader()):
        assert set(next(iter(loader))) == {"image", "label"}


def test_split_is_deterministic_per_seed(nested_folder):
    a, b, c = build(nested_folder, seed=3), build(nested_folder, seed=3), build(nested_folder, seed=4)
    assert a.val_dataset.files == b.val_dataset.files
    assert a.val_dataset.files != c.val_dataset.files
    assert torch.equal(next(iter(a.val_dataloader()))["image"], next(iter(b.val_dataloader()))["image"])
    assert "label" not in next(iter(a.val_dataloader()))


def test_train_val_subfolders_are_used_as_given(tmp_path):
    root = tmp_path / "ds"
    for split, count in (("train", 5), ("val", 2), ("test", 3)):
        for k in range(count):
            cls = "a" if k % 2 else "b"
            write_image(root / split / cls / f"{k}.webp", COLOURS["cats"], (20, 20), k)
    datamodule = build(root, labels_from_subfolders=True, crop="random", hflip=True, channels=1)
    assert len(datamodule.train_dataset) == 5 and len(datamodule.val_dataset) == 2
    assert all("train" in p.parts for p in datamodule.train_dataset.files)
    assert all("val" in p.parts for p in datamodule.val_dataset.files)
    assert datamodule.classes == ["a", "b"]
    assert len(datamodule.test_dataloader().dataset) == 3
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape == (4, 1, 16, 16)


def test_non_recursive_and_extension_filter(nested_folder):
    write_image(nested_folder / "top.PNG", (10, 10, 10), (30, 30), 7)
    write_image(nested_folder / "top2.png", (10, 10, 10), (30, 30), 8)
    datamodule = build(nested_folder, recursive=False)
    assert len(datamodule.train_dataset) + len(datamodule.val_dataset) == 2
    only_jpg = build(nested_folder, extensions=[".JPG"])
    assert all(p.suffix == ".jpg" for p in only_jpg.train_dataset.files + only_jpg.val_dataset.files)


def test_missing_root_names_the_path(tmp_path):
    missing = tmp_path / "does" / "not" / "exist"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        build(missing)


def test_empty_folder_names_folder_and_extensions(tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError) as error:
        build(empty)
    message = str(error.value)
    assert str(empty) in message
    for ext in (".png", ".jpg", ".jpeg", ".webp"):
        assert ext in message


def test_corrupt_image_is_reported_by_name_at_load_time(nested_folder):
    bad = nested_folder / "dogs" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    truncated = nested_folder / "owls" / "truncated.jpg"
    good = (nested_folder / "owls" / "01.jpg").read_bytes()
    truncated.write_bytes(good[: len(good) // 3])
    datamodule = build(nested_folder)  # setup only lists files; it does not fail
    for name in ("broken.png", "truncated.jpg"):
        in_train = any(p.name == name for p in datamodule.train_dataset.files)
        dataset = datamodule.train_dataset if in_train else datamodule.val_dataset
        index = [p.name for p in dataset.files].index(name)
        with pytest.raises(ImageReadError, match=name) as error:
            dataset[index]
        assert error.value.path.name == name
    with pytest.raises(ImageReadError):
        for loader in (datamodule.train_dataloader(), datamodule.val_dataloader()):
            for _ in loader:
                pass


def test_null_root_uses_embedded_digits(caplog):
    with caplog.at_level(logging.INFO, logger="datamodules"):
        datamodule = build(None, labels_from_subfolders=True)
    assert any("root is null" in r.getMessage() and "1797" in r.getMessage() for r in caplog.records)
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["label"].shape == (4,)
    assert len(datamodule.train_dataset) + len(datamodule.val_dataset) == 1797


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="crop"):
        ImageFolderDataModule(root=None, crop="middle")
    with pytest.raises(ValueError, match="val_fraction"):
        ImageFolderDataModule(root=None, val_fraction=1.5)

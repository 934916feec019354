"""Painting time-lapse data (thesis 000, Ch. 6, §6.7): the published layout on a fake tree, windowed pairs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.painting_timelapse import PaintingTimelapseDataModule, TimelapseFolder, format_time, parse_frame_name


def _painting(folder: Path, frames: dict[str, int], target: str | None = None, text: dict | None = None) -> None:
    folder.mkdir(parents=True)
    for name, grey in frames.items():
        Image.fromarray(np.full((12, 10, 3), grey, np.uint8)).save(folder / name)
    if target is not None:
        (folder / "target.json").write_text(json.dumps({"target": target}))
    if text is not None:
        (folder / "text.json").write_text(json.dumps(text))


def test_frame_names() -> None:
    assert parse_frame_name("3_01:10.jpg") == (3, 70.0)
    assert parse_frame_name("12_00:05.JPG") == (12, 5.0)
    assert parse_frame_name("white.jpg") is None and parse_frame_name("3_01-10.jpg") is None
    assert format_time(70) == "01:10"


def test_timelapse_reader_on_a_fake_layout(tmp_path: Path) -> None:
    frames = {"1_00:05.jpg": 200, "2_00:30.jpg": 150, "3_01:10.jpg": 100, "4_01:20.jpg": 50, "notes.txt": 0}
    (tmp_path / "train").mkdir()
    for split, name in (("train", "a"), ("val", "b")):
        _painting(tmp_path / split / name, {k: v for k, v in frames.items() if k.endswith(".jpg")}, target="3_01:10.jpg",
                  text={"1_00:05.jpg": "sky", "2_00:30.jpg": "mountain", "3_01:10.jpg": "tree"})
    painting = TimelapseFolder(tmp_path / "train" / "a")
    assert painting.times == [0.0, 5.0, 30.0, 70.0], "white start + frames up to the target"
    assert painting.text == ["none", "sky", "mountain", "tree"]
    stack = painting.frames((8, 8), "stretch")
    assert stack.shape == (4, 3, 8, 8)
    assert torch.all(stack[0] == 1), "a white canvas is synthesised"
    assert stack[3].mean() == pytest.approx(100 / 127.5 - 1, abs=1e-3)

    dm = PaintingTimelapseDataModule(root=str(tmp_path), size=8, window=2, batch_size=2, fit="stretch")
    dm.setup()
    pairs = dm.train_dataset.pairs
    assert pairs == [(0, 0, 1), (0, 0, 2), (0, 1, 2), (0, 1, 3), (0, 2, 3)]
    item = dm.train_dataset[1]
    assert item["delta"] == 30.0 and item["text"] == "sky"
    assert torch.equal(item["target"], stack[3]) and "mask" not in item, "real data: masks come from D in the modules"
    batch = next(iter(dm.val_dataloader()))
    assert batch["canvas"].shape == (2, 3, 8, 8) and batch["text"] == ["sky", "sky"]
    sequence = next(iter(dm.test_dataloader()))
    assert sequence["frames"].shape == (1, 4, 3, 8, 8) and sequence["name"] == ["b"]
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "mine.png")
    dm2 = PaintingTimelapseDataModule(root=str(tmp_path), size=8, predict_images=[str(tmp_path / "mine.png")])
    target = next(iter(dm2.predict_dataloader()))
    assert target["target"].shape == (1, 3, 8, 8) and target["name"] == ["mine"]
    assert torch.all(target["canvas"][0, :, 1:6] == 1) and torch.all(target["canvas"][0, :, 6:] == -1) and "text" not in target, "white start canvas inside the painting's box"
    assert target["placement"][0].content_width == 8 and target["placement"][0].content_height == 5


def test_consecutive_pairs_by_default_aspect_kept_and_resumable_loader(tmp_path: Path) -> None:
    from datamodules.resumable import ResumableSampler

    frames = {"1_00:05.jpg": 200, "2_00:30.jpg": 150, "3_01:10.jpg": 100}
    for split in ("train", "val"):
        _painting(tmp_path / split / "a", frames)  # 12 x 10 (H x W) frames
    dm = PaintingTimelapseDataModule(root=str(tmp_path), size=8, batch_size=1)
    dm.setup()
    assert dm.train_dataset.pairs == [(0, 0, 1), (0, 1, 2), (0, 2, 3)], "consecutive keyframes, as the official dataset.py"
    item = dm.train_dataset[1]
    # 12x10 -> content 8x7 (long side 8), padded with black on the 8x8 canvas: the painting is not squashed
    columns = (item["next"] > -1).any(0).any(0)
    assert int(columns.sum()) == 7 and bool((item["next"][:, :, ~columns] == -1).all())
    white = dm.train_dataset[0]["canvas"]
    assert bool((white[:, :, columns] == 1).all()), "the synthesised white canvas carries the same border"
    stretched = PaintingTimelapseDataModule(root=str(tmp_path), size=8, fit="stretch")
    stretched.setup()
    assert bool((stretched.train_dataset[1]["next"] > -1).all())
    assert isinstance(dm.train_dataloader().sampler, ResumableSampler), "mid-epoch resumable like the other readers"
    with pytest.raises(ValueError, match="data.init_args.fit"):
        PaintingTimelapseDataModule(root=str(tmp_path), fit="crop")


def test_missing_root_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="data.init_args.root"):
        PaintingTimelapseDataModule(root=str(tmp_path / "nowhere"), size=8).setup()


def test_embedded_pairs_have_exact_masks() -> None:
    dm = PaintingTimelapseDataModule(size=16, num_paintings=2, num_strokes=3, window=3, val_fraction=0.5, batch_size=1)
    dm.setup()
    assert len(dm.train_dataset) == 6  # 4 frames, all pairs within the window
    for index in range(len(dm.train_dataset)):
        item = dm.train_dataset[index]
        changed = (item["canvas"] != item["next"]).any(0)
        assert torch.equal(item["mask"][0].bool(), changed), "mask = union of the step masks = changed pixels"
        assert torch.equal(item["unfinished"][0].bool(), (item["canvas"] != item["target"]).any(0))
        assert item["delta"] > 0 and item["text"] in dm.vocabulary


def _official_tree(root: Path) -> None:
    """A tiny tree in the official layout (ArmastusChen/inverse_painting data/sample_data + text/ of the processed data)."""
    frames = {"1_0:15": 250, "2_0:40": 200, "3_0:53": 150, "4_1:12": 120, "5_1:28": 100, "6_2:00": 90}
    for split in ("train", "val"):
        video = root / split / "rgb" / "example"
        video.mkdir(parents=True)
        for name, grey in frames.items():
            Image.fromarray(np.full((6, 9, 3), grey, np.uint8)).save(video / f"{name}.jpg")
        # 4_1:12 was removed in pre-processing (not listed); 6_2:00 comes after the target
        (video / "last_aligned_frame_inv.json").write_text(json.dumps({"5_1:28": ["1_0:15", "2_0:40", "3_0:53"]}))
        text = root / split / "text" / "example"
        text.mkdir(parents=True)
        for cur, nxt, word in (("white_5_1:28", "2_0:40", "Sky"), ("2_0:40", "3_0:53", "Mountain"), ("3_0:53", "5_1:28", "Tree")):
            (text / f"{cur}.json").write_text(json.dumps({"ref_img_name": "5_1:28", "cur_image_name": cur,
                                                          "next_image_name": nxt, "prompt": "...", "next_text": word}))


def test_official_layout_converter_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from datamodules.painting_timelapse_convert import main

    _official_tree(tmp_path / "official")
    assert main([str(tmp_path / "official"), str(tmp_path / "ours")]) == 0
    assert "2 paintings" in capsys.readouterr().out
    folder = tmp_path / "ours" / "train" / "example"
    assert sorted(p.name for p in folder.glob("*.jpg")) == ["2_0:40.jpg", "3_0:53.jpg", "5_1:28.jpg"], \
        "first candidate dropped (white canvas instead), unlisted and post-target frames not copied"
    painting = TimelapseFolder(folder)
    assert painting.times == [0.0, 40.0, 53.0, 88.0] and painting.text == ["none", "Sky", "Mountain", "Tree"]
    dm = PaintingTimelapseDataModule(root=str(tmp_path / "ours"), size=8)
    dm.setup()
    assert len(dm.train_dataset) == 3 and dm.train_dataset[2]["text"] == "Tree" and dm.train_dataset[2]["delta"] == 35.0
    (tmp_path / "official" / "val" / "rgb" / "example" / "last_aligned_frame_inv.json").write_text("{not json")
    assert main([str(tmp_path / "official"), str(tmp_path / "again")]) == 2
    assert "last_aligned_frame_inv.json: not valid JSON" in capsys.readouterr().err


def test_tiny_stage_and_tiny_chain_build_the_same_renderer_and_mask_generator() -> None:
    """The documented stage -> chain flow (fit the stage, load it with *_checkpoint) needs the same shapes (issue 17.7)."""
    import yaml

    configs = Path(__file__).resolve().parents[1] / "configs"

    def merged(name: str, *path: str) -> dict:
        out: dict = {}
        for file in (configs / f"{name}.yaml", configs / "tiny" / f"{name}.yaml"):
            node = yaml.safe_load(file.read_text())["model"]["init_args"]
            for key in path:
                node = node.get(key, {}).get("init_args", {})
            out.update(node)
        return out

    shape_keys = ("canvas_mode", "unet_config", "vae_config", "text_encoder_config", "clip_config", "clip_hidden", "time_hidden",
                  "use_text", "use_mask", "use_time", "use_reference_net", "use_clip", "image_size")
    default = lambda k: True if k.startswith("use_") else None  # noqa: E731 - the modules' defaults
    stage, chained = merged("inverse_painting_renderer"), merged("inverse_painting", "renderer")
    assert {k: stage.get(k, default(k)) for k in shape_keys} == {k: chained.get(k, default(k)) for k in shape_keys}
    stage, chained = merged("inverse_painting_mask"), merged("inverse_painting", "mask_generator")
    mask_keys = ("unet_config", "vae_config", "text_encoder_config", "time_hidden", "use_text", "use_time")
    assert ({k: stage.get(k, default(k)) for k in mask_keys if k != "unet_config"}
            == {k: chained.get(k, default(k)) for k in mask_keys if k != "unet_config"})
    strip = lambda c: {k: v for k, v in c.items() if k not in ("in_channels", "out_channels")}  # noqa: E731 - set by the module
    assert strip(stage["unet_config"]) == strip(chained["unet_config"])

"""The suite's predict contract (docs/architecture.md, "The predict contract"), unit and through cli.py.

Every input named is processed (folders, lists, manifests), a batch limit from an overlay never
truncates user inputs, outputs keep the input's size / aspect ratio (SR: exactly scale x the
input), are named after the input and the variant, are never overwritten, and ``manifest.json``
lists input -> outputs. Models are tiny random-weight stand-ins: these tests check the plumbing,
not the pictures.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cli as cli_module
from cli_runner import run_cli
from datamodules.predict_inputs import (
    expand_inputs,
    fit_to_canvas,
    read_prompts,
    release_predict_limit,
    restore_from_canvas,
    size_grouped_batches,
    unique_names,
)
from lightning_modules.components.predict_outputs import PredictionWriter, variant_tag

SIZES = [(40, 24), (24, 40), (64, 64), (50, 30), (12, 8), (33, 47), (80, 20)]  # (width, height), PIL order
TINY = ["--trainer.enable_progress_bar", "false"]
#: these predicts deliberately run on untrained stand-in weights (cli.py requires saying so)
RANDOM = ["--allow_random_weights", "true"]


def _images(folder: Path, sizes: list[tuple[int, int]], prefix: str = "img") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate(sizes):
        path = folder / f"{prefix}{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


# ------------------------------------------------------------------------------------------- unit
def test_expand_inputs_takes_files_folders_and_manifests(tmp_path: Path) -> None:
    files = _images(tmp_path / "a", SIZES[:3])
    nested = _images(tmp_path / "a" / "sub", SIZES[:1], prefix="deep")
    (tmp_path / "a" / "notes.md").write_text("not an image")
    (tmp_path / "list.txt").write_text("# my inputs\na/img2.png\n\na/img0.png\n")
    (tmp_path / "list.json").write_text(json.dumps({"inputs": [str(files[1])]}))
    assert expand_inputs(tmp_path / "a") == [*files, *nested], "folders are expanded recursively, sorted"
    assert expand_inputs(str(tmp_path / "list.txt")) == [files[2], files[0]], "txt manifests keep their order"
    assert expand_inputs([str(files[0]), str(tmp_path / "list.json")]) == [files[0], files[1]]
    with pytest.raises(FileNotFoundError, match="missing.png"):
        expand_inputs([str(files[0]), str(tmp_path / "missing.png")], key="data.predict_inputs")
    (tmp_path / "bad.txt").write_text("a/nope.png\n")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        expand_inputs(tmp_path / "bad.txt")
    masks = expand_inputs(tmp_path / "a", exclude=lambda p: p.stem == "img1")
    assert files[1] not in masks and files[0] in masks


def test_unique_names_never_collide(tmp_path: Path) -> None:
    names = unique_names([tmp_path / "x" / "cat.png", tmp_path / "y" / "cat.jpg", tmp_path / "dog.png"])
    assert names == ["x_cat", "y_cat", "dog"]
    assert len(set(unique_names([tmp_path / "a.png"] * 3))) == 3, "the same file named twice gives two outputs"


@pytest.mark.parametrize("mode", ["pad", "stretch"])
@pytest.mark.parametrize("height, width", [(8, 12), (40, 24), (17, 17), (5, 60)])
def test_fit_then_restore_gives_the_input_frame_back(mode: str, height: int, width: int) -> None:
    image = torch.linspace(-1, 1, height * width * 3).reshape(3, height, width)
    canvas, place = fit_to_canvas(image, 16, 16, mode)
    assert canvas.shape == (3, 16, 16)
    restored = restore_from_canvas(canvas, place)
    assert restored.shape == (3, height, width), "an identity model maps back to the input's size"
    if mode == "pad" and max(height, width) <= 16:  # upsampled, not shrunk: nothing lost
        assert (restored - image).abs().mean() < 0.05
    # super-resolution: a model whose output is 4x the canvas gives exactly 4x the input
    big = torch.nn.functional.interpolate(canvas[None], scale_factor=4, mode="nearest")[0]
    assert restore_from_canvas(big, place, scale=4).shape == (3, 4 * height, 4 * width)
    capped = restore_from_canvas(canvas, place, max_side=16)
    cap = min(1.0, 16 / max(height, width))  # caps, never enlarges
    assert tuple(capped.shape[-2:]) == (max(1, round(height * cap)), max(1, round(width * cap))), "aspect kept"


def test_pad_keeps_the_whole_input_and_fills_the_rest() -> None:
    image = torch.ones(1, 8, 16)
    canvas, place = fit_to_canvas(image, 16, 16, "pad", fill=-1.0)
    assert (place.top, place.content_height, place.content_width) == (4, 8, 16)
    assert torch.all(canvas[:, 4:12] == 1) and torch.all(canvas[:, :4] == -1) and torch.all(canvas[:, 12:] == -1)


def test_size_grouped_batches_never_mix_sizes_and_keep_every_index() -> None:
    sizes = [(8, 8), (16, 8), (8, 8), (8, 8), (16, 8)]
    batches = size_grouped_batches(sizes, 2)
    assert sorted(i for batch in batches for i in batch) == list(range(5))
    assert all(len({sizes[i] for i in batch}) == 1 and len(batch) <= 2 for batch in batches)


def test_release_predict_limit_lifts_an_overlay_limit(caplog: pytest.LogCaptureFixture) -> None:
    class FakeTrainer:
        limit_predict_batches = 1

    trainer = FakeTrainer()
    release_predict_limit(trainer, 7, "data.predict_inputs")
    assert trainer.limit_predict_batches == 1.0
    assert "limit_predict_batches=1" in caplog.text and "all 7 inputs" in caplog.text


def test_writer_never_overwrites_and_lists_every_output(tmp_path: Path) -> None:
    writer = PredictionWriter(tmp_path / "out", {"sampler": "euler"})
    image = torch.zeros(3, 4, 6)
    first = writer.save_image(image, "photo.png", variant_tag(alpha=0.5))
    second = writer.save_image(image, "photo", variant_tag(alpha=0.5))
    writer.record("photo.png", [first, second], alpha=0.5)
    assert first.name == "photo__alpha0.50.png" and second.name == "photo__alpha0.50_1.png"
    again = PredictionWriter(tmp_path / "out")  # a later run in the same folder
    assert again.save_image(image, "photo", "alpha0.50").name == "photo__alpha0.50_2.png"
    assert again.write_manifest().name == "manifest_1.json", "the earlier run's manifest is kept"
    manifest = _manifest(tmp_path / "out")
    assert manifest["settings"] == {"sampler": "euler"}
    assert manifest["items"] == [{"input": "photo.png", "outputs": [first.name, second.name], "alpha": 0.5}]
    with Image.open(first) as png:
        assert png.size == (6, 4)


def test_read_prompts_from_strings_and_files(tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text("a red car\n\n  a blue house \n")
    assert read_prompts(["a cat", str(tmp_path / "p.txt")]) == ["a cat", "a red car", "a blue house"]
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_prompts(str(tmp_path / "missing.txt"))


# ------------------------------------------------------------------------------------------- through cli.py
def test_tokenizer_reconstructs_every_image_of_a_folder_at_its_size(tmp_path: Path) -> None:
    """AlignTok: 7 differently sized images, tiny overlay with batch 4 and limit_predict_batches 1."""
    _images(tmp_path / "mine", SIZES)
    cli = run_cli(["predict", *RANDOM, "--config", "aligntok_stage1", "--config", "tiny/aligntok_stage1", *TINY,
                   "--data.predict_inputs", str(tmp_path / "mine")], tmp_path / "runs")
    folder = Path(cli.model.predictions_dir)
    for i, (w, h) in enumerate(SIZES):
        with Image.open(folder / f"img{i}.png") as out:
            assert out.size == (w, h), f"img{i}: the reconstruction keeps the input's size"
    items = _manifest(folder)["items"]
    assert [Path(item["input"]).name for item in items] == [f"img{i}.png" for i in range(7)], "none dropped"
    assert (folder / cli_module.RANDOM_WEIGHTS_STAMP).is_file(), "outputs of untrained weights are stamped random"
    assert [item["outputs"] for item in items] == [[f"img{i}.png"] for i in range(7)]


def test_codi_sr_outputs_are_exactly_scale_times_each_input(tmp_path: Path) -> None:
    sizes = [(12, 8), (8, 12), (4, 4), (10, 6), (7, 9), (16, 16)]
    _images(tmp_path / "lr", sizes, prefix="photo")
    cli = run_cli(["predict", *RANDOM, "--config", "codi_sr", "--config", "tiny/codi_sr", *TINY,
                   "--data.predict_root", str(tmp_path / "lr"), "--model.num_sampling_steps", "1"], tmp_path / "runs")
    folder = Path(cli.model.predictions_dir)
    for i, (w, h) in enumerate(sizes):
        with Image.open(folder / f"photo{i}.png") as out:
            assert out.size == (4 * w, 4 * h), f"photo{i}: x4 of {w}x{h}"
    assert len(_manifest(folder)["items"]) == len(sizes)


def test_codi_inpainting_takes_an_image_mask_pair_of_another_size(tmp_path: Path) -> None:
    _images(tmp_path / "ip", [(32, 32)], prefix="room")
    mask = np.zeros((32, 32), np.uint8)
    mask[8:20, 10:24] = 255
    Image.fromarray(mask).save(tmp_path / "ip" / "room0_mask.png")
    cli = run_cli(["predict", *RANDOM, "--config", "codi_inpaint", "--config", "tiny/codi_inpaint", *TINY,
                   "--data.predict_root", str(tmp_path / "ip"), "--model.num_sampling_steps", "1"], tmp_path / "runs")
    folder = Path(cli.model.predictions_dir)
    with Image.open(folder / "room0.png") as out:
        assert out.size == (32, 32)
    assert [item["outputs"] for item in _manifest(folder)["items"]] == [["room0.png"]], "the mask is not an input"


def test_baseline_num_samples_gives_n_files_and_counts_sampler_steps(tmp_path: Path) -> None:
    cli = run_cli(["predict", *RANDOM, "--config", "ddpm_digits_cfg", "--config", "tiny/ddpm_digits_cfg",
                   "--data.num_samples", "11", "--data.labels", "[3, 7]"], tmp_path / "runs")
    folder = Path(cli.model.predictions_dir)
    samples = sorted(folder.glob("sample*.png"))
    assert len(samples) == 11, "11 samples although the overlay limits predict to 1 batch of 8"
    items = _manifest(folder)["items"]
    assert [item["label"] for item in items] == [3, 7] * 5 + [3]
    assert len({item["seed"] for item in items}) == 11
    assert samples[0].name == "sample00000__seed0_label3.png"
    progress = next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "SamplerStepProgress")
    assert progress.steps_done == 2 * 4, "two batches of 4 sampler steps: the bar counts steps"
    cycled = run_cli(["predict", *RANDOM, "--config", "ddpm_digits_cfg", "--config", "tiny/ddpm_digits_cfg", *TINY,
                      "--data.num_samples", "3"], tmp_path / "runs")
    assert [item["label"] for item in _manifest(Path(cycled.model.predictions_dir))["items"]] == [0, 1, 2]


def test_text_to_image_takes_prompts_from_the_command_line_and_a_file(tmp_path: Path) -> None:
    (tmp_path / "prompts.txt").write_text("a handwritten digit 3\na handwritten digit 7\n")
    cli = run_cli(["predict", *RANDOM, "--config", "ldm_scaling", "--config", "tiny/ldm_scaling", *TINY,
                   "--data.prompts", json.dumps(["a red car", str(tmp_path / "prompts.txt")]),
                   "--model.num_sampling_steps", "1"], tmp_path / "runs")
    folder = Path(cli.model.predictions_dir)
    items = _manifest(folder)["items"]
    assert [item["input"] for item in items] == ["a red car", "a handwritten digit 3", "a handwritten digit 7"]
    assert items[0]["outputs"] == ["prompt000_a_red_car__seed0.png"]
    assert all((folder / item["outputs"][0]).is_file() for item in items)


def test_inverse_painting_paints_every_target_at_its_aspect_ratio(tmp_path: Path) -> None:
    _images(tmp_path / "paintings", [(60, 30), (20, 40)], prefix="painting")
    cli = run_cli(["predict", *RANDOM, "--config", "inverse_painting", "--config", "tiny/inverse_painting", *TINY,
                   "--data.predict_images", str(tmp_path / "paintings")], tmp_path / "runs")
    folder = Path(cli.model.predictions_dir)
    items = _manifest(folder)["items"]
    assert [item["outputs"][0] for item in items] == ["painting0/timelapse.mp4", "painting1/timelapse.mp4"]
    with Image.open(folder / "painting0" / "keyframes" / "001_00-20.png") as frame:
        assert frame.size == (32, 16), "a 60x30 painting gives a 2:1 time-lapse (long side = the model's 32)"
    with Image.open(folder / "painting1" / "keyframes" / "001_00-20.png") as frame:
        assert frame.size == (16, 32)

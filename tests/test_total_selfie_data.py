"""Total Selfie (thesis 000, Ch. 3) data utilities: homography selfie simulation, reference ranking, paste
augmentation, layouts and their bad-input errors, and ``predict`` on a tiny capture folder.
Random-weight networks: these test the code, not the paper's numbers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules.total_selfie.homography import (
    TYPICAL_KEYPOINTS, apply_homography, category_homography, fit_homography, warp_image,
)
from datamodules.total_selfie.paste import paste_geometry, paste_selfie
from lightning_modules.total_selfie.parsing import ATR_LABELS, garment_groups
from lightning_modules.total_selfie.reference_selection import (
    is_full_body, rank_references, scaled_box_mask, selfie_label_sets,
)


def test_dlt_homography_recovers_a_known_homography():
    h = np.array([[1.2, 0.1, 5.0], [-0.05, 0.9, 3.0], [0.001, 0.002, 1.0]])
    src = np.random.default_rng(0).uniform(0, 100, (8, 2))
    fitted = fit_homography(src, apply_homography(h, src))
    assert np.allclose(fitted, h, atol=1e-8)
    with pytest.raises(ValueError, match="at least 4"):
        fit_homography(src[:3], src[:3])


def test_selfie_simulation_maps_keypoints_to_their_typical_positions_within_1px():
    """Step (3) of §3.2.1: the fitted H sends each detected keypoint to its typical selfie position, and the
    warped image shows the keypoint's pixel there."""
    size = 64
    rng = np.random.default_rng(1)
    for category, table in TYPICAL_KEYPOINTS.items():
        targets = np.array([[x * (size - 1), y * (size - 1)] for x, y in table.values()])
        true_h = np.array([[0.7, 0.05, 10.0], [0.02, 0.6, 4.0], [0.0005, 0.001, 1.0]])
        detected = apply_homography(true_h, targets) + rng.normal(0, 0.05, targets.shape)  # a "detection" in I_gt
        keypoints = -np.ones((18, 2))
        keypoints[list(table)] = detected
        h = category_homography(keypoints, category, size)
        error = np.linalg.norm(apply_homography(h, detected) - targets, axis=1)
        assert error.max() < 1.0, (category, error)
    image = -torch.ones(3, 64, 64)
    image[:, 20, 30] = 1.0  # one bright pixel at (x=30, y=20)
    h = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, -7.0], [0.0, 0.0, 1.0]])
    warped = warp_image(image, h, 64, 64)
    y, x = divmod(int(warped[0].argmax()), 64)
    assert (x, y) == (35, 13)


def _map(labels: dict[int, tuple[int, int]], size: int = 40) -> torch.Tensor:
    """A parsing map with each label filling rows [a, b)."""
    out = torch.zeros(size, size, dtype=torch.long)
    for label, (a, b) in labels.items():
        out[a:b, 10:30] = label
    return out


def test_reference_ranking_on_constructed_label_sets():
    groups = garment_groups(ATR_LABELS)
    selfies = {"upper": _map({4: (0, 20), 17: (20, 21), 11: (30, 40)}),  # Scarf covers 20 px < 21: dropped
               "lower": _map({5: (0, 20), 4: (30, 40)}),                 # Upper-clothes is not a lower label
               "shoes": _map({9: (0, 5), 10: (5, 10)})}
    sets = selfie_label_sets(selfies, groups)
    assert sets == {"upper": {4}, "lower": {5}, "shoes": {9, 10}}
    candidates = [
        _map({4: (0, 10), 6: (10, 30), 9: (30, 40)}),                    # upper, pants, one shoe: 2 matches
        _map({4: (0, 10), 5: (10, 30), 9: (30, 35), 10: (35, 40)}),      # skirt and both shoes: 4 matches
        _map({4: (0, 30), 11: (30, 40)}),                                # no shoes: not full-body
        _map({4: (0, 10), 5: (10, 30), 9: (30, 40), 10: (39, 40)}),      # right shoe covers 20 px (>= 5): 4 matches
    ]
    ranked = rank_references(sets, candidates, groups)
    assert [r.index for r in ranked] == [1, 3, 0] and [r.score for r in ranked] == [4, 4, 2]
    assert not is_full_body(candidates[2], groups)
    with pytest.raises(ValueError, match="no full-body photo.*a.png"):
        rank_references(sets, [candidates[2]], groups, names=["a.png"])


def test_mask_is_the_person_box_scaled_by_1_1():
    mask = scaled_box_mask((10, 20, 30, 40), 100, 100, 1.1)
    rows, cols = torch.nonzero(mask[0].any(1)).flatten(), torch.nonzero(mask[0].any(0)).flatten()
    assert (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1) == (9, 31, 19, 41)


def test_paste_geometry_bbox_height_aspect_kept_centres_equal():
    top, left, height, width = paste_geometry((20, 30, 60, 50), (100, 50))  # box 40 high, selfie 2:1
    assert (height, width) == (40, 20)
    assert (top + height / 2, left + width / 2) == (40.0, 40.0)
    canvas = -torch.ones(3, 80, 80)
    out = paste_selfie(canvas, torch.ones(3, 100, 50), (20, 30, 60, 50))
    inside = out[0] > 0
    rows, cols = torch.nonzero(inside.any(1)).flatten(), torch.nonzero(inside.any(0)).flatten()
    assert (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1) == (20, 60, 30, 50)


def _write_capture(folder, size=48, skip=None):
    from datamodules.total_selfie.embedded import embedded_capture
    from lightning_modules.components.image_io import to_uint8
    from PIL import Image

    capture = embedded_capture(0, 0, size, 32, num_photos=2)
    folder.mkdir(parents=True)
    (folder / "photos").mkdir()
    save = lambda t, p: Image.fromarray(to_uint8(t[None])[0].numpy()).save(p)  # noqa: E731
    for name in ("face", "upper", "lower", "shoes"):
        if name != skip:
            save(capture[name], folder / f"{name}.png")
    if skip != "background":  # a landscape background (any aspect ratio is taken)
        save(capture["background"][:, 6:42, :], folder / "background.png")
    for i, photo in enumerate(capture["photos"]):
        save(photo, folder / "photos" / f"photo{i}.jpg")
    return folder


def test_capture_and_pair_layout_errors_name_the_file(tmp_path):
    from datamodules.total_selfie.layouts import read_capture_files, read_pair
    from PIL import Image

    with pytest.raises(FileNotFoundError, match="shoes"):
        read_capture_files(_write_capture(tmp_path / "a", skip="shoes"))
    with pytest.raises(FileNotFoundError, match="background"):
        read_capture_files(_write_capture(tmp_path / "b", skip="background"))
    pair = tmp_path / "pair"
    pair.mkdir()
    for name in ("gt", "face", "upper", "lower", "shoes"):
        Image.new("RGB", (32, 32)).save(pair / f"{name}.png")
    Image.new("L", (16, 16)).save(pair / "mask.png")
    with pytest.raises(ValueError, match=r"mask\.png is 16x16 but .*gt\.png is 32x32"):
        read_pair(pair, 32, 32)


def test_predict_on_a_tiny_capture_writes_the_full_body_image(tmp_path, monkeypatch):
    """§3.2.2 end to end: undistortion (stand-in), reference selection, Canny pose, background-preserving DDIM and
    SDEdit refinement with a tiny suite text-to-image model; outputs named after the capture."""
    import json

    from datamodules.total_selfie.datamodule import TotalSelfieDataModule
    from lightning_modules.ldm_scaling.module import ScaledLDM
    from lightning_modules.total_selfie.refinement import AppearanceRefiner, DiffusionSDEdit, IdentityFaceUndistorter
    from tests.total_selfie_tiny import VAE, tiny_module

    torch.manual_seed(0)
    sd = ScaledLDM(width=32, levels=2, layers_per_block=1, context_dim=32, latent_size=8, text_encoder="stand_in",
                   vae_config=dict(VAE, sample_size=16), num_sampling_steps=4, prediction_type="epsilon")
    refiner = AppearanceRefiner(DiffusionSDEdit(sd, num_steps=4, resolution=16), parts=["face", "shoes"], strength=0.5)
    module = tiny_module(face_undistorter=IdentityFaceUndistorter(), refiner=refiner)
    capture = _write_capture(tmp_path / "my_capture")
    data = TotalSelfieDataModule(predict_captures=[str(tmp_path)], size=32, selfie_size=32)
    batch = next(iter(data.predict_dataloader()))
    monkeypatch.chdir(tmp_path)
    written = module.predict_step(batch, 0)
    out = tmp_path / "predictions" / "total_selfie"
    assert [p.replace("\\", "/").endswith("predictions/total_selfie/my_capture.png") for p in written] == [True]
    assert (out / "my_capture.png").is_file()
    for variant in ("initial", "pose", "mask", "reference", "face", "shoes"):
        assert (out / f"my_capture__{variant}.png").is_file(), variant
    from PIL import Image
    assert Image.open(out / "my_capture.png").size == (32, 24)  # the 48x36 background's frame, long side = the model's
    item = json.loads((out / "manifest.json").read_text())["items"][0]
    assert item["ranking"] and item["ranking"][0]["photo"].endswith(".jpg")
    assert set(item["refined_parts"]) <= {"face", "shoes"}
    assert capture.is_dir()


def test_dreambooth_augmentation_sizes_and_captions():
    """§3.5.6: face resized to 350-450 (shoes 400-500) of 512 and zero-padded; captions "a sks face" / "a hta shoes"."""
    from datamodules.total_selfie.dreambooth import TotalSelfieDreamBoothDataModule

    data = TotalSelfieDreamBoothDataModule(size=64, per_concept=3)
    data.setup()
    items = [data.train_dataset[i] for i in range(6)]
    assert [it["caption"] for it in items[:2]] == ["a sks face", "a hta shoes"]
    for item in items:
        content = (item["image"] > -1).any(0)
        side = int(content.any(1).sum())
        low, high = (350, 450) if item["caption"] == "a sks face" else (400, 500)
        assert item["image"].shape == (3, 64, 64) and low * 64 / 512 - 1 <= side <= high * 64 / 512 + 1


def test_generation_writes_a_pair_that_the_pair_reader_takes(tmp_path):
    """The offline generator's writer (§3.5.1) and the training reader agree on the pair layout."""
    from datamodules.total_selfie.embedded import label_map, render
    from datamodules.total_selfie.generate import random_prompt, write_pair
    from datamodules.total_selfie.layouts import read_pair
    from datamodules.stick_figures import random_person
    from datamodules.total_selfie.embedded import _full_body_pose

    rng = np.random.default_rng(0)
    person, pose = random_person(rng), _full_body_pose(rng)
    shot = render(person, pose, -torch.ones(3, 48, 48), 48, 48)
    write_pair(tmp_path / "p", shot["image"], shot["keypoints"].numpy(), shot["labels"], rng, selfie_size=32)
    item = read_pair(tmp_path / "p", 32, 32)
    assert item["selfies"].shape == (4, 3, 32, 32) and item["mask"].shape == (1, 32, 32) and "pose" in item
    assert item["mask"].sum() > item["foreground"].sum() > 0
    assert random_prompt(rng).endswith("full body shot, 8k uhd, high quality, film grain")
    assert torch.equal(shot["labels"], label_map(person, pose, 48, 48))


def test_evaluation_captures_give_table_3_1_items(tmp_path):
    """test_root captures with gt.png: pose, mask and foreground come from the real photo's parsing."""
    from datamodules.total_selfie.datamodule import TotalSelfieDataModule
    from PIL import Image

    capture = _write_capture(tmp_path / "caps" / "c1")
    Image.open(capture / "photos" / "photo0.jpg").save(capture / "gt.png")
    data = TotalSelfieDataModule(test_root=str(tmp_path / "caps"), size=32, selfie_size=32, batch_size=1)
    batch = next(iter(data.test_dataloader()))
    assert {"image", "background", "foreground", "foreground_image", "pose", "mask", "selfies"} <= set(batch)
    fg = batch["foreground"] > 0
    assert fg.any() and bool((batch["mask"][fg] == 1).all())  # the person lies inside M
    assert torch.equal(batch["foreground_image"][~fg.expand_as(batch["image"])], -torch.ones(int((~fg).sum()) * 3))


def test_openpose_control_needs_a_given_skeleton_named(tmp_path):
    from datamodules.total_selfie.datamodule import TotalSelfieDataModule
    from tests.total_selfie_tiny import tiny_module

    _write_capture(tmp_path / "c")
    data = TotalSelfieDataModule(predict_captures=[str(tmp_path / "c")], size=32, selfie_size=32)
    item = next(iter(data.predict_dataloader()))["captures"][0]
    module = tiny_module(control="openpose")
    with pytest.raises(FileNotFoundError, match=r"c/pose\.png"):
        module.prepare_capture(item)
    item["pose"] = torch.zeros(3, 32, 32)
    assert torch.equal(module.prepare_capture(item)["pose"], item["pose"])

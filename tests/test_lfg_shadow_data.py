"""Shadow-removal data (thesis 001 Ch. 7 §7.4): layouts, mask handling, the SynShadow-style synthesiser, bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from datamodules.lfg_shadow import ShadowRemovalDataModule
from datamodules.lfg_shadow.layouts import triplet_paths
from datamodules.lfg_shadow.synshadow import SynShadowConfig, cast_shadows
from datamodules.lfg_shadow.transforms import dilate_mask
from lightning_modules.lfg_shadow.predict import PredictInputs


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _triplet(folder_a: Path, folder_b: Path, folder_c: Path, name: str, h: int = 20, w: int = 28,
             free_name: str | None = None) -> None:
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    free = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[4:12, 5:15] = 255
    shadow = (free * np.where(mask[..., None] > 0, 0.4, 1.0)).astype(np.uint8)
    _write(folder_a / f"{name}.png", shadow)
    _write(folder_b / f"{name}.png", mask)
    _write(folder_c / f"{free_name or name}.png", free)


def _istd(root: Path, names=("1-1", "2-3")) -> None:
    for split in ("train", "test"):
        for name in names:
            _triplet(root / split / f"{split}_A", root / split / f"{split}_B", root / split / f"{split}_C", name)


def test_dilation_equals_scipy_binary_dilation() -> None:
    mask = np.zeros((40, 40), dtype=bool)
    mask[10:14, 20:23] = True
    mask[30, 5] = True
    ours = dilate_mask(torch.from_numpy(mask).float()[None], 21)[0].numpy() > 0
    ref = ndimage.binary_dilation(mask, structure=np.ones((21, 21), dtype=bool))
    assert np.array_equal(ours, ref)


def test_synthetic_instance_shadows_darken_only_and_keep_other_instances() -> None:
    photo = np.random.default_rng(0).uniform(0.2, 1.0, (48, 48, 3)).astype(np.float32)
    cfg = SynShadowConfig(num_instances=(3, 3))
    shadow, mask, truth = cast_shadows(photo, np.random.default_rng(1), cfg)
    assert set(np.unique(mask)) <= {0.0, 1.0} and 0 < mask.mean() < 1
    assert bool((shadow <= photo + 1e-6).all()), "shadows only darken"
    assert bool((shadow <= truth + 1e-6).all()) and bool((truth <= photo + 1e-6).all())
    inside = mask > 0
    assert float((truth - shadow)[inside].mean()) > 0.05, "the target shadow is removed in the ground truth"
    assert float(np.abs(truth - photo).max()) > 0.05, "the other two instance shadows stay in the ground truth"
    single, mask1, truth1 = cast_shadows(photo, np.random.default_rng(2), SynShadowConfig(num_instances=(1, 1)))
    assert np.array_equal(truth1, np.clip(photo, 0, 1)), "one instance: the ground truth is the photo"
    ratio = single[mask1 > 0].mean(0) / photo[mask1 > 0].mean(0)
    assert ratio[2] >= ratio[0], "shadows are bluer (lit by the sky)"


def test_embedded_default_batches_and_determinism() -> None:
    kw = dict(size=16, mask_dilation=3, photos=["astronaut"], crops_per_image=4, val_crops_per_image=2, batch_size=2)
    dm = ShadowRemovalDataModule(**kw)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    assert set(batch) == {"image", "shadow", "mask", "eval_mask", "name"}
    assert batch["image"].shape == (2, 3, 16, 16) and batch["mask"].shape == (2, 1, 16, 16)
    assert bool((batch["mask"] >= batch["eval_mask"]).all()), "the model's mask is the dilated evaluation mask"
    assert float((batch["image"] - batch["shadow"]).abs().amax()) > 0.05
    again = ShadowRemovalDataModule(**kw)
    again.setup("fit")
    torch.testing.assert_close(next(iter(again.val_dataloader()))["shadow"], batch["shadow"])


def test_istd_aistd_srd_and_desoba_layouts(tmp_path: Path) -> None:
    _istd(tmp_path / "ISTD")
    dm = ShadowRemovalDataModule(source="istd", root=str(tmp_path / "ISTD"), size=16, mask_dilation=5, batch_size=2)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    assert batch["name"] == ["1-1", "2-3"] and batch["shadow"].shape == (2, 3, 16, 16)
    assert set(torch.unique(batch["eval_mask"]).tolist()) == {0.0, 1.0}
    for split in ("train", "test"):
        for name in ("1-1", "2-3"):
            _write(tmp_path / "ISTD" / split / f"{split}_C_fixed_official" / f"{name}.png", np.full((20, 28, 3), 128, dtype=np.uint8))
    dm = ShadowRemovalDataModule(source="aistd", root=str(tmp_path / "ISTD"), size=16, batch_size=2)
    dm.setup("fit")
    assert torch.allclose(dm.val_dataset[0]["image"], torch.full((3, 16, 16), 128 / 127.5 - 1), atol=1e-5)
    srd = tmp_path / "SRD" / "test"
    _triplet(srd / "shadow", srd / "mask", srd / "shadow_free", "_MG_2394", free_name="_MG_2394_no_shadow")
    assert [t[0] for t in triplet_paths(tmp_path / "SRD", "srd", "test")] == ["_MG_2394"]
    desoba = tmp_path / "DESOBA"
    for name in ("a", "b"):
        _triplet(desoba / "ShadowImage", desoba / "ShadowMask", desoba / "DeshadowedImage", name)
    (desoba / "Test_List.txt").write_text("b\n")
    assert [t[0] for t in triplet_paths(desoba, "desoba", "test")] == ["b"]


def test_unmatched_names_non_binary_and_mismatched_masks_fail_naming_the_file(tmp_path: Path) -> None:
    root = tmp_path / "ISTD"
    _istd(root)
    (root / "test" / "test_C" / "2-3.png").rename(root / "test" / "test_C" / "9-9.png")
    with pytest.raises(FileNotFoundError, match="2-3.png"):
        ShadowRemovalDataModule(source="istd", root=str(root)).setup("fit")
    (root / "test" / "test_C" / "9-9.png").rename(root / "test" / "test_C" / "2-3.png")
    grey = np.tile(np.arange(28, dtype=np.uint8)[None] * 9, (20, 1))
    _write(root / "test" / "test_B" / "2-3.png", grey)
    dm = ShadowRemovalDataModule(source="istd", root=str(root), size=16)
    dm.setup("fit")
    with pytest.raises(ValueError, match=r"test_B[/\\]2-3.png is not binary"):
        dm.val_dataset[1]
    _write(root / "test" / "test_B" / "2-3.png", np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError, match="2-3.png is 10x10"):
        dm.val_dataset[1]
    with pytest.raises(ValueError, match="root"):
        ShadowRemovalDataModule(source="embedded", root=str(root))
    assert ShadowRemovalDataModule(source="srd", root=None).source == "embedded", "root: null is the embedded default"


def test_predict_inputs_any_size_and_bad_masks(tmp_path: Path) -> None:
    _write(tmp_path / "wide.jpg", np.full((30, 50, 3), 200, dtype=np.uint8))
    _write(tmp_path / "wide_mask.png", np.zeros((30, 50), dtype=np.uint8))
    inputs = PredictInputs(str(tmp_path))
    item = inputs[0]
    assert item["name"] == "wide" and item["shadow"].shape == (3, 30, 50)
    _write(tmp_path / "tall.png", np.full((40, 20, 3), 10, dtype=np.uint8))
    with pytest.raises(FileNotFoundError, match="tall.png has no mask"):
        PredictInputs(str(tmp_path))
    _write(tmp_path / "tall_mask.png", np.zeros((20, 40), dtype=np.uint8))
    with pytest.raises(ValueError, match="tall_mask.png is 40x20"):
        PredictInputs(str(tmp_path))[0]

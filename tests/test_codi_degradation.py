"""Real-ESRGAN second-order degradation (datamodules/degradation.py) and the CoDi task data."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from datamodules.degradation import (
    DegradationConfig,
    RealESRGANDegradation,
    StageConfig,
    gaussian_kernel,
    jpeg_compress,
    random_kernel,
    sinc_kernel,
)


def _hr(n: int = 3, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    base = torch.rand(n, 3, size // 4, size // 4, generator=g)
    return torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)


def test_output_shape_range_and_quantisation() -> None:
    out = RealESRGANDegradation()(_hr(), torch.Generator().manual_seed(1))
    assert out.shape == (3, 3, 8, 8)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert torch.allclose(out * 255, (out * 255).round(), atol=1e-4)


def test_deterministic_under_a_seed_and_different_across_seeds() -> None:
    deg = RealESRGANDegradation()
    a = deg(_hr(), torch.Generator().manual_seed(7))
    b = deg(_hr(), torch.Generator().manual_seed(7))
    c = deg(_hr(), torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_every_parameter_is_configurable_identity_pipeline() -> None:
    """With blur, resize, noise and sinc switched off and JPEG at 100, only the final x4 resize remains."""
    quiet = StageConfig(blur_prob=0.0, resize_prob=(0.0, 0.0, 1.0), gaussian_noise_prob=1.0, noise_range=(0.0, 0.0),
                        gray_noise_prob=0.0, jpeg_range=(100.0, 100.0))
    config = DegradationConfig(scale=2, first=quiet, second=quiet, final_sinc_prob=0.0, resize_modes=("area",))
    hr = _hr(2, 32)
    out = RealESRGANDegradation(config)(hr, torch.Generator().manual_seed(0))
    expected = torch.nn.functional.avg_pool2d(hr, 2)
    assert out.shape == (2, 3, 16, 16)
    assert (out - expected).abs().mean() < 0.05  # two q100 4:2:0 JPEG rounds at 16 px remain
    # exactly: JPEG at HR, the second stage's keep-resize to HR / scale, its JPEG, the final JPEG
    q = torch.full((2,), 100.0, dtype=torch.float64)
    exact = jpeg_compress(jpeg_compress(torch.nn.functional.avg_pool2d(jpeg_compress(hr, q), 2), q).clamp(0, 1), q)
    assert torch.allclose(out, (exact.clamp(0, 1) * 255).round() / 255, atol=1.5 / 255)


def test_second_stage_resize_is_relative_to_hr_over_scale() -> None:
    """Real-ESRGAN: the second resize is ``int(ori / scale * factor)``, not relative to the current size."""
    quiet = StageConfig(blur_prob=0.0, resize_prob=(0.0, 0.0, 1.0), gaussian_noise_prob=1.0, noise_range=(0.0, 0.0),
                        gray_noise_prob=0.0, jpeg_range=(100.0, 100.0))
    up = StageConfig(blur_prob=0.0, resize_prob=(1.0, 0.0, 0.0), resize_range=(0.5, 1.5), gaussian_noise_prob=1.0,
                     noise_range=(0.0, 0.0), gray_noise_prob=0.0, jpeg_range=(100.0, 100.0))
    deg = RealESRGANDegradation(DegradationConfig(scale=4, first=up, second=quiet, second_order_prob=1.0,
                                                  final_sinc_prob=0.0, resize_modes=("area",)))
    seen: list[tuple[int, int]] = []
    interp = deg._interp
    deg._interp = lambda x, g, size: (seen.append(tuple(size)), interp(x, g, size))[1]  # record every resize
    out = deg(_hr(1, 64), torch.Generator().manual_seed(3))
    first, second, final = seen
    assert first[0] > 64  # the first stage scaled the 64 px HR up (factor in [1, 1.5])
    assert second == (16, 16), "keep in the second stage is HR / scale = 16 px, whatever the first stage did"
    assert final == (16, 16) and out.shape == (1, 3, 16, 16)
    # an explicit factor: base 64 / 4 = 16, factor 1.25 -> int(20.0) = 20 px
    g = torch.Generator().manual_seed(0)
    stage = StageConfig(resize_prob=(1.0, 0.0, 0.0), resize_range=(0.5, 1.0))  # up, uniform(1, 1) = 1
    x = torch.rand(1, 3, 70, 70)
    assert deg._resize(x, g, stage, base_size=(16.0, 20.0)).shape[-2:] == (16, 20)
    assert deg._resize(x, g, stage).shape[-2:] == (70, 70)


def test_kernels_are_normalised_and_shaped() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        k = random_kernel(g, StageConfig(sinc_prob=0.3), (7, 21))
        assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1 and 7 <= k.shape[0] <= 21
        assert math.isclose(float(k.sum()), 1.0, abs_tol=1e-9)
    iso = gaussian_kernel(11, 2.0, 2.0, 0.0)
    assert torch.allclose(iso, iso.T) and int(iso.argmax()) == 60
    aniso = gaussian_kernel(11, 3.0, 0.5, 0.0)
    assert float(aniso[5, :].sum()) > float(aniso[:, 5].sum())  # wide along x
    assert math.isclose(float(sinc_kernel(13, math.pi / 2).sum()), 1.0, abs_tol=1e-9)


def test_jpeg_error_grows_as_quality_falls() -> None:
    x = _hr(1, 32)
    errors = [float((jpeg_compress(x, torch.tensor([q])) - x).abs().mean()) for q in (95.0, 50.0, 10.0)]
    assert errors[0] < errors[1] < errors[2]
    grey = x.mean(1, keepdim=True).expand(-1, 3, -1, -1)  # no chroma-subsampling loss: near lossless at 95
    assert float((jpeg_compress(grey, torch.tensor([95.0])) - grey).abs().mean()) < 0.005


@pytest.mark.parametrize("mode", ["free_form", "box", "mixed"])
def test_inpainting_masks(mode: str) -> None:
    from datamodules.codi_tasks import random_mask

    masks = [random_mask(32, np.random.default_rng(i), mode) for i in range(8)]
    for m in masks:
        assert m.shape == (1, 32, 32) and set(torch.unique(m).tolist()) <= {0.0, 1.0}
        assert 0 < float(m.mean()) < 1
    assert not torch.equal(masks[0], masks[1])


@pytest.mark.parametrize("task, keys", [("sr", {"image", "lr"}), ("inpaint", {"image", "mask", "masked_image"}),
                                        ("depth", {"image", "depth"}), ("edit", {"image", "source", "caption"})])
def test_task_datamodule_batches(task: str, keys: set) -> None:
    from datamodules.codi_tasks import CoDiTaskDataModule

    dm = CoDiTaskDataModule(task=task, size=16, crops_per_image=2, val_crops_per_image=1, images=["astronaut"],
                            batch_size=2)
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    assert set(batch) == keys
    assert batch["image"].shape == (1, 3, 16, 16) and float(batch["image"].abs().max()) <= 1
    if task == "sr":
        assert batch["lr"].shape == (1, 3, 4, 4)
        again = next(iter(dm.val_dataloader()))
        assert torch.equal(batch["lr"], again["lr"]), "validation degradations are fixed by the seed"


def test_task_datamodule_reads_folders(tmp_path) -> None:
    import json

    from PIL import Image

    from datamodules.codi_tasks import CoDiTaskDataModule

    rng = np.random.default_rng(0)
    (tmp_path / "hr").mkdir()
    (tmp_path / "depth" / "images").mkdir(parents=True)
    (tmp_path / "depth" / "depth").mkdir()
    (tmp_path / "edit").mkdir()
    rows = []
    for i in range(4):
        image = Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
        image.save(tmp_path / "hr" / f"{i}.png")
        image.save(tmp_path / "depth" / "images" / f"{i}.png")
        np.save(tmp_path / "depth" / "depth" / f"{i}.npy", rng.random((20, 24)).astype(np.float32))
        image.save(tmp_path / "edit" / f"in{i}.png")
        image.transpose(Image.FLIP_LEFT_RIGHT).save(tmp_path / "edit" / f"out{i}.png")
        rows.append({"input": f"in{i}.png", "edited": f"out{i}.png", "instruction": "flip it"})
    (tmp_path / "edit" / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))

    sr = CoDiTaskDataModule(task="sr", root=str(tmp_path / "hr"), size=16, val_crops_per_image=3, val_fraction=0.25,
                            batch_size=3)
    sr.setup()
    first, again = next(iter(sr.val_dataloader())), next(iter(sr.val_dataloader()))
    assert first["lr"].shape == (3, 3, 4, 4) and torch.equal(first["image"], again["image"])
    depth = CoDiTaskDataModule(task="depth", root=str(tmp_path / "depth"), size=16, batch_size=2)
    depth.setup()
    assert next(iter(depth.train_dataloader()))["depth"].shape == (2, 1, 16, 16)
    edit = CoDiTaskDataModule(task="edit", root=str(tmp_path / "edit"), size=16, batch_size=2)
    edit.setup()
    batch = next(iter(edit.train_dataloader()))
    assert batch["caption"] == ["flip it", "flip it"] and batch["source"].shape == (2, 3, 16, 16)
    with pytest.raises(FileNotFoundError, match="depth file"):
        (tmp_path / "depth" / "depth" / "0.npy").unlink()
        CoDiTaskDataModule(task="depth", root=str(tmp_path / "depth"), size=16).setup()

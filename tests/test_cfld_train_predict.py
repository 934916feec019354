"""CFLD end to end on the tiny configuration: fit lowers the loss, predict writes PNGs, test writes rows.

Random weights and embedded stick figures: these test the code, not the paper's numbers.
"""
from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import torch
from PIL import Image

from cfld_helpers import cfld_single_thread, tiny_batch, tiny_cfld  # noqa: F401 (autouse fixture)
from datamodules.deepfashion import DeepFashionDataModule, PoseTransferRequests
from lightning_modules.cfld import MaskedReferenceDenoiser, TemplatePoseStandIn
from metrics.image_quality import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure


def _trainer(tmp_path: Path, **kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(tmp_path), **kwargs,
    )


def test_tiny_fit_lowers_the_loss(tmp_path: Path) -> None:
    model = tiny_cfld(optimizer=lambda params: torch.optim.Adam(params, lr=3e-3), warmup_steps=0)
    batch = tiny_batch(batch_size=2)

    def fixed_loss() -> float:
        generator = torch.Generator().manual_seed(7)
        with torch.no_grad():
            return float(model.pair_loss(batch, generator=generator, train=False).mean())

    before = fixed_loss()
    data = DeepFashionDataModule(root=None, load_size=32, embedded_samples=4, batch_size=2)
    _trainer(tmp_path, max_steps=12, limit_val_batches=0).fit(model, datamodule=data)
    after = fixed_loss()
    assert after < before - 0.02, (before, after)


def test_tiny_predict_writes_pngs_from_keypoint_files_and_pose_images(tmp_path: Path) -> None:
    model = tiny_cfld(pose_detector=TemplatePoseStandIn(), num_sampling_steps=2)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 44, 3), dtype=np.uint8)).save(tmp_path / "source.png")
    Image.fromarray(rng.integers(0, 255, (64, 44, 3), dtype=np.uint8)).save(tmp_path / "other.png")
    (tmp_path / "pose.json").write_text(json.dumps({"keypoints": [[10 + j, 5 + 3 * j] for j in range(18)], "frame": [64, 44]}))
    Image.fromarray(np.full((64, 44), 255, dtype=np.uint8)).save(tmp_path / "mask.png")
    requests = PoseTransferRequests(
        sources=[str(tmp_path / "source.png")] * 2,
        targets=[str(tmp_path / "pose.json"), str(tmp_path / "other.png")],  # keypoint file; image -> detector
        load_size=32,
        batch_size=1,
    )
    trainer = _trainer(tmp_path)
    trainer.predict(model, datamodule=requests)
    pngs = sorted(Path(model.predictions_dir).glob("*.png"))
    assert [p.name for p in pngs] == ["source__other.png", "source__pose.png"]
    with Image.open(pngs[0]) as image:
        assert image.size == (44, 64), "the output keeps the 44x64 source's size and aspect ratio"
    # style interpolation and mask-based transfer go through predict as well
    edits = PoseTransferRequests(
        sources=[str(tmp_path / "source.png")], targets=[str(tmp_path / "pose.json")], load_size=32,
        references=[str(tmp_path / "other.png")], masks=[str(tmp_path / "mask.png")],
        interpolation_sources=[str(tmp_path / "other.png")], alphas=[0.25, 0.75],
    )
    trainer.predict(model, datamodule=edits)
    folder = Path(model.predictions_dir)
    assert (folder / "source__pose__alpha0.25.png").is_file(), "one file per alpha of the sweep"
    assert (folder / "source__pose__alpha0.75.png").is_file()
    assert (folder / "source__pose.png").is_file(), "the first run's output is not overwritten"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [item["alpha"] for item in manifest["items"][-2:]] == [0.25, 0.75]


def test_mask_transfer_keeps_the_reference_outside_the_mask() -> None:
    model = tiny_cfld()
    batch = tiny_batch()
    pose = model.pose_map(batch["target_keypoints"], (64, 44))
    with torch.no_grad():
        prompt, biases = model.network.appearance(torch.nn.functional.interpolate(batch["source_image"], size=(64, 64)))
        denoiser = model.guided_denoiser(prompt, biases, model.network.pose_features(pose))
        reference = torch.randn(2, 4, 16, 16)
        mask = torch.zeros(1, 1, 16, 16)
        mask[..., :8] = 1.0
        masked = MaskedReferenceDenoiser(denoiser, model.path, reference, mask)
        grid = model.sampling_grid(4, torch.device("cpu"))
        latents = model.sampler.sample(masked, model.path, torch.randn(2, 4, 16, 16), grid, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(latents[..., 8:], reference[..., 8:], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(latents[..., :8], reference[..., :8], atol=1e-2)


def test_tiny_test_writes_results_rows(tmp_path: Path) -> None:
    metrics = {"psnr": PeakSignalNoiseRatio(), "ssim": StructuralSimilarityIndexMeasure(kernel_size=7, gaussian=False, sample_covariance=True)}
    results = tmp_path / "rows.jsonl"
    model = tiny_cfld(metrics=metrics, num_sampling_steps=2, results_file=str(results), dataset_name="embedded stick figures")
    data = DeepFashionDataModule(root=None, load_size=32, embedded_samples=20, batch_size=2)
    _trainer(tmp_path, limit_test_batches=1).test(model, datamodule=data)
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert {r["metric"] for r in rows} == {"psnr", "ssim"}
    assert all(r["paper"] == "cfld" and r["nfe"] == 6 and r["num_samples"] == 2 and r["weights"] == "random" for r in rows)
    assert all(r["data"] == "embedded" for r in rows)

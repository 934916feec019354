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
from callbacks.evaluation import EvaluationCallback
from metrics.fid import FrechetInceptionDistance
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


class _MeanColour(torch.nn.Module):
    """A 3-feature stand-in extractor (mean colour + 1) so FID runs without Inception weights."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().mean(dim=(2, 3)) + torch.randn(images.shape[0], 3) * 1e-3


def _evaluation(tmp_path: Path, reference: Path | None = None) -> EvaluationCallback:
    metrics = {"FID": FrechetInceptionDistance(feature_extractor=_MeanColour(), num_features=3, reset_real_features=False),
               "PSNR": PeakSignalNoiseRatio(),
               "SSIM": StructuralSimilarityIndexMeasure(kernel_size=7, gaussian=False, sample_covariance=True)}
    return EvaluationCallback(metrics, stages=["test"], per_batch_generation=True, num_samples=2, batch_size=2,
                              real_key="target_image_eval", paper="cfld", table="Table 2 (256x176)", results_dir=str(tmp_path),
                              results_file="rows.jsonl", progress_bar=False,
                              reference_statistics={"FID": str(reference)} if reference else None)


def test_tiny_test_scores_through_the_evaluation_callback_against_reference_statistics(tmp_path: Path) -> None:
    reference = tmp_path / "train_stats.npz"  # stands for the training-split statistics (fid_reference)
    np.savez(reference, mu=np.zeros(3), sigma=np.eye(3) * 0.1, count=1000)
    model = tiny_cfld(num_sampling_steps=2)
    data = DeepFashionDataModule(root=None, load_size=32, embedded_samples=20, batch_size=2)
    callback = _evaluation(tmp_path, reference)
    L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
              default_root_dir=str(tmp_path), limit_test_batches=1, callbacks=[callback]).test(model, datamodule=data)
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert {r["metric"] for r in rows} == {"FID", "PSNR", "SSIM"}
    assert all(r["paper"] == "cfld" and r["method"] == "CFLD" and r["nfe"] == 6 and r["weights"] == "random" for r in rows)
    fid = next(r for r in callback.last_rows if r.metric == "FID")
    assert fid.extra["reference_statistics"] == str(reference)
    assert float(callback.metrics["FID"].real_count) == 1000  # the test targets never entered the reference


def test_ground_truth_reference_row_scores_the_targets(tmp_path: Path) -> None:
    model = tiny_cfld(evaluate="ground_truth")
    data = DeepFashionDataModule(root=None, load_size=32, embedded_samples=20, batch_size=2)
    callback = _evaluation(tmp_path)
    # deferred metrics are built at `test` setup only (a `fit` never reads their weight files)
    callback = EvaluationCallback(
        {"SSIM": callback.metrics["SSIM"]}, stages=["test"], per_batch_generation=True, num_samples=2, batch_size=2,
        real_key="target_image_eval", paper="cfld", results_dir=str(tmp_path), progress_bar=False,
        deferred_metrics={"PSNR": {"class_path": "metrics.image_quality.PeakSignalNoiseRatio", "init_args": {"max_db": 90.0}}})
    assert list(callback.metrics) == ["SSIM"] and "PSNR" in callback.deferred_metrics
    L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
              default_root_dir=str(tmp_path), limit_test_batches=1, callbacks=[callback]).test(model, datamodule=data)
    assert all(r.method == "Ground Truth" and r.nfe == 0 for r in callback.last_rows)
    assert callback.last_results["SSIM"] > 0.99 and callback.last_results["PSNR"] > 40  # only the uint8 rounding differs
    assert callback.metrics["PSNR"].max_db == 90.0 and not callback.deferred_metrics


def test_a_256_run_is_scored_at_the_512_protocol_from_cfld_512_yaml(tmp_path: Path, monkeypatch) -> None:
    """Issue 16.5: `test --config cfld_512.yaml --ckpt_path <a cfld.yaml run>`: the 512 config decides, not the checkpoint.

    Tiny sizes stand for 256x176 / 512x352: the 512 run's targets and eval_size are 48x32 (the fit saw 64x44).
    """
    from cli_runner import run_cli

    monkeypatch.chdir(tmp_path)  # the callbacks' results/ folder goes here, not into the repository
    fit = run_cli(["fit", "--config", "cfld.yaml", "--config", "tiny/cfld.yaml", "--trainer.max_steps", "1",
                   "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false"], tmp_path)
    ckpt = fit.trainer.checkpoint_callback.last_model_path
    cli = run_cli(["test", "--config", "cfld_512.yaml", "--config", "tiny/cfld_512.yaml", "--ckpt_path", ckpt,
                   "--model.init_args.eval_size", "[48, 32]", "--data.init_args.embedded_size", "[48, 32]",
                   "--model.init_args.num_sampling_steps", "1", "--trainer.enable_progress_bar", "false"], tmp_path)
    assert cli.model.eval_size == (48, 32) and cli.model.num_sampling_steps == 1
    evaluation = next(cb for cb in cli.trainer.callbacks if hasattr(cb, "last_rows"))
    rows = evaluation.last_rows
    assert rows and all(r.resolution == "48x32" and r.extra["table"] == "Table 2 (512x352)" for r in rows)
    assert all(r.extra["checkpoint"] == ckpt and r.nfe == 3 for r in rows)
    assert (tmp_path / "results" / "cfld.jsonl").is_file()

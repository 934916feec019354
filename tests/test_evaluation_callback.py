"""EvaluationCallback: samples through `sample`, feeds real batches, logs, writes results rows and samples."""
from __future__ import annotations

import json
from typing import Any, Optional

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics import Metric

from benchmarks.results_rows import REQUIRED_FIELDS, read_rows
from callbacks.evaluation import EvaluationCallback
from metrics.fid import FrechetInceptionDistance, KernelInceptionDistance
from metrics.image_quality import PeakSignalNoiseRatio


class PooledFeatures(nn.Module):
    """8-d features: 2x2 average pool of each of two channels (images are 1-channel, expanded)."""

    num_features = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        pooled = nn.functional.adaptive_avg_pool2d(x[:, :1], 2).flatten(1)
        return torch.cat([pooled, pooled**2], 1)


class DictDataset(Dataset):
    def __init__(self, n: int = 40) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 1, 8, 8, generator=g) * 2 - 1
        self.labels = torch.arange(n) % 3

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "label": self.labels[i]}


class FakeData(L.LightningDataModule):
    root = None  # the embedded-data convention: no dataset root

    def val_dataloader(self) -> DataLoader:
        return DataLoader(DictDataset(), batch_size=10)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(DictDataset(), batch_size=10)


class FakeSampler(L.LightningModule):
    """Implements the DiffusionModule sampling contract with a one-parameter 'generator'."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.5))
        self.sample_shape = (1, 8, 8)
        self.num_sampling_steps = 10
        self.guidance_scale = 1.0
        self.calls: list[dict[str, Any]] = []

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        return None

    def test_step(self, batch: dict, batch_idx: int) -> None:
        return None

    def sample(self, num_samples: int, *, labels: Optional[torch.Tensor] = None, num_steps: Optional[int] = None,
               sampler: Any = None, guidance_scale: Optional[float] = None,
               generator: Optional[torch.Generator] = None, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        self.calls.append(dict(n=num_samples, labels=labels, num_steps=num_steps, sampler=sampler, guidance_scale=guidance_scale))
        x = torch.rand((num_samples, *self.sample_shape), generator=generator) * 2 - 1
        return (x * self.scale).detach()


def _trainer() -> L.Trainer:
    return L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False)


def test_validate_and_test_write_rows_with_flags(tmp_path) -> None:
    module = FakeSampler()
    callback = EvaluationCallback(
        metrics={"fid": FrechetInceptionDistance(PooledFeatures()), "kid": KernelInceptionDistance(PooledFeatures(), subset_size=20)},
        num_samples=25, batch_size=10, num_steps=4, sampler="euler", guidance_scale=2.0, paper="lecture",
        method="fake", results_dir=str(tmp_path / "results"), save_samples="npz", samples_dir=str(tmp_path / "samples"),
        progress_bar=False,
    )
    trainer = _trainer()
    trainer.callbacks.append(callback)
    logged = trainer.validate(module, datamodule=FakeData(), verbose=False)[0]
    assert {"eval/fid", "eval/kid", "eval/kid_std"} <= set(logged)
    assert [c["n"] for c in module.calls] == [10, 10, 5]
    assert all(c["num_steps"] == 4 and c["sampler"] == "euler" and c["guidance_scale"] == 2.0 for c in module.calls)
    assert torch.equal(module.calls[0]["labels"], torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0]))  # the real label order
    trainer.test(module, datamodule=FakeData(), verbose=False)

    path = tmp_path / "results" / "lecture.jsonl"
    raw = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(raw) == 6 and set(REQUIRED_FIELDS) <= set(raw[0])
    rows = read_rows([str(path)])
    fid_val = next(r for r in rows if r.metric == "fid" and r.split == "val")
    assert fid_val.value == pytest.approx(logged["eval/fid"], rel=1e-6)
    assert fid_val.paper == "lecture" and fid_val.method == "fake"
    assert fid_val.dataset == "embedded stand-in (FakeData)", "embedded data is named as a stand-in"
    assert (fid_val.num_samples, fid_val.nfe, fid_val.guidance, fid_val.resolution) == (25, 4, 2.0, "8x8")
    assert fid_val.weights == "pretrained"  # the injected extractor does not declare random weights
    assert fid_val.data == "embedded"
    assert fid_val.extra["num_real"] == 40 and fid_val.extra["stage"] == "validation"
    assert fid_val.evaluator.startswith("custom")
    assert {r.split for r in rows} == {"val", "test"}
    saved = np.load(tmp_path / "samples" / "validation_epoch0000" / "samples.npz")["arr_0"]
    assert saved.shape == (25, 8, 8, 1) and saved.dtype == np.uint8


def test_random_weight_evaluator_marks_rows_and_png_samples(tmp_path) -> None:
    from metrics.digits_classifier import DigitsClassifierFeatures

    callback = EvaluationCallback(
        metrics={"fid": FrechetInceptionDistance(DigitsClassifierFeatures(random_weights=True))},
        num_samples=12, batch_size=12, stages=("test",), results_dir=str(tmp_path), results_file="r.jsonl",
        save_samples="png", samples_dir=str(tmp_path / "png"), progress_bar=False, data="real",
    )
    trainer = _trainer()
    trainer.callbacks.append(callback)
    trainer.validate(FakeSampler(), datamodule=FakeData(), verbose=False)  # not a configured stage: nothing written
    assert not (tmp_path / "r.jsonl").exists()
    with pytest.warns(UserWarning, match="samples for 128-dimensional features"):
        trainer.test(FakeSampler(), datamodule=FakeData(), verbose=False)
    (row,) = read_rows([str(tmp_path / "r.jsonl")])
    assert row.weights == "random" and row.data == "real" and "[random]" in row.evaluator
    assert len(list((tmp_path / "png" / "test_epoch0000").glob("*.png"))) == 12


class PairedSampler(FakeSampler):
    def sample_for_batch(self, batch: dict, **kwargs: Any) -> torch.Tensor:
        return (batch["image"] * 0.9).clamp(-1, 1)


def test_paired_metrics_need_sample_for_batch(tmp_path) -> None:
    callback = EvaluationCallback(metrics={"psnr": PeakSignalNoiseRatio()}, num_samples=15, stages=("test",),
                                  results_dir=str(tmp_path), progress_bar=False)
    trainer = _trainer()
    trainer.callbacks.append(callback)
    with pytest.raises(TypeError, match="sample_for_batch"):
        trainer.test(FakeSampler(), datamodule=FakeData(), verbose=False)
    trainer = _trainer()
    trainer.callbacks.append(callback)
    trainer.test(PairedSampler(), datamodule=FakeData(), verbose=False)
    (row,) = callback.last_rows
    assert row.metric == "psnr" and row.num_samples == 15 and row.value > 20


def test_constructor_rejects_bad_options() -> None:
    fid = FrechetInceptionDistance(PooledFeatures())
    with pytest.raises(ValueError, match="stages"):
        EvaluationCallback({"fid": fid}, stages=("train",))
    with pytest.raises(ValueError, match="save_samples"):
        EvaluationCallback({"fid": fid}, save_samples="gif")
    with pytest.raises(ValueError, match="weights"):
        EvaluationCallback({"fid": fid}, weights="some")


def test_with_the_real_diffusion_module(tmp_path) -> None:
    diffusion_module = pytest.importorskip("lightning_modules.diffusion_module")
    from diffusers import UNet2DModel

    from datamodules.embedded import DigitsDataModule

    network = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                          down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                          norm_num_groups=4)
    module = diffusion_module.DiffusionModule(network, num_sampling_steps=2)
    callback = EvaluationCallback(metrics={"fid": FrechetInceptionDistance(PooledFeatures())}, num_samples=16,
                                  batch_size=8, stages=("validation",), paper="lecture", method="flow-matching",
                                  results_dir=str(tmp_path), progress_bar=False)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=2)
    trainer.callbacks.append(callback)
    trainer.validate(module, datamodule=DigitsDataModule(size=8, batch_size=16), verbose=False)
    (row,) = read_rows([str(tmp_path / "lecture.jsonl")])
    assert row.metric == "fid" and row.value > 0 and row.nfe == 2 and row.data == "embedded"
    assert row.extra["num_real"] == 32 and row.resolution == "8x8"


def test_per_batch_generation_feeds_distribution_metrics_from_sample_for_batch(tmp_path) -> None:
    """Conditional models: FID compares sample_for_batch outputs with the real batch, sample() unused."""
    module = PairedSampler()
    callback = EvaluationCallback(
        metrics={"fid": FrechetInceptionDistance(PooledFeatures()), "psnr": PeakSignalNoiseRatio()},
        num_samples=40, stages=("test",), results_dir=str(tmp_path), progress_bar=False, per_batch_generation=True,
    )
    trainer = _trainer()
    trainer.callbacks.append(callback)
    trainer.test(module, datamodule=FakeData(), verbose=False)
    assert module.calls == [], "sample(n) is not called when generation is per batch"
    reference = FrechetInceptionDistance(PooledFeatures())
    images = DictDataset().images
    reference.update(images, real=True)
    reference.update((images * 0.9).clamp(-1, 1), real=False)
    assert callback.last_results["fid"] == pytest.approx(float(reference.compute()), rel=1e-5)
    with pytest.raises(TypeError, match="per_batch_generation"):
        bad = _trainer()
        bad.callbacks.append(EvaluationCallback(metrics={"fid": FrechetInceptionDistance(PooledFeatures())},
                                                stages=("test",), per_batch_generation=True, write_results=False))
        bad.test(FakeSampler(), datamodule=FakeData(), verbose=False)


class VideoPairedSampler(FakeSampler):
    def sample_for_batch(self, batch: dict, **kwargs: Any) -> torch.Tensor:
        return batch["video"].flip(1)  # frames in reverse order


class VideoData(L.LightningDataModule):
    root = None

    def test_dataloader(self) -> DataLoader:
        videos = torch.rand(6, 3, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
        return DataLoader([{"video": v} for v in videos], batch_size=3)


def test_flatten_frames_scores_videos_frame_by_frame(tmp_path) -> None:
    callback = EvaluationCallback(metrics={"psnr": PeakSignalNoiseRatio()}, num_samples=6, stages=("test",),
                                  real_key="video", results_dir=str(tmp_path), progress_bar=False, flatten_frames=True)
    trainer = _trainer()
    trainer.callbacks.append(callback)
    trainer.test(VideoPairedSampler(), datamodule=VideoData(), verbose=False)
    videos = torch.cat([b["video"] for b in VideoData().test_dataloader()])
    expected = PeakSignalNoiseRatio()
    expected.update(videos.flip(1).flatten(0, 1), videos.flatten(0, 1))
    assert callback.last_results["psnr"] == pytest.approx(float(expected.compute()), rel=1e-6)
    assert callback.last_rows[0].num_samples == 6, "counted in videos, not frames"


class CaptionLength(Metric):
    """A conditioned metric (``batch_conditions``): the mean caption length of what it was given,
    and how many outputs came with captions; tests the callback's routing, not a paper metric."""

    batch_conditions = {"text": "caption"}

    def __init__(self) -> None:
        super().__init__()
        self.add_state("words", torch.zeros(()), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(()), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, text: list[str]) -> None:
        assert preds.dim() == 5 and len(text) == preds.shape[0], "videos and their prompts, before flatten_frames"
        self.words += sum(len(t.split()) for t in text)
        self.count += len(text)

    def compute(self) -> torch.Tensor:
        return self.words / self.count


class CaptionedVideos(L.LightningDataModule):
    root = None

    def test_dataloader(self) -> DataLoader:
        videos = torch.rand(4, 2, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
        items = [{"video": v, "caption": " ".join(["word"] * (i + 1))} for i, v in enumerate(videos)]
        return DataLoader(items, batch_size=2, collate_fn=lambda b: {"video": torch.stack([x["video"] for x in b]),
                                                                      "caption": [x["caption"] for x in b]})


def test_conditioned_metrics_receive_the_batch_prompts_with_the_generated_videos(tmp_path) -> None:
    callback = EvaluationCallback(metrics={"CLIPSIM": CaptionLength(), "psnr": PeakSignalNoiseRatio()}, num_samples=4,
                                  stages=("test",), real_key="video", results_dir=str(tmp_path), progress_bar=False,
                                  flatten_frames=True)
    trainer = _trainer()
    trainer.callbacks.append(callback)
    trainer.test(VideoPairedSampler(), datamodule=CaptionedVideos(), verbose=False)
    assert callback.last_results["CLIPSIM"] == pytest.approx((1 + 2 + 3 + 4) / 4)
    assert {row.metric: row.num_samples for row in callback.last_rows} == {"CLIPSIM": 4, "psnr": 4}
    with pytest.raises(TypeError, match="conditioned"):
        bad = _trainer()
        bad.callbacks.append(EvaluationCallback(metrics={"CLIPSIM": CaptionLength()}, stages=("test",), write_results=False))
        bad.test(FakeSampler(), datamodule=CaptionedVideos(), verbose=False)


class LabelledPairedSampler(PairedSampler):
    """A module that names its rows' method and table (as CFLD does for its Table 3 ablations)."""

    results_method = "B3"
    results_table = "Table 3"


def test_rows_take_the_module_table_and_method_unless_the_callback_sets_them(tmp_path) -> None:
    tables = {}
    for name, kwargs in {"module": {}, "callback": {"table": "Table 2 (256x176)", "method": "CFLD"}}.items():
        callback = EvaluationCallback(metrics={"psnr": PeakSignalNoiseRatio()}, num_samples=10, stages=("test",),
                                      results_dir=str(tmp_path), results_file=f"{name}.jsonl", progress_bar=False, **kwargs)
        trainer = _trainer()
        trainer.callbacks.append(callback)
        trainer.test(LabelledPairedSampler(), datamodule=FakeData(), verbose=False)
        (row,) = read_rows([str(tmp_path / f"{name}.jsonl")])
        tables[name] = (row.extra.get("table"), row.method)
    assert tables == {"module": ("Table 3", "B3"), "callback": ("Table 2 (256x176)", "CFLD")}

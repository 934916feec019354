"""Fit-Check Table 4.1 evaluation (thesis 000 Ch. 4 §4.5): whole videos, six metrics, FID-VID's own network."""
from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml

from datamodules.fitcheck_videos import FitCheckVideoDataModule
from fitcheck_tiny import REPO, tiny_module
from lightning_modules.fitcheck.evaluation import FitCheckEvaluation, table_4_1_metrics, video_clips
from metrics.resnet3d import ResNet3D, ResNet3DFeatures

PAPER_DATA = yaml.safe_load((REPO / "configs" / "fitcheck.yaml").read_text())["data"]["init_args"]
PAPER_MODEL = yaml.safe_load((REPO / "configs" / "fitcheck.yaml").read_text())["model"]["init_args"]
TABLE_4_1 = {"LPIPS", "SSIM", "PSNR", "FID", "FID-VID", "FVD"}


class _MeanColourStandIn(torch.nn.Module):
    """FID stand-in (per-image channel means): the TF-Inception network is too slow for a CPU test."""

    num_features = 3

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(2, 3))


@pytest.mark.slow  # ~14 s on an idle 2-core machine (two whole videos, I3D + 3D ResNet-50 at native size)
def test_six_table_4_1_metrics_on_whole_videos_at_the_paper_clip_length(tmp_path: Path) -> None:
    num_frames = int(PAPER_DATA["num_frames"])  # 6: training windows are shorter than I3D's 16-frame clips
    assert num_frames == 6
    metrics = table_4_1_metrics(video_resolution=None, fid_extractor=_MeanColourStandIn())
    assert set(metrics) == TABLE_4_1
    evaluation = FitCheckEvaluation(metrics, results_dir=str(tmp_path / "results"))
    datamodule = FitCheckVideoDataModule(size=(64, 48), num_frames=num_frames, embedded_videos=20, embedded_length=16,
                                         embedded_backgrounds="plain")
    module = tiny_module(num_sampling_steps=1, window=int(PAPER_MODEL["window"]), overlap=int(PAPER_MODEL["overlap"]))
    calls = []
    original = module.network.forward
    module.network.forward = lambda *a, **k: calls.append(a[0].shape[1]) or original(*a, **k)  # type: ignore[method-assign]
    trainer = L.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_test_batches=2, callbacks=[evaluation])
    trainer.test(module, datamodule=datamodule)
    rows = [json.loads(line) for line in (tmp_path / "results" / "fitcheck.jsonl").read_text().splitlines()]
    assert {r["metric"] for r in rows} == TABLE_4_1
    assert all(np.isfinite(float(r["value"])) for r in rows)
    assert all(r["whole_videos"] and r["frames"] == 2 * 16 for r in rows)
    # whole 16-frame videos (+2 references) were generated as 8-frame fusion windows, never one call
    assert set(calls) == {8} and len(calls) > 2
    by_metric = {r["metric"]: r for r in rows}
    assert "3D ResNet-50" in by_metric["FID-VID"]["evaluator"] and "STAND-IN" in by_metric["FID-VID"]["evaluator"]
    assert "I3D" in by_metric["FVD"]["evaluator"] and "[random]" in by_metric["FVD"]["evaluator"]
    assert by_metric["FID-VID"]["stand_in"] and by_metric["FVD"]["stand_in"] and not by_metric["SSIM"]["stand_in"]
    assert by_metric["FID-VID"]["value"] != by_metric["FVD"]["value"]


def test_whole_test_videos_and_clip_cutting() -> None:
    datamodule = FitCheckVideoDataModule(size=(32, 24), num_frames=6, embedded_videos=20, embedded_length=18,
                                         embedded_backgrounds="plain")
    datamodule.setup("test")
    batch = next(iter(datamodule.test_dataloader()))
    assert batch["video"].shape == (1, 18, 3, 32, 24) and batch["pose"].shape == (1, 18, 3, 32, 24)
    clips = video_clips(torch.arange(2 * 35).float().view(2, 35, 1, 1, 1), 16)
    assert clips.shape == (4, 16, 1, 1, 1) and clips[1, 0].item() == 16 and clips[2, 0].item() == 35
    with pytest.raises(ValueError, match="shorter than the 16-frame clips"):
        video_clips(torch.zeros(1, 8, 3, 4, 4), 16)


def _tiny_resnet() -> dict:
    return {"layers": (1, 1, 1, 1), "widths": (4, 8, 8, 8)}


def test_resnet3d_loads_hara_checkpoint_layout_and_names_the_stand_in(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = ResNet3D(**_tiny_resnet())
    for module in source.modules():  # non-trivial BN statistics so loading is visible
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    state = {"epoch": 200, "arch": "resnet-50", "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}
    path = tmp_path / "resnet-50-kinetics.pth"
    torch.save(state, path)
    loaded = ResNet3DFeatures(str(path), num_frames=16, resolution=None, **_tiny_resnet())
    random = ResNet3DFeatures(None, num_frames=16, resolution=None, **_tiny_resnet())
    videos = torch.rand(2, 16, 3, 16, 16) * 2 - 1
    source.eval()
    x = ((videos + 1) / 2).permute(0, 2, 1, 3, 4)
    x = (x - loaded.mean) / loaded.std
    torch.testing.assert_close(loaded(videos), source.features(x))
    assert not torch.allclose(random(videos), loaded(videos))
    assert "STAND-IN" in random.protocol.describe() and "STAND-IN" not in loaded.protocol.describe()
    assert "resnet-50-kinetics.pth@sha256" in loaded.protocol.describe()
    torch.save({"state_dict": {"module.conv9.weight": torch.zeros(1)}}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="bad.pth does not fit"):
        ResNet3DFeatures(str(tmp_path / "bad.pth"), **_tiny_resnet())
    with pytest.raises(Exception, match="fid_vid_weights"):
        ResNet3DFeatures(str(tmp_path / "missing.pth"))
    shapes = {k: tuple(v.shape) for k, v in ResNet3D().state_dict().items()}  # the released checkpoint's names
    assert shapes["conv1.weight"] == (64, 3, 7, 7, 7) and shapes["fc.weight"] == (400, 2048)
    assert shapes["layer1.0.downsample.0.weight"] == (256, 64, 1, 1, 1) and shapes["layer4.2.conv3.weight"] == (2048, 512, 1, 1, 1)
    assert sum(k.startswith("layer3.") and k.endswith("conv2.weight") for k in shapes) == 6

"""Tiny CoDi fit / predict / test through Lightning (random weights: tests the code, not the thesis's numbers)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback
from PIL import Image

from codi_helpers import tiny_codi


class _Losses(Callback):
    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.values.append(float(outputs["loss"]))


def _trainer(tmp_path: Path, steps: int, callbacks: list) -> Trainer:
    return Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                   callbacks=callbacks, default_root_dir=str(tmp_path), num_sanity_val_steps=0)


def _datamodule(task: str = "sr", **kwargs):
    from datamodules.codi_tasks import CoDiTaskDataModule

    return CoDiTaskDataModule(task=task, size=16, crops_per_image=2, val_crops_per_image=1, images=["astronaut"],
                              batch_size=2, **kwargs)


def test_tiny_fit_lowers_the_loss(tmp_path: Path) -> None:
    from callbacks.ema import EMACallback

    torch.manual_seed(0)
    model = tiny_codi(optimizer=lambda params: torch.optim.Adam(params, lr=2e-3))
    losses = _Losses()
    ema = EMACallback(decay=0.95, warmup=False, use_for_validation=False)
    _trainer(tmp_path, 30, [ema, losses]).fit(model, datamodule=_datamodule())
    assert len(losses.values) == 30
    first, last = np.mean(losses.values[:5]), np.mean(losses.values[-5:])
    assert last < 0.7 * first, (first, last)
    assert ema.initialized


def test_tiny_predict_writes_one_png_per_user_input(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for name in ("left", "right"):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(inputs / f"{name}.png")
        mask = np.zeros((16, 16), np.uint8)
        mask[4:12, 4:12] = 255
        Image.fromarray(mask).save(inputs / f"{name}_mask.png")
    model = tiny_codi(task="inpaint", num_sampling_steps=2)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=str(tmp_path))
    trainer.predict(model, datamodule=_datamodule("inpaint", predict_root=str(inputs)))
    folder = Path(model.predictions_dir)
    assert folder.name == "inpaint_consistency_2steps"
    assert sorted(p.name for p in folder.glob("*.png")) == ["grid_0000.png", "left.png", "right.png"]
    assert (folder / "manifest.json").is_file()
    assert Image.open(folder / "left.png").size == (16, 16)


def test_tiny_test_writes_results_rows(tmp_path: Path) -> None:
    from metrics.image_quality import PeakSignalNoiseRatio

    model = tiny_codi(metrics={"psnr": PeakSignalNoiseRatio()}, results_file=str(tmp_path / "rows.jsonl"))
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, limit_test_batches=1,
                      default_root_dir=str(tmp_path))
    trainer.test(model, datamodule=_datamodule())
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [r["metric"] for r in rows] == ["psnr"]
    assert rows[0]["paper"] == "codi" and rows[0]["method"] == "CoDi (Ours)" and rows[0]["nfe"] == 4 and rows[0]["weights"] == "random"
    assert rows[0]["data"] == "embedded" and np.isfinite(rows[0]["value"])

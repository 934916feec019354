"""Inverse Painting stage ``predict`` on a user's files (issue 17.7 / 13.1): every file, any size, named
after the input, at its aspect ratio. Tiny random weights: these test the code, not the paper's numbers."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.inverse_painting_helpers import SIZE, mask_generator, renderer, text_generator


@pytest.fixture(scope="module")
def paintings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("paintings")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (10, 30, 3), dtype=np.uint8)).save(folder / "wide.png")  # 1:3
    Image.fromarray(rng.integers(0, 255, (40, 24, 3), dtype=np.uint8)).save(folder / "tall.jpg")  # 5:3
    return folder


def _predict(module, folder: Path, root: Path, **data_args) -> Path:
    from lightning.pytorch import Trainer

    from datamodules.painting_timelapse import PaintingTimelapseDataModule

    data = PaintingTimelapseDataModule(size=SIZE, num_paintings=4, num_strokes=2, predict_images=str(folder), **data_args)
    trainer = Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=str(root), limit_predict_batches=1)
    trainer.predict(module, datamodule=data, return_predictions=False)
    return Path(module.predictions_dir)


@pytest.mark.parametrize("stage", ["renderer", "mask", "text"])
def test_every_stage_predicts_each_user_file_at_its_aspect_ratio(stage: str, paintings: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = {"renderer": lambda: renderer(num_sampling_steps=1), "mask": mask_generator, "text": text_generator}[stage]()
    out = _predict(module, paintings, tmp_path, predict_text="sky" if stage != "text" else None)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [Path(item["input"]).name for item in manifest["items"]] == ["tall.jpg", "wide.png"], "none dropped (limit lifted)"
    if stage == "text":
        answers = {p.stem: p.read_text().strip() for p in out.glob("*.txt")}
        assert set(answers) == {"tall", "wide"} and all(item["instruction"] == answers[Path(item["input"]).stem]
                                                          for item in manifest["items"])
        return
    sizes = {p.stem: Image.open(p).size for p in out.glob("*.png")}
    # long side = the model's 16 px, the painting's aspect ratio kept (PIL size is W x H)
    assert sizes == {"wide": (16, 5), "tall": (10, 16)}
    if stage == "mask":
        values = np.unique(np.asarray(Image.open(out / "wide.png")))
        assert set(values.tolist()) <= {0, 255}, "binary masks, nearest-neighbour restored"

"""Shared builders for the CFLD tests: the tiny configuration of configs/tiny/cfld.yaml, random weights.

Random-weight tests check the code, not the paper's numbers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]


def tiny_model_args(**overrides: Any) -> dict[str, Any]:
    """configs/cfld.yaml model args overlaid with configs/tiny/cfld.yaml (objects left out)."""
    full = yaml.safe_load((REPO / "configs" / "cfld.yaml").read_text())["model"]["init_args"]
    tiny = yaml.safe_load((REPO / "configs" / "tiny" / "cfld.yaml").read_text())["model"]["init_args"]
    args = {**full, **tiny}
    for key in ("optimizer", "pose_detector", "metrics"):
        args.pop(key, None)
    args.update(overrides)
    return args


def tiny_cfld(**overrides: Any):
    from lightning_modules.cfld import CFLD

    torch.manual_seed(0)
    return CFLD(**tiny_model_args(**overrides))


def tiny_batch(batch_size: int = 2, split: str = "train", seed: int = 0) -> dict[str, Any]:
    from datamodules.deepfashion import DeepFashionDataModule

    dm = DeepFashionDataModule(root=None, load_size=32, embedded_samples=40, batch_size=batch_size, seed=seed)
    dm.setup()
    loader = dm.train_dataloader() if split == "train" else dm.test_dataloader()
    return next(iter(loader))


import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def cfld_single_thread():
    """Tiny CPU models run far faster on one intra-op thread (no spin contention); restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

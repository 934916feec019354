"""Shared pytest set-up: offline hub, deterministic CPU threads, markers."""
from __future__ import annotations

import os

# Set before any Hugging Face import: a failing from_pretrained would otherwise retry for ~23 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# Test models are tiny: one intra-op thread is as fast as two and never oversubscribes the
# 2-core CI machine (with two threads under load a 7 ms forward was seen to take 440 ms).
torch.set_num_threads(int(os.environ.get("GENSUITE_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    """Every test starts from the same RNG state so failures reproduce."""
    torch.manual_seed(0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``pytest -n`` (xdist, ``--dist loadgroup``) every SLURM test runs on one worker, so the
    one-node cluster (a session fixture) is installed and started once, not once per worker."""
    for item in items:
        if item.get_closest_marker("slurm") is not None:
            item.add_marker(pytest.mark.xdist_group(name="slurm"))

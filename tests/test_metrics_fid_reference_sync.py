"""FID with precomputed reference statistics under DDP (CFLD's training-split statistics, loaded on every rank):
the cross-rank reduction counts the reference once. No processes are launched: torchmetrics' own sync path
runs with an injected gather (``dist_sync_fn``) that returns what two ranks would hold.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from metrics.fid import FrechetInceptionDistance


class Pooled(nn.Module):
    """8-d features of 1-channel images (2x2 pooled values and their squares)."""

    num_features = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = nn.functional.adaptive_avg_pool2d(x[:, :1].float(), 2).flatten(1)
        return torch.cat([p, p**2], 1)


def _images(n: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return (torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1) * scale


def _two_ranks(other: FrechetInceptionDistance) -> dict:
    """Metric kwargs whose sync gathers [this rank's tensor, what ``other`` sends in its own sync], state by state."""
    sent: list[torch.Tensor] = []

    def record(tensor: torch.Tensor, group=None) -> list[torch.Tensor]:
        sent.append(tensor.clone())
        return [tensor]

    other.sync(dist_sync_fn=record, distributed_available=lambda: True)  # the other rank's side of the all-gather
    other.unsync()

    def gather(tensor: torch.Tensor, group=None) -> list[torch.Tensor]:
        return [tensor, sent.pop(0)]

    return {"dist_sync_fn": gather, "distributed_available_fn": lambda: True}


@pytest.fixture()
def reference(tmp_path: Path) -> str:
    builder = FrechetInceptionDistance(Pooled(), reset_real_features=False)
    builder.update(_images(12, seed=0), real=True)  # a small reference makes a double count visible
    path = str(tmp_path / "reference.npz")
    builder.save_real_statistics(path)
    return path


def test_the_reference_is_counted_once_when_two_ranks_load_it(reference: str) -> None:
    fakes = [_images(10, seed=1, scale=0.8), _images(10, seed=2, scale=0.8)]
    single = FrechetInceptionDistance(Pooled())  # one process that saw both ranks' samples
    single.load_real_statistics(reference)
    for batch in fakes:
        single.update(batch, real=False)
    expected = float(single.compute())

    rank1 = FrechetInceptionDistance(Pooled())
    rank1.load_real_statistics(reference)
    rank1.update(fakes[1], real=False)
    rank0 = FrechetInceptionDistance(Pooled(), **_two_ranks(rank1))
    rank0.load_real_statistics(reference)
    rank0.update(fakes[0], real=False)
    assert float(rank0.compute()) == pytest.approx(expected, rel=1e-9)  # before the fix (2x reference): 8% lower
    assert float(rank0.real_count) == 12 and float(rank0.fake_count) == 10  # local states restored after compute
    rank0.dist_sync_fn = _two_ranks(rank1)["dist_sync_fn"]  # a fresh gather for a second sync
    with rank0.sync_context(dist_sync_fn=rank0.dist_sync_fn, distributed_available=lambda: True):
        assert float(rank0.real_count) == 12 and float(rank0.fake_count) == 20


def test_streamed_reals_after_the_reference_still_sum_across_ranks(reference: str) -> None:
    """Real batches added after loading the reference are summed over ranks, the reference once."""
    extra = [_images(6, seed=3), _images(6, seed=4)]
    single = FrechetInceptionDistance(Pooled())
    single.load_real_statistics(reference)
    for batch in extra:
        single.update(batch, real=True)
    single.update(_images(10, seed=5), real=False)
    single.update(_images(10, seed=5), real=False)
    rank1 = FrechetInceptionDistance(Pooled())
    rank1.load_real_statistics(reference)
    rank1.update(extra[1], real=True)
    rank1.update(_images(10, seed=5), real=False)
    rank0 = FrechetInceptionDistance(Pooled(), **_two_ranks(rank1))
    rank0.load_real_statistics(reference)
    rank0.update(extra[0], real=True)
    rank0.update(_images(10, seed=5), real=False)
    assert float(rank0.compute()) == pytest.approx(float(single.compute()), rel=1e-9)
    rank0.reset_real_features = True
    rank0.reset()  # a full reset drops the reference: nothing is subtracted any more
    assert rank0._reference_sums is None and float(rank0.real_count) == 0

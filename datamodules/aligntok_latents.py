"""Pre-extracted tokenizer latents in shards, with per-channel statistics (thesis 000, Ch. 7 §7.4).

LightningDiT trains on latents extracted once from the frozen tokenizer and normalised per
channel. Layout of a latent folder:

* ``shard_r<rank>_<index>.pt``: ``{"latent": float16 [N, C, h, w], "label": int64 [N]}``
  (written with ``torch.save``; read memory-mapped, so random access is cheap);
* ``sums_r<rank>.pt``: float64 per-channel ``sum``, ``sum_sq`` and the value ``count`` of that rank;
* ``stats.json``: ``{"mean": [C], "std": [C], "count": n, "num_items": N}``, merged from the sums.

:class:`LatentShardWriter` writes a folder (one writer per process), :func:`finalize_stats`
merges the ranks, :class:`LatentShardDataset` reads it and
:class:`AlignTokLatentsDataModule` serves ``{"latent", "label"}`` batches. The latents are
stored raw; the model normalises them with ``stats.json`` (so decoding stays exact).
"""
from __future__ import annotations

import bisect
import json
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules._common import EmbeddedDataModule, split_indices


class LatentShardWriter:
    """Accumulate ``(latents, labels)`` batches into shards of ``shard_size`` items and per-channel sums."""

    def __init__(self, root: str | Path, shard_size: int = 10000, rank: int = 0, dtype: torch.dtype = torch.float16) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.shard_size, self.rank, self.dtype = int(shard_size), int(rank), dtype
        self._latents: list[Tensor] = []
        self._labels: list[Tensor] = []
        self._pending = 0
        self._index = 0
        self.sum: Optional[Tensor] = None
        self.sum_sq: Optional[Tensor] = None
        self.count = 0
        self.num_items = 0

    def add(self, latents: Tensor, labels: Optional[Tensor] = None) -> None:
        latents = latents.detach().cpu()
        if labels is None:
            labels = torch.zeros(latents.shape[0], dtype=torch.long)
        stored = latents.to(self.dtype)
        values = stored.double().transpose(0, 1).reshape(stored.shape[1], -1)  # stats of what is stored
        self.sum = values.sum(1) if self.sum is None else self.sum + values.sum(1)
        self.sum_sq = values.pow(2).sum(1) if self.sum_sq is None else self.sum_sq + values.pow(2).sum(1)
        self.count += values.shape[1]
        self.num_items += stored.shape[0]
        self._latents.append(stored)
        self._labels.append(labels.detach().cpu().long())
        self._pending += stored.shape[0]
        while self._pending >= self.shard_size:
            self._flush(self.shard_size)

    def _flush(self, size: int) -> None:
        latents, labels = torch.cat(self._latents), torch.cat(self._labels)
        torch.save({"latent": latents[:size].clone(), "label": labels[:size].clone()},
                   self.root / f"shard_r{self.rank}_{self._index:05d}.pt")
        self._index += 1
        self._latents, self._labels = [latents[size:]], [labels[size:]]
        self._pending = latents.shape[0] - size

    def close(self) -> None:
        if self._pending:
            self._flush(self._pending)
        if self.sum is None:
            raise RuntimeError("LatentShardWriter.close(): no latents were added")
        torch.save({"sum": self.sum, "sum_sq": self.sum_sq, "count": self.count, "num_items": self.num_items},
                   self.root / f"sums_r{self.rank}.pt")


def finalize_stats(root: str | Path) -> dict:
    """Merge every rank's sums into ``stats.json`` (mean and population std per channel)."""
    root = Path(root)
    parts = [torch.load(p, weights_only=True) for p in sorted(root.glob("sums_r*.pt"))]
    if not parts:
        raise FileNotFoundError(f"no sums_r*.pt in {root}: write the latents with LatentShardWriter first")
    total = sum(p["sum"] for p in parts)
    total_sq = sum(p["sum_sq"] for p in parts)
    count = sum(int(p["count"]) for p in parts)
    mean = total / count
    std = (total_sq / count - mean.pow(2)).clamp_min(0).sqrt()
    stats = {"mean": mean.tolist(), "std": std.tolist(), "count": count,
             "num_items": sum(int(p["num_items"]) for p in parts)}
    (root / "stats.json").write_text(json.dumps(stats, indent=1))
    return stats


class LatentShardDataset(Dataset):
    """Items ``{"latent": float32 [C, h, w], "label": int64}`` of a shard folder (memory-mapped)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.files = sorted(self.root.glob("shard_r*_*.pt"))
        if not self.files:
            raise FileNotFoundError(
                f"no latent shards (shard_r*_*.pt) in '{self.root}'; extract them first with "
                "`python cli.py predict --config aligntok_extract.yaml` (see docs/aligntok.md)"
            )
        self.shards = [torch.load(f, mmap=True, weights_only=True) for f in self.files]
        self.offsets = [0]
        for shard in self.shards:
            self.offsets.append(self.offsets[-1] + shard["latent"].shape[0])

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        shard = bisect.bisect_right(self.offsets, index) - 1
        local = index - self.offsets[shard]
        data = self.shards[shard]
        return {"latent": data["latent"][local].float(), "label": data["label"][local]}


class AlignTokLatentsDataModule(EmbeddedDataModule):
    """Latent shards for DiT training: ``root/train`` (and ``root/val`` if present, else a split).

    Args:
        root: the folder written by the extractor (``train/`` and optionally ``val/`` inside,
            or shards directly).
        batch_size, num_workers, val_fraction, seed, pin_memory: loader settings.
        num_samples, labels: ``predict`` draws ``num_samples`` images of the classes ``labels``
            (cycled; ``None``: 0..num_classes-1), one noise seed per sample (``DigitsDataModule``);
            ``None``: one sample per validation latent, with its label.
    """

    def __init__(
        self,
        root: str,
        batch_size: int = 256,
        num_workers: int = 0,
        val_fraction: float = 0.01,
        seed: int = 0,
        pin_memory: bool = False,
        num_samples: Optional[int] = None,
        labels: Optional[list[int]] = None,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed, pin_memory)
        self.root = Path(root).expanduser()
        self.predict_num_samples, self.predict_labels = num_samples, labels

    def build_datasets(self):
        train_root = self.root / "train" if (self.root / "train").is_dir() else self.root
        train = LatentShardDataset(train_root)
        if (self.root / "val").is_dir():
            return train, LatentShardDataset(self.root / "val")
        train_idx, val_idx = split_indices(len(train), self.val_fraction, self.seed)
        return torch.utils.data.Subset(train, train_idx.tolist()), torch.utils.data.Subset(train, val_idx.tolist())


__all__ = ["AlignTokLatentsDataModule", "LatentShardDataset", "LatentShardWriter", "finalize_stats"]

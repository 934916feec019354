"""Pieces shared by the embedded DataModules: datasets, collation, seeding, the base class.

Every embedded DataModule here follows the same pattern:

* samples are dicts of tensors (``docs/architecture.md``, "Batches"), images
  float32 in ``[-1, 1]``, channels first;
* everything random is drawn from ``numpy.random.default_rng([seed, split,
  index])``, so a sample depends only on the seed, the split and its index:
  not on the worker, the batch size or the order samples are read in (the
  opt-in train augmentations, ``resample_train_crops`` / ``crop="random"``,
  use torch's global generator instead, as usual for augmentation);
* ``train`` and ``val`` come from disjoint sources (different images, different
  frames, different source digits, or different generator streams);
* there is no separate test split: ``test_dataloader`` and
  ``predict_dataloader`` read the validation split (documented choice; the
  embedded data is for smoke runs and CPU tests, not for reporting numbers).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules.resumable import ResumableSampler, apply_resume_state, resume_state

log = logging.getLogger(__name__)

#: Stream ids mixed into the seed so the splits of a generator never share samples.
SPLIT_CODES = {"train": 0, "val": 1}


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """A numpy generator that depends only on ``(seed, split, index)``."""
    return np.random.default_rng([int(seed), SPLIT_CODES[split], int(index)])


def check_val_fraction(val_fraction: float) -> float:
    """Validate a validation fraction: strictly between 0 and 1."""
    val_fraction = float(val_fraction)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    return val_fraction


def split_indices(num_items: int, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Deterministic disjoint ``(train, val)`` index split of ``range(num_items)``.

    The permutation comes from ``torch.Generator().manual_seed(seed)``; the
    validation part has ``max(1, round(num_items * val_fraction))`` items and the
    train part keeps at least one. Both index lists are sorted.
    """
    _, num_val = split_counts(num_items, val_fraction)
    perm = torch.randperm(num_items, generator=torch.Generator().manual_seed(int(seed)))
    return perm[num_val:].sort().values, perm[:num_val].sort().values


def split_counts(num_items: int, val_fraction: float) -> tuple[int, int]:
    """``(num_train, num_val)``: ``max(1, round(num_items * val_fraction))`` are val, train keeps >= 1."""
    num_items = int(num_items)
    val_fraction = check_val_fraction(val_fraction)
    if num_items < 2:
        raise ValueError(f"need at least 2 items to split into train and val, got {num_items}")
    num_val = min(max(1, round(num_items * val_fraction)), num_items - 1)
    return num_items - num_val, num_val


def as_hw(size: int | Sequence[int]) -> tuple[int, int]:
    """``size`` as ``(height, width)``; an int means a square."""
    if isinstance(size, int):
        height = width = size
    else:
        values = list(size)
        if len(values) != 2:
            raise ValueError(f"size must be an int or (height, width), got {size!r}")
        height, width = int(values[0]), int(values[1])
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return int(height), int(width)


def uint8_to_unit(images: Tensor) -> Tensor:
    """``uint8`` 0..255 -> float32 ``[-1, 1]``."""
    return images.to(torch.float32).div_(127.5).sub_(1.0)


def collate_dicts(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack tensor values along a new batch dim; keep anything else as a per-sample list.

    Unlike ``default_collate`` this keeps a per-sample list of strings (e.g. the
    painting instructions, one list of ``K`` words per sample) as a list of
    ``B`` lists instead of transposing it into ``K`` tuples.
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    batch: dict[str, Any] = {}
    for key in samples[0]:
        values = [sample[key] for sample in samples]
        if isinstance(values[0], Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(values[0], (int, float)) and not isinstance(values[0], bool):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    return batch


class TensorDictDataset(Dataset):
    """Indexes a dict of tensors that share their first dimension."""

    def __init__(self, tensors: Mapping[str, Tensor]) -> None:
        lengths = {key: len(value) for key, value in tensors.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"all tensors need the same length, got {lengths}")
        self.tensors = dict(tensors)
        self._length = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {key: value[index] for key, value in self.tensors.items()}


class GeneratedDataset(Dataset):
    """``length`` samples made on demand by ``make(index)`` (deterministic generators).

    ``make`` must be picklable (a module-level function, a ``functools.partial``
    of one, or an object with ``__call__``) so DataLoader workers can use it.
    """

    def __init__(self, make: Callable[[int], dict[str, Any]], length: int) -> None:
        if length < 1:
            raise ValueError(f"a dataset needs at least one sample, got length={length}")
        self.make = make
        self.length = int(length)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -self.length <= index < self.length:
            raise IndexError(index)
        return self.make(index % self.length)


class EmbeddedDataModule(L.LightningDataModule):
    """Base of the no-download DataModules: loaders, seeding and the split convention.

    Subclasses implement :meth:`build_datasets` returning ``(train, val)``
    (``ImageFolderDataModule`` reuses this base for its loaders too).

    Args:
        batch_size: samples per batch for every loader.
        num_workers: DataLoader worker processes (0 = load in the main process).
        val_fraction: share of the source data held out for validation
            (its exact meaning is given by each subclass).
        seed: seed of every random choice (split, crops, generated content,
            train shuffling order).
        pin_memory: pin host memory in the loaders (useful with a GPU).
    """

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.val_fraction = check_val_fraction(val_fraction)
        self.seed = int(seed)
        self.pin_memory = bool(pin_memory)
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self._train_sampler: ResumableSampler | None = None
        self._resume_state: dict[str, Any] = {}

    # -- to implement -------------------------------------------------------------------------
    def build_datasets(self) -> tuple[Dataset, Dataset]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- Lightning hooks ----------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is None or self.val_dataset is None:
            self.train_dataset, self.val_dataset = self.build_datasets()
            log.info(
                "%s: %d train / %d val samples (seed %d)",
                type(self).__name__,
                len(self.train_dataset),
                len(self.val_dataset),
                self.seed,
            )

    def _loader(self, dataset: Dataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            self.setup()
            return self._loader(self.train_dataset if shuffle else self.val_dataset, shuffle)
        sampler = None
        if shuffle:  # resumable mid-epoch (datamodules/resumable.py); order from (seed, epoch)
            sampler = self._train_sampler = ResumableSampler(len(dataset), self.seed)
            apply_resume_state(sampler, self._resume_state, self.batch_size)
            self._resume_state = {}
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            # its own generator, so creating the iterator draws nothing from the global RNG
            generator=torch.Generator().manual_seed(self.seed),
            num_workers=self.num_workers,
            collate_fn=collate_dicts,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def state_dict(self) -> dict[str, Any]:
        """Where training stands in the train split (saved in every checkpoint) for exact resume."""
        return resume_state(self.trainer) if self._train_sampler is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Make the next train epoch continue where the checkpointed run stopped."""
        self._resume_state = dict(state_dict or {})
        trainer = self.trainer
        if self._resume_state and trainer is not None and trainer.world_size > 1:
            # Lightning wraps the sampler in its DistributedSampler, which needs the full index list
            log.warning("%s: exact mid-epoch resume is single-process only; with %d processes the "
                        "interrupted epoch restarts from its first batch.", type(self).__name__, trainer.world_size)
            self._resume_state = {}
        if self._train_sampler is not None:
            apply_resume_state(self._train_sampler, self._resume_state, self.batch_size)
            self._resume_state = {}

    def train_dataloader(self) -> DataLoader:
        """The train split, reshuffled every epoch in a seed-determined order."""
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """The validation split in a fixed order."""
        return self._loader(self.val_dataset, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """The validation split again: embedded data has no separate test split."""
        return self._loader(self.val_dataset, shuffle=False)

    #: Sampling requests for ``predict`` (``datamodules.predict_inputs.SampleRequests``): set by
    #: subclasses that expose ``num_samples`` / ``labels`` (the baselines' data modules).
    predict_num_samples: int | None = None
    predict_labels: list[int] | None = None
    #: The split ``predict_dataloader`` reads when it serves data rather than sampling requests:
    #: ``"val"`` (the default above) or ``"train"`` (in a fixed order, e.g. for latent extraction,
    #: which sets it from its own ``split`` argument).
    predict_split: str = "val"

    def predict_dataloader(self) -> DataLoader:
        """``num_samples`` sampling requests when set (every one processed, no batch limit);
        otherwise the ``predict_split`` split (validation unless set), in a fixed order."""
        if self.predict_num_samples is not None:
            from datamodules.predict_inputs import SampleRequests, release_predict_limit

            requests = SampleRequests(self.predict_num_samples, self.predict_labels, seed=self.seed)
            release_predict_limit(getattr(self, "trainer", None), len(requests), "data.num_samples")
            return DataLoader(requests, batch_size=self.batch_size, shuffle=False, collate_fn=collate_dicts)
        if self.predict_split not in SPLIT_CODES:
            raise ValueError(f"predict_split must be one of {list(SPLIT_CODES)}, got {self.predict_split!r}")
        if self.predict_split == "train":
            if self.train_dataset is None:
                self.setup()
            return self._loader(self.train_dataset, shuffle=False)
        return self._loader(self.val_dataset, shuffle=False)


__all__ = [
    "EmbeddedDataModule",
    "GeneratedDataset",
    "TensorDictDataset",
    "as_hw",
    "check_val_fraction",
    "collate_dicts",
    "sample_rng",
    "split_counts",
    "split_indices",
    "uint8_to_unit",
]

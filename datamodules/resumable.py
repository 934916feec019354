"""A shuffling sampler that resumes mid-epoch, so a resumed run equals an uninterrupted one.

Why: ``DataLoader(shuffle=True, generator=g)`` draws each epoch's order from the running state
of ``g`` and always starts at the first batch, so a run resumed from a mid-epoch checkpoint
re-reads the epoch from its start in a different order (issue 12, point 10: 10 + 10 steps
differed from 20 straight steps by 1.8e-3).

:class:`ResumableSampler` draws epoch ``e``'s permutation from ``(seed, e)`` alone (Lightning
calls ``set_epoch`` on it every epoch) and can be told to skip the samples the checkpointed run
had already trained on. :func:`resume_state` / :func:`apply_resume_state` are what a
DataModule's ``state_dict`` / ``load_state_dict`` return and take (Lightning stores that in the
checkpoint under the DataModule's class name): the epoch and the number of batches the trainer
had *processed* (counted by the trainer, not by the loader, which has prefetched one batch
ahead), plus the global torch / numpy / python random states, which the training step draws
noise and timesteps from. The random states are put back when the resumed epoch's iterator is
created, i.e. after Lightning's (RNG-isolated) sanity check and immediately before the first
resumed batch, the same point in the random stream as in the uninterrupted run.

Limits (documented, not hidden): one process (under DDP Lightning wraps the sampler in its
distributed sampler, which needs the full index list, so the interrupted epoch restarts there and
a warning says so),
and a validation run that draws from the global RNG exactly at the checkpointed step happens
before the save in the uninterrupted run but not in the resumed one.
"""
from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    """A permutation of ``range(length)`` per data epoch, from ``(seed, epoch)``; resumes mid-epoch.

    The data epoch is Lightning's epoch (``set_epoch``) plus a shift fixed at resume time: when a
    run stopped by ``max_steps`` mid-epoch is resumed, Lightning counts that epoch as finished and
    starts the next one, while the data still has the rest of the old epoch to give. The resumed
    iteration yields exactly that rest (up to the ``limit_train_batches`` cut), then the stream goes
    on as in an uninterrupted run.
    """

    def __init__(self, length: int, seed: int = 0) -> None:
        if length < 1:
            raise ValueError(f"ResumableSampler needs length >= 1, got {length}")
        self.length, self.seed, self.epoch, self.shift = int(length), int(seed), 0, 0
        self._resume: Optional[tuple[int, int, int, Optional[dict[str, Any]]]] = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def resume_at(self, data_epoch: int, start: int, stop: int, rng_state: Optional[dict[str, Any]] = None) -> None:
        """The next iteration yields ``permutation(data_epoch)[start:stop]`` and restores ``rng_state`` first."""
        self._resume = (int(data_epoch), int(start), int(stop), rng_state)

    def permutation(self, epoch: int) -> torch.Tensor:
        seed = int(np.random.SeedSequence([self.seed, int(epoch)]).generate_state(1)[0])
        return torch.randperm(self.length, generator=torch.Generator().manual_seed(seed))

    def __iter__(self) -> Iterator[int]:
        start, stop = 0, self.length
        if self._resume is not None:
            data_epoch, start, stop, rng = self._resume
            self._resume = None
            self.shift = data_epoch - self.epoch
            if rng is not None:
                set_rng_state(rng)
        return iter(self.permutation(self.epoch + self.shift)[start:stop].tolist())

    def __len__(self) -> int:
        return self.length


def get_rng_state() -> dict[str, Any]:
    """The global random states a training step may draw from."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def resume_state(trainer: Any) -> dict[str, Any]:
    """Where training stands, for the checkpoint: train batches processed so far, epoch length, random states.

    Counted by the trainer (``batch_progress.total.processed``), not by the loader, which has
    already prefetched the next batch when a checkpoint is written.
    """
    if trainer is None or getattr(trainer, "fit_loop", None) is None:
        return {}
    per_epoch = trainer.num_training_batches
    if not isinstance(per_epoch, int) or per_epoch < 1:
        return {}  # not fitting (or an infinite loader): nothing to resume
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    return {
        "batches": int(trainer.fit_loop.epoch_loop.batch_progress.total.processed),
        "batches_per_epoch": int(per_epoch),
        # tensors and plain lists only, so the checkpoint loads with weights_only=True
        "rng": {"torch": torch.get_rng_state(),
                "numpy": [numpy_state[0], torch.from_numpy(np.asarray(numpy_state[1]).astype(np.int64)),
                          *numpy_state[2:]],
                "python": [python_state[0], list(python_state[1]), python_state[2]]},
    }


def apply_resume_state(sampler: Optional[ResumableSampler], state: dict[str, Any], batch_size: int) -> None:
    """Arm ``sampler`` with a state from :func:`resume_state` (no-op for an empty state)."""
    if sampler is None or not state:
        return
    rng = state["rng"]
    kind, keys, *rest = rng["numpy"]
    version, internal, gauss = rng["python"]
    restored = {"torch": rng["torch"], "numpy": (kind, np.asarray(keys, dtype=np.uint32), *rest),
                "python": (int(version), tuple(int(v) for v in internal), gauss)}
    data_epoch, offset = divmod(int(state["batches"]), int(state["batches_per_epoch"]))
    stop = min(sampler.length, int(state["batches_per_epoch"]) * int(batch_size))
    sampler.resume_at(data_epoch, offset * int(batch_size), stop, restored)


__all__ = ["ResumableSampler", "apply_resume_state", "get_rng_state", "resume_state", "set_rng_state"]

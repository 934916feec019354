"""Test-only callbacks for the run-lifecycle tests (loaded by class_path through cli.py)."""
from __future__ import annotations

import os
import signal
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer


class SendSignalAt(Callback):
    """Stand-in for a scheduler: sends ``signum`` to this process after training step ``step``."""

    def __init__(self, step: int = 2, signum: str = "SIGTERM") -> None:
        self.step, self.signum = step, getattr(signal, signum)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)

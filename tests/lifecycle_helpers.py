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


class RecordStarts(Callback):
    """Appends ``{"restart", "start_step", "ckpt_path", "ckpt_step", "run_dir"}`` at each train start and writes the
    step reached to ``<path>.progress`` after every batch; ``step_sleep`` slows steps down so a
    test can signal a running job."""

    def __init__(self, path: str, step_sleep: float = 0.0) -> None:
        self.path, self.step_sleep = path, step_sleep

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        import json

        import torch

        ckpt_step = None  # the step stored in the file it resumed from, read before it is overwritten
        if trainer.ckpt_path:
            ckpt_step = torch.load(trainer.ckpt_path, map_location="cpu", weights_only=True)["global_step"]
        with open(self.path, "a") as f:
            f.write(json.dumps({"restart": int(os.environ.get("SLURM_RESTART_COUNT", 0)),
                                "start_step": trainer.global_step, "ckpt_path": str(trainer.ckpt_path),
                                "ckpt_step": ckpt_step, "run_dir": str(trainer.log_dir)}) + "\n")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        import time

        time.sleep(self.step_sleep)
        with open(self.path + ".progress", "w") as f:
            f.write(str(trainer.global_step))


class PoisonWeightsAt(Callback):
    """Stand-in for a divergence the loss does not show yet: sets one weight to NaN after ``step``."""

    def __init__(self, step: int = 3) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step == self.step:
            import torch

            with torch.no_grad():
                next(pl_module.parameters()).view(-1)[0] = float("nan")

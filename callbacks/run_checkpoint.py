"""The checkpoint callback of every CLI run: Lightning's ``ModelCheckpoint`` plus a final save.

Lightning writes ``last.ckpt`` at train end only if no ``last`` was written earlier in the
run, so a run that validated (and saved) at step 2 and stopped at step 3 would resume at
step 2 and redo a step. Here ``last.ckpt`` always holds the state at the end of ``fit``.
"""
from __future__ import annotations

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is rewritten at the end of fit if it is stale."""

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        super().on_train_end(trainer, pl_module)

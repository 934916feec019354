"""Checkpoint on SIGTERM / SIGINT / SIGUSR1 outside SLURM's own requeue handling.

Why: a cloud spot instance or a Kubernetes pod gets SIGTERM and a grace period before it is
killed; Lightning only stops (exit 0, nothing saved), and SIGUSR1 kills the process by default.
What this does:

* SIGTERM or SIGINT (Ctrl-C): at the end of the current training batch (a consistent state,
  never mid-step) write ``last.ckpt`` through the run's checkpoint callback, print one line
  naming it and exit with ``128 + signal`` (143 for SIGTERM, 130 for SIGINT), so schedulers
  and shells see that the run did not finish. ``cli.py fit ... --ckpt_path last`` resumes it.
* SIGUSR1: write ``last.ckpt`` at the end of the current batch and go on training (a
  "checkpoint now" request). Under SLURM with auto-requeue, Lightning's handler owns SIGUSR1
  (it writes ``hpc_ckpt_<n>.ckpt`` and requeues) and this callback leaves it alone.

Ranks agree through one ``reduce_boolean_decision`` per batch when there is more than one
rank, so a signal that reached only one rank stops all of them at the same batch.
"""
from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import Any, Optional

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class RunInterrupted(SystemExit):
    """Raised after the interrupt checkpoint is written; its code is ``128 + signal``."""


class InterruptCheckpoint(Callback):
    """Save ``last.ckpt`` on SIGTERM/SIGINT (then exit non-zero) and on SIGUSR1 (then continue)."""

    def __init__(self) -> None:
        super().__init__()
        self._pending: Optional[int] = None
        self._previous: dict[int, Any] = {}
        self.saved_path: Optional[str] = None
        self.message: Optional[str] = None

    # ------------------------------------------------------------------ handlers
    def _on_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        if self._pending in (signal.SIGTERM, signal.SIGINT) and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        if self._pending not in (signal.SIGTERM, signal.SIGINT):
            self._pending = signum

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        env = trainer._accelerator_connector.cluster_environment
        slurm_owns_usr1 = isinstance(env, SLURMEnvironment) and env.auto_requeue
        wanted = [signal.SIGINT, signal.SIGTERM] + ([] if slurm_owns_usr1 else [signal.SIGUSR1])
        for signum in wanted:
            try:
                self._previous[signum] = signal.signal(signum, self._compose(signum))
            except ValueError:  # not the main thread
                pass

    def _compose(self, signum: int) -> Any:
        previous = signal.getsignal(signum)

        def handler(num: int, frame: Optional[FrameType]) -> None:
            self._on_signal(num, frame)
            if num == signal.SIGTERM and callable(previous):
                previous(num, frame)  # Lightning's notifier (it also tells launcher children)

        return handler

    def _restore(self) -> None:
        for signum, previous in self._previous.items():
            try:
                signal.signal(signum, previous)
            except (ValueError, TypeError):
                pass
        self._previous.clear()

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """Lightning stops a validation loop on SIGTERM with its own ``SIGTERMException`` (exit 0):
        save here too (the training state is at a step boundary) and let the CLI exit 143."""
        self._restore()
        if isinstance(exception, SIGTERMException) and self.saved_path is None:
            path = self._save(trainer)
            self.message = (f"Interrupted by SIGTERM at step {trainer.global_step}: saved checkpoint {path}. "
                            "Resume with the same command and --ckpt_path last.")
            if trainer.is_global_zero:
                print(self.message, flush=True)

    # ------------------------------------------------------------------ action
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        pending = self._pending
        if trainer.world_size > 1:
            any_pending = trainer.strategy.reduce_boolean_decision(pending is not None, all=False)
            if any_pending and pending is None:
                pending = signal.SIGTERM  # another rank got the stop signal
        if pending is None:
            return
        self._pending = None
        path = self._save(trainer)
        name = signal.Signals(pending).name
        if pending == signal.SIGUSR1:
            if trainer.is_global_zero:
                print(f"SIGUSR1 at step {trainer.global_step}: saved {path}; training continues.", flush=True)
            return
        self.message = (f"Interrupted by {name} at step {trainer.global_step}: saved checkpoint {path}. "
                        "Resume with the same command and --ckpt_path last.")
        if trainer.is_global_zero:
            print(self.message, flush=True)
        trainer._signal_connector.received_sigterm = False  # our exit code, not Lightning's SIGTERMException(0)
        raise RunInterrupted(128 + int(pending))

    def _save(self, trainer: Trainer) -> str:
        callback = trainer.checkpoint_callback
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))
            self.saved_path = callback.last_model_path
        else:
            import os

            self.saved_path = os.path.join(trainer.default_root_dir, "interrupted.ckpt")
            trainer.save_checkpoint(self.saved_path)
        return str(self.saved_path)

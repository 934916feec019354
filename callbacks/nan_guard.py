"""Stop or skip on a non-finite loss or gradient, the same way on every rank.

Where the check happens: in ``on_before_optimizer_step``, after the backward
pass(es) and before the optimizer touches the weights. The loss of every
micro-batch since the last step is remembered in ``on_before_backward`` (as a
tensor flag, no host sync), and the gradients of the parameters the optimizer
holds are checked with one fused ``torch._foreach_norm``. Ranks then agree with
one reduce (``strategy.reduce_boolean_decision(..., all=False)``: stop if any rank
saw a bad value), so no rank waits for a collective the others skip.

What happens then:

- ``action="skip"``: every gradient of the optimizer is set to ``None``; PyTorch
  optimizers skip parameters without a gradient, so the weights *and* the
  optimizer state (Adam moments, step counts) stay as they were. The step still
  counts in ``trainer.global_step`` and LR schedulers still advance.
- ``action="stop"``: same skip, then a checkpoint is written and training stops
  (``trainer.should_stop``). Because the check runs before the optimizer step, the
  module and optimizer still hold the *last good state*: no in-memory copy of the
  weights or optimizer is kept (which would double memory at scale). The
  checkpoint goes to ``checkpoint_path`` (default: ``nan_guard_step<N>.ckpt`` in the
  ModelCheckpoint folder, else in ``trainer.default_root_dir``). The message names the
  step and what was non-finite; it is logged as an error and kept in ``self.message``.
  Set ``raise_error=True`` to raise ``FloatingPointError`` instead of a clean stop
  (a non-zero exit, e.g. for SLURM not to count the job as done).

Mixed precision: with a ``GradScaler`` (``16-mixed``) the gradients passed here are
still scaled and an overflow is expected now and then; the scaler itself skips those
steps, so the guard checks only the loss in that case.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Optional

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)


class NaNGuard(Callback):
    """Detect non-finite loss/gradients; ``action`` is ``"stop"`` or ``"skip"``.

    Args:
        action: ``"stop"`` (checkpoint the last good state and stop) or ``"skip"`` (drop the step).
        check_every: check every k-th optimizer step (k >= 1); the loss flags of unchecked steps are dropped.
        checkpoint_path: where ``"stop"`` writes its checkpoint (see the module docstring for the default).
        raise_error: with ``"stop"``, raise ``FloatingPointError`` after saving instead of stopping cleanly.
    """

    def __init__(
        self, action: str = "stop", check_every: int = 1, checkpoint_path: Optional[str] = None,
        raise_error: bool = False,
    ) -> None:
        super().__init__()
        if action not in ("stop", "skip"):
            raise ValueError(f"NaNGuard: action must be 'stop' or 'skip', got {action!r}")
        if int(check_every) < 1:
            raise ValueError(f"NaNGuard: check_every must be >= 1, got {check_every!r}")
        self.action = action
        self.check_every = int(check_every)
        self.checkpoint_path = checkpoint_path
        self.raise_error = raise_error
        self._bad_loss: Optional[torch.Tensor] = None
        self.skipped_steps: list[int] = []
        self.stopped_at_step: Optional[int] = None
        self.saved_checkpoint: Optional[str] = None
        self.message: Optional[str] = None

    def _checking(self, trainer: Trainer) -> bool:
        return trainer.global_step % self.check_every == 0

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        if not self._checking(trainer):
            return
        bad = ~torch.isfinite(loss.detach()).all()
        self._bad_loss = bad if self._bad_loss is None else (self._bad_loss | bad)

    @staticmethod
    def _grads(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
        grads = []
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    g = p.grad
                    grads.append(g.to_local() if hasattr(g, "to_local") else g)
        return grads

    def _uses_grad_scaler(self, trainer: Trainer) -> bool:
        return getattr(trainer.precision_plugin, "scaler", None) is not None

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        if not self._checking(trainer):
            self._bad_loss = None
            return
        bad_loss = bool(self._bad_loss.item()) if self._bad_loss is not None else False
        self._bad_loss = None
        bad_grad = False
        if not self._uses_grad_scaler(trainer):
            grads = self._grads(optimizer)
            if grads:
                norms = torch._foreach_norm(grads)
                bad_grad = not bool(torch.isfinite(torch.stack([n.float().to(norms[0].device) for n in norms])).all())
        local_bad = bad_loss or bad_grad
        any_bad = trainer.strategy.reduce_boolean_decision(local_bad, all=False)
        if not any_bad:
            return

        step = trainer.global_step  # zero-based index of the step being prevented
        what = ", ".join(w for w, b in (("loss", bad_loss), ("gradient", bad_grad)) if b) or "another rank's loss/gradient"
        first = self._first_non_finite(pl_module, bad_loss)
        if first:
            what += f" (first non-finite tensor: {first})"
        optimizer.zero_grad(set_to_none=True)
        if self.action == "skip":
            self.skipped_steps.append(step)
            log.warning("NaNGuard: non-finite %s at step %d (rank %d): optimizer step skipped", what,
                        step, trainer.global_rank)
            return

        path = self._checkpoint_path(trainer, step)
        trainer.save_checkpoint(path)  # all ranks call it: strategies gather/barrier inside
        self.saved_checkpoint = path
        self.stopped_at_step = step
        self.message = (
            f"NaNGuard: non-finite {what} at optimizer step {step} (global_step {step}, epoch "
            f"{trainer.current_epoch}); the update was not applied. Saved the last good state (weights and "
            f"optimizer before this step) to {path}. Stopping."
        )
        log.error(self.message)
        if trainer.is_global_zero:
            print(self.message, flush=True)
        trainer.should_stop = True
        if self.raise_error:
            raise FloatingPointError(self.message)

    @staticmethod
    def _first_non_finite(pl_module: LightningModule, bad_loss: bool) -> Optional[str]:
        """Name the first non-finite weight or gradient (only runs once something was found bad)."""
        for name, param in pl_module.named_parameters():
            local = param.to_local() if hasattr(param, "to_local") else param
            if not bool(torch.isfinite(local.detach()).all()):
                return f"weight {name}"
        for name, param in pl_module.named_parameters():
            grad = param.grad
            if grad is None:
                continue
            grad = grad.to_local() if hasattr(grad, "to_local") else grad
            if not bool(torch.isfinite(grad).all()):
                return f"gradient of {name}"
        return "the loss" if bad_loss else None

    def _checkpoint_path(self, trainer: Trainer, step: int) -> str:
        if self.checkpoint_path:
            return str(self.checkpoint_path)
        folder = None
        ckpt_cb = trainer.checkpoint_callback
        if ckpt_cb is not None and getattr(ckpt_cb, "dirpath", None):
            folder = ckpt_cb.dirpath
        folder = folder or trainer.default_root_dir
        return os.path.join(str(folder), f"nan_guard_step{step}.ckpt")

    def state_dict(self) -> dict[str, Any]:
        return {"skipped_steps": list(self.skipped_steps)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped_steps = list(state_dict.get("skipped_steps", []))

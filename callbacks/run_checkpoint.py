"""The checkpoint callback of every CLI run: Lightning's ``ModelCheckpoint`` plus three guarantees.

1. ``last.ckpt`` holds the state at the end of ``fit``: Lightning writes it at train end only
   if no ``last`` was written earlier in the run, so a run that validated (and saved) at step 2
   and stopped at step 3 would resume at step 2 and redo a step.
2. A finite checkpoint is never overwritten by a non-finite one: before any save the module's
   floating-point weights are checked (one fused ``torch._foreach_norm``; the ranks agree with one
   reduce, since FSDP ranks hold different shards); a non-finite state is not written and the
   error names the first non-finite tensor.
3. No orphans: when training starts (after a resume has restored this callback's state), step
   checkpoints in ``dirpath`` that the restored top-k does not know about (left by a process
   killed between writing a new top-k file and deleting the old one) are deleted, so
   ``save_top_k`` holds on disk and Lightning does not start writing ``-v1`` copies.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

log = logging.getLogger(__name__)


def first_non_finite_weight(module: torch.nn.Module) -> str | None:
    """Name of the first floating-point parameter or buffer holding a NaN/inf, else ``None``."""
    tensors = [(n, t) for n, t in list(module.named_parameters()) + list(module.named_buffers()) if t.is_floating_point()]
    locals_ = [t.to_local() if hasattr(t, "to_local") else t for _, t in tensors]
    locals_ = [t.detach() for t in locals_]
    if not locals_:
        return None
    norms = torch._foreach_norm([t.float() if t.dtype not in (torch.float32, torch.float64) else t for t in locals_])
    for (name, _), norm in zip(tensors, norms):
        if not bool(torch.isfinite(norm)):
            return name
    return None


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` with a final ``last.ckpt``, no non-finite saves and no orphan step files."""

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if trainer.is_global_zero and self.dirpath and self.save_top_k > 0:
            self._remove_orphans(Path(self.dirpath))

    def _remove_orphans(self, folder: Path) -> None:
        if not folder.is_dir():
            return
        known = {os.path.abspath(p) for p in self.best_k_models} | {os.path.abspath(self.last_model_path or "")}
        for path in folder.glob("*.ckpt"):
            name = path.name
            if name.startswith(("last", "nan_guard", "hpc_ckpt", ".")) or os.path.abspath(path) in known:
                continue
            log.info("removing orphan checkpoint %s (not among the restored top-%d)", path, self.save_top_k)
            path.unlink(missing_ok=True)

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        bad = first_non_finite_weight(trainer.lightning_module)
        any_bad = trainer.strategy.reduce_boolean_decision(bad is not None, all=False)
        if any_bad:
            log.error("not writing %s at step %d: non-finite weights (first: %s); the previous checkpoint is kept",
                      filepath, trainer.global_step, bad or "on another rank")
            return
        super()._save_checkpoint(trainer, filepath)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        super().on_train_end(trainer, pl_module)

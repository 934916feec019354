"""A ``predict`` progress bar that counts sampler steps, not batches.

One predict batch of a diffusion model is tens of network evaluations; a bar in batches sits
at 0/1 for minutes. This callback listens to every sampler step (``diffusion.samplers
.STEP_LISTENERS``, called by all of the suite's samplers) and shows one tqdm bar in steps. Its
total is estimated after the first batch (steps per batch x batches) and corrected as batches
arrive (papers that sample several variants per batch, e.g. CFLD's interpolation sweep). The
batch bar of Lightning's progress bar is hidden while it runs (rank 0 only draws; with the
progress bar turned off, no bar is drawn, the steps are still counted). Modules
with ``PredictOutputsMixin`` add it through ``configure_callbacks``.
"""
from __future__ import annotations

import sys
from typing import Any, Optional

from lightning.pytorch import Callback

from diffusion import samplers as sampler_module


class SamplerStepProgress(Callback):
    """tqdm bar of sampler steps during ``predict``; ``steps_done`` counts them (tests read it)."""

    def __init__(self) -> None:
        self.steps_done = 0
        self._bar: Optional[Any] = None
        self._batches_total = 0
        self._batches_started = 0
        self._hidden_bar: Optional[Any] = None

    def _listen(self, name: str, index: int, total: int) -> None:
        self.steps_done += 1
        if self._bar is None:
            return
        if index == 0 and self._batches_started:
            per_batch = (self.steps_done - 1 + total) / self._batches_started
            estimate = int(round(per_batch * max(self._batches_total, self._batches_started)))
            self._bar.total = max(estimate, self.steps_done)
            self._bar.refresh()
        self._bar.set_description(f"predict ({name})", refresh=False)
        self._bar.update(1)

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Hide Lightning's batch bar for ``predict`` (before it draws); ``teardown`` restores it."""
        bar = trainer.progress_bar_callback
        if stage == "predict" and bar is not None and bar.is_enabled:
            self._hidden_bar = bar
            bar.disable()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self._hidden_bar is not None:
            self._hidden_bar.enable()
            self._hidden_bar = None

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self.steps_done, self._batches_started = 0, 0
        self._batches_total = int(sum(trainer.num_predict_batches)) if trainer.num_predict_batches else 0
        if trainer.is_global_zero and self._hidden_bar is not None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=None, desc="predict", unit="step", dynamic_ncols=True, file=sys.stdout,
                             mininterval=0 if sys.stdout.isatty() else 30)
        sampler_module.STEP_LISTENERS.append(self._listen)

    def on_predict_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int,
                               dataloader_idx: int = 0) -> None:
        self._batches_started += 1

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        if self._listen in sampler_module.STEP_LISTENERS:
            sampler_module.STEP_LISTENERS.remove(self._listen)
        if self._bar is not None:
            self._bar.total = self.steps_done
            self._bar.refresh()
            self._bar.close()
            self._bar = None

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.on_predict_end(trainer, pl_module)
        self.teardown(trainer, pl_module, "predict")

"""Evaluation rows for Bi-Noising (thesis 001 Ch. 8, Tables 8.1-8.5): the method label is the sampler; time and params.

A thin subclass of :class:`callbacks.evaluation.EvaluationCallback` (the metric protocol, rows and
DDP handling are the shared callback's). It adds what Table 8.4 reports beside the metrics:

* ``Time_s``: sampling wall time per image (seconds), measured around ``sample_for_batch``'s
  sampler loop (``BiNoisingRestoration.last_sampling_seconds``), averaged over the evaluated images;
* ``Params_M``: parameters the sampler runs (f_phi, plus eps_theta when the sampler calls it), in M.

and labels rows by the sampler so they land in the paper's rows of ``benchmarks/paper_numbers.yaml``
(paper ``renoising``) unless ``method`` is set: ``bi_noising`` -> "Bi-Noising (Ours)" (a subset of
``binoise_steps`` -> "Ours w/o full guidance"; the nonparametric model -> "Ours w/o parametric"),
``sr3`` -> "SR3 Diffusion", ``ilvr`` -> "ILVR Diffusion", ``cfg`` -> "Ho et al. (classifier-free
guidance)", ``replacement`` -> "RePaint-style replacement" (not in the thesis's tables).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import lightning as L

from callbacks.evaluation import EvaluationCallback

METHOD_LABELS = {"bi_noising": "Bi-Noising (Ours)", "sr3": "SR3 Diffusion", "ilvr": "ILVR Diffusion",
                 "cfg": "Ho et al. (classifier-free guidance)", "replacement": "RePaint-style replacement"}


def method_label(pl_module: Any, sampler: Optional[str]) -> str:
    chosen = pl_module.resolve_sampler(sampler)
    if chosen.name == "bi_noising":
        if getattr(pl_module, "nonparametric", False):
            return "Ours w/o parametric"
        if str(getattr(chosen, "binoise_steps", "all")) != "all":
            return "Ours w/o full guidance"
    return METHOD_LABELS.get(chosen.name, chosen.name)


class BiNoisingEvaluationCallback(EvaluationCallback):
    """:class:`EvaluationCallback` plus ``Time_s`` / ``Params_M`` rows and sampler method labels (module docstring)."""

    def _start(self, pl_module: L.LightningModule) -> None:
        super()._start(pl_module)
        self._seconds, self._timed = 0.0, 0

    def _update_from_batch(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any) -> None:
        before = self._paired_count
        super()._update_from_batch(trainer, pl_module, batch)
        if self._paired_count > before:
            self._seconds += float(pl_module.last_sampling_seconds)
            self._timed += self._paired_count - before

    def _rows(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, results: dict[str, float],
              origin: dict[str, str]) -> list:
        rows = super()._rows(trainer, pl_module, stage, results, origin)
        if not rows:
            return rows
        label = self.method or method_label(pl_module, self.sampler)
        rows = [dataclasses.replace(r, method=label) for r in rows]
        extra = []
        if self._timed:
            extra.append(dataclasses.replace(rows[0], metric="Time_s", value=self._seconds / self._timed,
                                             evaluator="wall clock of the sampler loop per image", num_samples=self._timed))
        extra.append(dataclasses.replace(rows[0], metric="Params_M", value=pl_module.sampling_parameters(self.sampler) / 1e6,
                                         evaluator="parameters run by the sampler", num_samples=None))
        for row in extra:
            pl_module.log(f"{self.log_prefix}/{row.metric}", row.value, on_step=False, on_epoch=True, rank_zero_only=True)
        return rows + extra


__all__ = ["BiNoisingEvaluationCallback", "METHOD_LABELS", "method_label"]

"""Evaluation rows for CoDi and its baselines (thesis 001 Ch. 5, Tables 5.2-5.3): the row label and table come from the module.

A thin subclass of :class:`callbacks.evaluation.EvaluationCallback` (protocol, metrics, rows and DDP are
the shared callback's). Every Table 5.2/5.3 row is one config (``configs/codi_*.yaml`` plus an overlay
of ``configs/codi/``); the overlays change the *module* (class, adapter, sampler, steps, ablation
switches), so the rows' ``method`` is :meth:`lightning_modules.codi.base.CoDiBase.method_label` (e.g.
"LDMs + DPM Solver++, 4 steps", "CoDi (Ours) - noise-consistency", "PE-CoDi (Ours), 4 steps") and
their ``table`` the module's ``results_table``, unless the callback's ``method`` / ``table`` are set.
A module with no table (``results_table: null``, e.g. editing) names its own ``dataset_name`` instead
of the base config's protocol dataset, so its rows never land in the base config's table by dataset.
Overlays therefore never need to repeat the callback list.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import lightning as L

from callbacks.evaluation import EvaluationCallback


class CoDiEvaluationCallback(EvaluationCallback):
    """:class:`EvaluationCallback` whose rows take the module's method label and table (module docstring)."""

    def _rows(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, results: dict[str, float],
              origin: dict[str, str]) -> list:
        table = self.table or getattr(pl_module, "results_table", None)
        configured = self.dataset
        if not table and getattr(pl_module, "dataset_name", None):
            self.dataset = pl_module.dataset_name  # no table: the module's own dataset, not the base protocol's
        try:
            rows = super()._rows(trainer, pl_module, stage, results, origin)
        finally:
            self.dataset = configured
        label = self.method or (pl_module.method_label() if hasattr(pl_module, "method_label") else None)
        out = []
        for row in rows:
            extra: dict[str, Any] = dict(row.extra)
            if table:
                extra["table"] = table
            out.append(dataclasses.replace(row, method=label or row.method, extra=extra))
        return out


__all__ = ["CoDiEvaluationCallback"]

"""Training/validation/test steps for modules whose ``losses(batch, generator)`` returns named terms.

Restoration diffusion modules (LFG-Diffusion, Bi-Noising) compute a dict of per-sample loss terms
with a ``"total"``; this mixin logs the total and the module's ``logged_loss_terms`` under
``train/``, ``val/`` and ``test/``, and evaluates validation/test with fixed noise
(``val_seed + batch_idx``) so their curves are comparable across runs. Put it before
``DiffusionModule`` in the bases. :class:`PairLossSteps` is the same for modules with one
per-sample loss, ``pair_loss(batch, generator=None, train=True)`` (Inverse Painting's renderer,
the portrait MCDM).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from torch import Tensor


class LossTermSteps:
    """Mixin: ``training_step``/``validation_step``/``test_step`` from ``self.losses(batch, generator)``."""

    #: names of the terms (besides ``total``) logged when the module returns them
    logged_loss_terms: tuple[str, ...] = ()

    def losses(self, batch: Mapping[str, Tensor], generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        raise NotImplementedError

    def _log_terms(self, prefix: str, terms: Mapping[str, Tensor], batch_size: int, **kw: Any) -> Tensor:
        loss = terms["total"].mean()
        self.log(f"{prefix}/loss", loss, batch_size=batch_size, prog_bar=prefix == "train", **kw)
        for key in self.logged_loss_terms:
            if key in terms:
                self.log(f"{prefix}/{key}", terms[key].mean(), batch_size=batch_size, **kw)
        return loss

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        return self._log_terms("train", self.losses(batch), batch["image"].shape[0])

    def _fixed_noise_loss(self, prefix: str, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        generator = torch.Generator(device=self.device).manual_seed(self.val_seed + batch_idx)
        return self._log_terms(prefix, self.losses(batch, generator), batch["image"].shape[0], sync_dist=True)

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        return self._fixed_noise_loss("val", batch, batch_idx)

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        return self._fixed_noise_loss("test", batch, batch_idx)


class PairLossSteps:
    """Mixin: the three steps from ``self.pair_loss(batch, generator, train)`` (per-sample losses).

    ``loss_batch_key`` names a batch tensor whose first dimension is the batch size (for logging).
    Validation and test draw their noise and times from ``val_seed + batch_idx``.
    """

    loss_batch_key: str = "image"

    def pair_loss(self, batch: Mapping[str, Any], generator: Optional[torch.Generator] = None,
                  train: bool = True) -> Tensor:
        raise NotImplementedError

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        loss = self.pair_loss(batch).mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=batch[self.loss_batch_key].shape[0])
        return loss

    def _fixed_noise_pair_loss(self, prefix: str, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        generator = torch.Generator(device=self.device).manual_seed(self.val_seed + batch_idx)
        loss = self.pair_loss(batch, generator, train=False).mean()
        self.log(f"{prefix}/loss", loss, prog_bar=prefix == "val", batch_size=batch[self.loss_batch_key].shape[0],
                 sync_dist=True)
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        return self._fixed_noise_pair_loss("val", batch, batch_idx)

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        return self._fixed_noise_pair_loss("test", batch, batch_idx)


__all__ = ["LossTermSteps", "PairLossSteps"]

"""VIDM's robustness penalty (thesis 001 Ch. 3, Eq. 3.3-3.5, seed 001 lines 611-615 and 629): a Charbonnier loss on the epsilon error.

``L = sqrt((eps_hat - eps)^2 + eta^2)`` per element, averaged per sample. The thesis gives no
``eta``; we use ``eta = 1e-3``, the Charbonnier constant of the image-restoration losses this
penalty comes from (LapSRN, Lai et al. 2017), small enough that the loss is |e| for the errors
a diffusion network makes (|e| ~ 1e-2 .. 1) yet smooth at 0. As ``eta -> 0`` the loss tends to
``|e|``; for ``|e| << eta`` it is ``eta + e^2 / (2 eta)``, the MSE shape (both are tests).
``loss_type: mse`` is Table 3.2's "w/o robustness penalty".
"""
from __future__ import annotations

import torch
from torch import Tensor

LOSS_TYPES = ("charbonnier", "mse")


def charbonnier(pred: Tensor, target: Tensor, eta: float = 1e-3) -> Tensor:
    """Per-sample ``mean(sqrt((pred - target)^2 + eta^2))`` over all non-batch dims (float32 or wider)."""
    if eta < 0:
        raise ValueError(f"charbonnier eta must be >= 0, got {eta}")
    dtype = torch.promote_types(pred.dtype, torch.float32)
    diff = pred.to(dtype) - target.to(dtype)
    return torch.sqrt(diff * diff + float(eta) ** 2).flatten(1).mean(1)


def epsilon_loss(pred: Tensor, target: Tensor, loss_type: str = "charbonnier", eta: float = 1e-3) -> Tensor:
    """The per-sample epsilon loss: Charbonnier (Eq. 3.3) or plain MSE (the ablation)."""
    if loss_type == "charbonnier":
        return charbonnier(pred, target, eta)
    if loss_type == "mse":
        return (pred.float() - target.float()).pow(2).flatten(1).mean(1)
    raise ValueError(f"model.loss_type={loss_type!r} is not one of {list(LOSS_TYPES)}")


__all__ = ["LOSS_TYPES", "charbonnier", "epsilon_loss"]

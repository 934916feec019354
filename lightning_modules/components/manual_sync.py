"""Gradient synchronisation for manual optimisation with several backward passes per step (GANs).

Why not DDP's reducer: DDP arms its reducer once per forward and expects *one* backward that
reaches every trainable parameter. A GAN step has two backward passes over different parameter
sets (generator, then discriminator only), and no GAN term at all before ``gan_start_step``;
under ``--trainer.strategy ddp`` that ends in "parameters that were not used in producing loss"
and, worse, a second backward that DDP does not reduce at all (the discriminators drift apart).
``find_unused_parameters=True`` would cure the error but needs the strategy changed by the user
and a graph traversal per backward. Instead the module switches the reducer off for training
(:func:`disable_ddp_reducer`) and all-reduces the gradients of exactly the parameters each
optimiser is about to step (:func:`sync_gradients`): one flat all-reduce per optimiser step,
correct for any number of backward passes, and a no-op on one process. Parameters sharded by
FSDP2 (``DTensor``) are reduced by FSDP itself and are skipped.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist


def disable_ddp_reducer(pl_module: Any) -> bool:
    """Stop DDP from reducing gradients in backward (call from ``on_train_start``); returns whether it did."""
    trainer = getattr(pl_module, "_trainer", None)
    model = getattr(trainer, "model", None) if trainer is not None else None
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model.require_backward_grad_sync = False  # Lightning's manual_backward then skips the reducer too
        return True
    return False


def _is_dtensor(tensor: Any) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - old torch
        return False
    return isinstance(tensor, DTensor)


def sync_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Average the ``.grad`` of ``params`` over all ranks (missing grads count as zero, on every rank alike)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    local = [p for p in params if p.requires_grad and not _is_dtensor(p)]
    if not local:
        return
    for p in local:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in local])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p in local:
        n = p.grad.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
        offset += n


def sync_buffers(module: torch.nn.Module) -> None:
    """Average the floating-point buffers of ``module`` (BatchNorm running statistics) over all ranks.

    DDP would broadcast rank 0's buffers at every forward; with the reducer off the module does
    this itself, averaging so that every rank's batches count (integer counters are equal anyway).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    buffers = [b for b in module.buffers() if b.is_floating_point() and not _is_dtensor(b)]
    if not buffers:
        return
    flat = torch.cat([b.reshape(-1) for b in buffers])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for b in buffers:
        b.copy_(flat[offset:offset + b.numel()].view_as(b))
        offset += b.numel()


__all__ = ["disable_ddp_reducer", "sync_buffers", "sync_gradients"]

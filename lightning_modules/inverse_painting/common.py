"""Shared helpers of the Inverse Painting modules: frozen parts for plain LightningModules, tensors."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn


class FrozenPartsModule(LightningModule):
    """A LightningModule with ``register_frozen`` like ``DiffusionModule`` (frozen parts are not saved)."""

    def __init__(self) -> None:
        super().__init__()
        self._frozen: dict[str, nn.Module] = {}

    def register_frozen(self, name: str, module: nn.Module) -> nn.Module:
        module.requires_grad_(False)
        module.eval()
        self._frozen[name] = module
        setattr(self, name, module)
        return module

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> "FrozenPartsModule":
        super().train(mode)
        for module in self._frozen.values():
            module.eval()
        return self

    def _frozen_prefixes(self) -> tuple[str, ...]:
        return tuple(f"{name}." for name in self._frozen)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        prefixes = self._frozen_prefixes()
        for key in [k for k in state if prefixes and k.startswith(prefixes)]:
            del state[key]

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        prefixes = self._frozen_prefixes()
        missing = [k for k in result.missing_keys if not (prefixes and k.startswith(prefixes))]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"{type(self).__name__}: checkpoint does not fit; missing {missing[:10]}, unexpected {result.unexpected_keys[:10]}")
        return result


def drop_mask(batch: int, probability: float, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
    """``[B]`` float: 0 where a condition is dropped (probability ``probability``), else 1."""
    if probability <= 0:
        return torch.ones(batch, device=device)
    return (torch.rand(batch, device=device, generator=generator) >= probability).float()


def broadcast_keep(keep: Tensor, like: Tensor) -> Tensor:
    return keep.view(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def downsample_mask(mask: Tensor, size: Sequence[int]) -> Tensor:
    """A binary mask to the latent grid: a latent cell is on when any of its pixels is (max pool)."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask.float()
    return F.adaptive_max_pool2d(mask.float(), tuple(size))


def upsample_mask(mask: Tensor, size: Sequence[int]) -> Tensor:
    return F.interpolate(mask.float(), size=tuple(size), mode="nearest")


def side_by_side(left: Tensor, right: Tensor) -> Tensor:
    """The text generator's image prompt: horizontal concatenation ``[left | right]``."""
    return torch.cat([left, right], dim=-1)

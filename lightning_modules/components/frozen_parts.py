"""``FrozenPartsModule``: a LightningModule whose frozen parts stay outside training state.

DESIGN.md: "VAE, text/image encoders and distillation teachers are excluded from the
optimizer, from EMA and from the trainable checkpoint; the module says which parameters
train." A part registered with ``register_frozen`` gets ``requires_grad=False``, stays in eval
mode when the module trains (no dropout / batch-norm updates), is left out of
``trainable_parameters()`` (which the optimizer, EMA and exported weights follow), is not
written into checkpoints (it comes from its own pretrained files), and may be absent when a
checkpoint is loaded, while any other missing key is still an error.
"""
from __future__ import annotations

from typing import Any, Mapping

from lightning.pytorch import LightningModule
from torch import nn


class FrozenPartsModule(LightningModule):
    """Base of every module of the suite that carries frozen pretrained parts."""

    def __init__(self) -> None:
        super().__init__()
        self._frozen: dict[str, nn.Module] = {}

    def register_frozen(self, name: str, module: nn.Module) -> nn.Module:
        """Attach ``module`` as attribute ``name``, frozen: no grads, eval mode, not saved."""
        module.requires_grad_(False)
        module.eval()
        self._frozen[name] = module
        setattr(self, name, module)
        return module

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the optimizer sees; EMA and exported weights follow this set."""
        return [p for p in self.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> "FrozenPartsModule":
        super().train(mode)
        for module in self._frozen.values():
            module.eval()  # frozen parts never switch to training behaviour (dropout, BN)
        return self

    def _frozen_prefixes(self) -> tuple[str, ...]:
        return tuple(f"{name}." for name in self._frozen)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        prefixes = self._frozen_prefixes()
        if prefixes:
            state = checkpoint["state_dict"]
            for key in [k for k in state if k.startswith(prefixes)]:
                del state[key]

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """Load weights; frozen parts may be absent (they come from their own pretrained files)."""
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        prefixes = self._frozen_prefixes()
        missing = [k for k in result.missing_keys if not (prefixes and k.startswith(prefixes))]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(
                f"{type(self).__name__}: checkpoint does not fit; missing keys {missing[:10]}"
                f"{' ...' if len(missing) > 10 else ''}, unexpected keys {result.unexpected_keys[:10]}"
            )
        return result

"""Chaining the AlignTok stages: read a previous stage's Lightning checkpoint (EMA weights preferred)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from lightning_modules.components.pretrained_paths import MissingWeightsError
from lightning_modules.components.safe_load import safe_torch_load


def load_stage_state(path: str, key: str, prefer_ema: bool = True, source: str = "") -> dict[str, torch.Tensor]:
    """The module ``state_dict`` of a checkpoint, with ``EMACallback``'s average swapped in if present.

    ``key`` (the config key) and ``source`` (which run produces the file) go into the error
    message of a missing file.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise MissingWeightsError(
            f"{key}: checkpoint not found at '{file}'. Expected: a Lightning .ckpt file. Where it comes "
            f"from: {source or 'the previous AlignTok stage'} (runs/<config>/version_<n>/checkpoints/last.ckpt)."
        )
    checkpoint: dict[str, Any] = safe_torch_load(file, key=key)
    state = dict(checkpoint.get("state_dict", checkpoint))
    if prefer_ema:
        for value in (checkpoint.get("callbacks") or {}).values():
            if isinstance(value, dict) and isinstance(value.get("ema"), dict):
                state.update({name: tensor for name, tensor in value["ema"].items() if name in state})
    return state


def sub_state(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Keys under ``prefix.`` with the prefix removed."""
    start = prefix + "."
    return {k[len(start):]: v for k, v in state.items() if k.startswith(start)}


def load_into(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str, path: Optional[str]) -> None:
    """Strictly load ``state`` into ``module`` (a part that must be complete in the checkpoint)."""
    if not state:
        raise RuntimeError(f"checkpoint {path} holds no weights for {what}")
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(
            f"checkpoint {path} does not fit {what}: missing {list(missing)[:8]}, unexpected {list(unexpected)[:8]}"
        )

"""Build a Fit-Check part from a local path / cached hub id, or from a config dict with random weights.

DESIGN.md, "Pretrained parts load from disk": every diffusers / transformers part is built by
its own library class, either ``Class.from_pretrained(folder, local_files_only=True)`` or from a
config dict (random weights, for tests and the tiny configs). A missing path fails at once with
a message naming the config key, the expected files and where the weights come from. Called
from the module constructor, never at config-parse time (``--print_config`` needs no weights).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from lightning_modules.components.safe_load import safe_torch_load

log = logging.getLogger(__name__)

__all__ = ["MissingWeightsError", "build_part", "check_local_folder", "load_state_dict_file"]


class MissingWeightsError(FileNotFoundError):
    """A configured pretrained path is not on disk (the message names key, files and source)."""


def _hub_id(path: str) -> bool:
    return path.count("/") == 1 and not path.startswith(("/", ".", "~")) and not os.path.exists(path)


def check_local_folder(key: str, path: str, expected: Sequence[str], source: str, subfolder: Optional[str] = None) -> Path:
    """``path[/subfolder]`` if it holds every file of ``expected``; hub ids resolve in the local cache only."""
    folder = Path(os.path.expanduser(path)) / (subfolder or "")
    if folder.is_dir() and all((folder / name).exists() for name in expected):
        return folder
    note = ""
    if _hub_id(path):
        try:
            from huggingface_hub import snapshot_download

            return check_local_folder(key, snapshot_download(path, local_files_only=True), expected, source, subfolder)
        except MissingWeightsError:
            raise
        except Exception as error:  # noqa: BLE001 - reported in the message below
            note = f" (hub id not in the local Hugging Face cache: {type(error).__name__})"
    files = ", ".join(str(folder / name) for name in expected)
    raise MissingWeightsError(
        f"{key}: pretrained weights not found at '{folder}'{note}. Expected: {files} (and the weights "
        f"file beside it). Where they come from: {source}. Download them once, set {key} to the local "
        f"folder, or set {key}: null to build the part with random weights from its config dict."
    )


def build_part(
    cls: Any,
    key: str,
    pretrained: Optional[str],
    config: Optional[Mapping[str, Any]],
    *,
    subfolder: Optional[str] = None,
    expected: Sequence[str] = ("config.json",),
    source: str = "the model's Hugging Face page",
    config_class: Any = None,
) -> Any:
    """``cls.from_pretrained`` from a checked local folder, or ``cls`` built from ``config`` (random weights)."""
    if pretrained:
        folder = check_local_folder(key, pretrained, expected, source, subfolder)
        log.info("%s: loading %s from %s", key, cls.__name__, folder)
        return cls.from_pretrained(str(folder), local_files_only=True)
    if config is None:
        raise ValueError(f"{key} is null and no config dict was given for {cls.__name__}; set one of them")
    log.info("%s is null: building %s with random weights from its config dict", key, cls.__name__)
    if config_class is not None:
        return cls(config_class(**dict(config)))
    return cls(**dict(config))


def load_state_dict_file(key: str, path: str, source: str) -> dict[str, torch.Tensor]:
    """Read a ``.pth`` / ``.ckpt`` / ``.safetensors`` state dict; a missing file names ``key`` and ``source``."""
    file = Path(os.path.expanduser(path))
    if not file.is_file():
        raise MissingWeightsError(
            f"{key}: checkpoint file '{file}' not found. Expected a .pth/.ckpt/.safetensors state dict. "
            f"Where it comes from: {source}."
        )
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(file))
    state = safe_torch_load(file, key=key)
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    return dict(state)

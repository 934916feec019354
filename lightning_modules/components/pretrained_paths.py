"""Pretrained parts from disk: one place for "local path or config dict" and the missing-path message.

DESIGN.md, "Pretrained parts load from disk": every pretrained component is built from a local
folder/file named in the config (``from_pretrained(path, local_files_only=True)``) or, with no
path, from a config dict with random weights (tests, tiny configs). Nothing is downloaded. A
missing path fails at once with a message naming the config key, the files expected there and
where the weights come from. Loading happens when the module is constructed, never when the
config is parsed (``--print_config`` resolves without weights on disk).

Generic: written for CFLD (seed 003) but usable by any paper that starts from diffusers models.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence


class MissingWeightsError(FileNotFoundError):
    """A configured pretrained path does not exist or lacks the expected files."""


def require_files(path: str | Path, key: str, expected: Sequence[str], source: str) -> Path:
    """Return ``path`` if it holds every ``expected`` entry (relative names; ``""`` = the path itself)."""
    root = Path(path).expanduser()
    missing = [name for name in expected if not (root / name if name else root).exists()]
    if not root.exists() or missing:
        listed = ", ".join(str(root / name) if name else str(root) for name in (expected or [""]))
        raise MissingWeightsError(
            f"{key}: pretrained weights not found at '{root}'. Expected: {listed}. "
            f"Where they come from: {source}. Set {key} to a local copy, or to null to build the "
            "part with random weights from its config dict (tests, tiny configs)."
        )
    return root


def build_diffusers_model(
    cls: Any,
    *,
    key: str,
    path: Optional[str],
    subfolder: Optional[str] = None,
    config: Optional[Mapping[str, Any]] = None,
    source: str = "",
    weights_names: Sequence[str] = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
    **load_kwargs: Any,
) -> Any:
    """A diffusers model from ``path[/subfolder]`` (local files only) or, when ``path`` is None, from ``config``."""
    if path is None:
        if config is None:
            raise ValueError(f"{key} is null and no config dict was given to build {cls.__name__} with random weights")
        return cls.from_config(dict(config))
    folder = Path(path).expanduser() / (subfolder or "")
    require_files(folder, key, ["config.json"], source)
    if not any((folder / name).exists() for name in weights_names):
        raise MissingWeightsError(
            f"{key}: '{folder}' has config.json but none of {list(weights_names)}. Where they come from: {source}."
        )
    return cls.from_pretrained(str(Path(path).expanduser()), subfolder=subfolder, local_files_only=True, **load_kwargs)

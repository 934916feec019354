"""Pretrained parts: one place for "local path, hub id or config dict" and the missing-model message.

DESIGN.md, "Pretrained parts load from disk": every pretrained component is built from a local
folder/file named in the config (``from_pretrained(path, local_files_only=True)``) or, with no
path, from a config dict with random weights (tests, tiny configs). A missing path fails at once
with a message naming the config key, the files expected there and where the weights come from.
Loading happens when the module is constructed, never when the config is parsed
(``--print_config`` resolves without weights on disk).

Hub ids (issue 13 §6): a value that is not an existing local path but looks like
``org/name`` (optionally ``org/name@revision``) is looked up in the Hugging Face cache
(``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``) with
``huggingface_hub.snapshot_download``; the snapshot folder then stands for the local path.
With ``HF_HUB_OFFLINE=1`` (the suite's tests and the cluster default) only the cache is read;
without it a model missing from the cache is downloaded into the cache (only the requested
subfolder when there is one). Both the environment and the cache folder are read when a
model is built, not when ``huggingface_hub`` was imported.

Generic: written for CFLD (seed 003) but usable by any paper that starts from diffusers models.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
_TRUE = ("1", "true", "yes", "on")


class MissingWeightsError(FileNotFoundError):
    """A configured pretrained path does not exist or lacks the expected files."""


def looks_like_hub_id(value: str | Path) -> bool:
    """``org/name`` or ``org/name@revision`` that is not an existing local path (and not ``./x``, ``/x``, ``~/x``)."""
    text = str(value)
    if text.startswith((".", "/", "~")) or Path(text).expanduser().exists():
        return False
    return bool(_HUB_ID.match(text))


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache as the environment names it now (``HF_HUB_CACHE`` > ``HF_HOME/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def hf_offline() -> bool:
    """``HF_HUB_OFFLINE`` as set now (huggingface_hub itself reads it once, at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def resolve_pretrained(path: str | Path, key: str, source: str, subfolder: Optional[str] = None) -> Path:
    """A local folder/file for ``path``: itself when it exists, else the cached snapshot of a hub id.

    Raises :class:`MissingWeightsError` (one line naming ``key``, the value, the cache and the
    offline flag) when ``path`` is neither an existing path nor a resolvable hub id; a value
    that is neither is returned unchanged for :func:`require_files` to report.
    """
    local = Path(path).expanduser()
    if local.exists() or not looks_like_hub_id(path):
        return local
    repo_id, _, revision = str(path).partition("@")
    cache = hf_cache_dir()
    offline = hf_offline()
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(repo_id, revision=revision or None, cache_dir=str(cache), local_files_only=True)
    except Exception as cached_err:  # not in the cache (LocalEntryNotFoundError and friends)
        if offline:
            raise MissingWeightsError(
                f"{key}: '{path}' is not a local path and hub id '{repo_id}' is not in the Hugging Face cache "
                f"{cache} (HF_HUB_OFFLINE=1, so nothing was downloaded; {type(cached_err).__name__}). "
                f"Where it comes from: {source}. Fetch it beforehand (`huggingface-cli download {repo_id}`), "
                "set HF_HOME / HF_HUB_CACHE to the cache that holds it, or give a local path."
            ) from None
        patterns = [f"{subfolder}/*", "*.json"] if subfolder else None
        log.info("%s: downloading %s into the Hugging Face cache %s", key, repo_id, cache)
        try:
            folder = snapshot_download(repo_id, revision=revision or None, cache_dir=str(cache),
                                       allow_patterns=patterns)
        except Exception as err:
            raise MissingWeightsError(
                f"{key}: '{path}' is not a local path and hub id '{repo_id}' could not be fetched "
                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). Where it comes from: {source}."
            ) from None
    log.info("%s: hub id %s -> %s", key, path, folder)
    return Path(folder)


def require_files(path: str | Path, key: str, expected: Sequence[str], source: str) -> Path:
    """The folder of ``path`` (a local path or a hub id) if it holds every ``expected`` entry.

    ``expected`` names are relative (``""`` = the path itself).
    """
    root = resolve_pretrained(path, key, source)
    missing = [name for name in expected if not (root / name if name else root).exists()]
    if not root.exists() or missing:
        listed = ", ".join(str(root / name) if name else str(root) for name in (expected or [""]))
        raise MissingWeightsError(
            f"{key}: pretrained weights not found at '{root}'. Expected: {listed}. "
            f"Where they come from: {source}. Set {key} to a local copy or a cached hub id, or to null to "
            "build the part with random weights from its config dict (tests, tiny configs)."
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
    """A diffusers model from ``path[/subfolder]`` (a local folder or a cached hub id), or from ``config`` when ``path`` is None."""
    if path is None:
        if config is None:
            raise ValueError(f"{key} is null and no config dict was given to build {cls.__name__} with random weights")
        return cls.from_config(dict(config))
    root = resolve_pretrained(path, key, source, subfolder=subfolder)
    folder = root / (subfolder or "")
    require_files(folder, key, ["config.json"], source)
    if not any((folder / name).exists() for name in weights_names):
        raise MissingWeightsError(
            f"{key}: '{folder}' has config.json but none of {list(weights_names)}. Where they come from: {source}."
        )
    return cls.from_pretrained(str(root), subfolder=subfolder, local_files_only=True, **load_kwargs)

"""Which checkpoint a run resumes from, what is left over from killed writers, and whether a
checkpoint fits the configured module.

Kept apart from ``cli.py`` so the CLI, the SLURM launcher and the tests share one definition.

* Candidates of a run version ``<run>/version_<n>/``: ``checkpoints/*.ckpt`` (``last.ckpt`` and
  the step checkpoints of ``ModelCheckpoint``) and ``hpc_ckpt_*.ckpt`` (Lightning's SLURM
  requeue checkpoints, written into ``trainer.default_root_dir`` = the version folder). The
  NaN guard's ``nan_guard_step*.ckpt`` is not a resume candidate (it is the state just
  before a divergence: resuming it would diverge again).
* "Complete" means the file is a readable zip archive (``torch.save``'s format): a truncated
  file has no central directory. With ``AtomicCheckpointIO`` every checkpoint is complete,
  but files copied in by hand or written by other tools may not be.
* "Newest" is the largest modification time, ``last.ckpt`` winning a tie: writers save in
  training order, so the newest complete file holds the latest state.
"""
from __future__ import annotations

import logging
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

log = logging.getLogger(__name__)

_TEMPORARY = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]+$")
_VERSION = re.compile(r"^version_(\d+)$")


def is_complete(path: Path) -> bool:
    """True when ``path`` is a whole ``torch.save`` archive (its zip directory reads)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def candidates(version_dir: Path) -> list[Path]:
    """Resume candidates of one run version (see the module docstring)."""
    found = [p for p in (version_dir / "checkpoints").glob("*.ckpt") if not p.name.startswith((".", "nan_guard"))]
    found += list(version_dir.glob("hpc_ckpt_*.ckpt"))
    return [p for p in found if p.is_file()]


def _versions(run_root: Path) -> list[Path]:
    if not run_root.is_dir():
        return []
    return [child for child in run_root.iterdir() if child.is_dir() and _VERSION.match(child.name)]


def newest_complete_checkpoint(run_root: Path) -> Optional[Path]:
    """The newest complete checkpoint of any version of the run at ``run_root``, or ``None``."""
    best: Optional[tuple[float, int, Path]] = None
    for version in _versions(run_root):
        for path in candidates(version):
            if not is_complete(path):
                log.warning("ignoring incomplete checkpoint %s", path)
                continue
            key = (path.stat().st_mtime, int(path.name == "last.ckpt"), path)
            if best is None or key[:2] > best[:2]:
                best = key
    return best[2] if best else None


def run_version_of(ckpt: Path) -> Optional[Path]:
    """The ``version_<n>`` folder a checkpoint belongs to (``checkpoints/x.ckpt`` or ``hpc_ckpt``), else ``None``."""
    for folder in (ckpt.parent, ckpt.parent.parent):
        if _VERSION.match(folder.name):
            return folder
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temporaries(folders: Iterable[Path]) -> list[Path]:
    """Delete ``.<name>.tmp-<pid>-<hex>`` files left by killed checkpoint writers (whose pid is gone)."""
    removed = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            match = _TEMPORARY.match(path.name)
            if match and path.is_file() and (int(match.group(1)) == os.getpid() or not _pid_alive(int(match.group(1)))):
                path.unlink(missing_ok=True)
                removed.append(path)
    if removed:
        log.info("removed %d stale checkpoint temporaries: %s", len(removed), ", ".join(p.name for p in removed))
    return removed


def _resolve(class_path: str) -> Any:
    """The class a dotted path names (re-exports included), or ``None``."""
    import importlib

    module_name, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except Exception:  # noqa: BLE001 - an unknown class is simply "different"
        return None


def class_path_of(module: Any) -> str:
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


def compatibility_error(
    checkpoint: Mapping[str, Any], module: Any, path: str, model_state: Optional[Mapping[str, Any]] = None,
    max_keys: int = 3,
) -> Optional[str]:
    """One short message when ``checkpoint`` was not written by a module like ``module``, else ``None``.

    Compares the class the checkpoint records (``hyper_parameters._class_path``, which the CLI's
    instantiator stores) with the configured class, then the shapes of the weights both have.
    Keys only one side has are not an error here: frozen pretrained parts are left out of
    checkpoints on purpose, and lazily built layers appear only after ``configure_model``.
    """
    saved_class = (checkpoint.get("hyper_parameters") or {}).get("_class_path")
    configured = class_path_of(module)
    if saved_class and saved_class != configured and _resolve(saved_class) is not type(module):
        return (f"checkpoint {path} holds a {saved_class}, but the config builds a {configured}; "
                "pass a checkpoint of this model, or the config it was trained with")
    saved = checkpoint.get("state_dict") or {}
    mine = module.state_dict() if model_state is None else model_state
    mismatched = [
        (key, tuple(value.shape), tuple(mine[key].shape))
        for key, value in saved.items()
        if key in mine and hasattr(value, "shape") and hasattr(mine[key], "shape") and tuple(value.shape) != tuple(mine[key].shape)
    ]
    if not mismatched:
        return None
    shown = "; ".join(f"{k}: checkpoint {list(a)} vs model {list(b)}" for k, a, b in mismatched[:max_keys])
    more = f" (and {len(mismatched) - max_keys} more)" if len(mismatched) > max_keys else ""
    return (f"checkpoint {path} does not fit the configured {configured}: {len(mismatched)} weight(s) differ in "
            f"shape: {shown}{more}. Was it trained with another config or overlay?")

"""Crash-safe checkpoint files.

``AtomicCheckpointIO`` writes a checkpoint to a temporary file in the target's
own directory, flushes and ``fsync``s it, then ``os.replace``s it over the target
and ``fsync``s the directory. ``os.replace`` is atomic on POSIX within one file
system, so a process killed at any moment (SIGKILL from a SLURM time limit, a
pre-empted node, an OOM kill) leaves either the complete old ``last.ckpt`` or the
complete new one, never a truncated file. Leftover temporaries of killed writers
are named ``.<name>.tmp-<pid>-<random>`` and are ignored by Lightning.

Loading is ``torch.load(weights_only=True)`` only: no code runs while unpickling, so a
crafted checkpoint (an auto-resumed SLURM ``hpc_ckpt``, a downloaded file) cannot execute
anything. A checkpoint that holds other Python objects fails with one message naming the
file and the refused global; there is no automatic fallback. Allowlist a type you trust
with ``torch.serialization.add_safe_globals`` before loading.

Remote paths (``s3://``, ``gs://``, ...) go through Lightning's own
``TorchCheckpointIO`` unchanged: object stores have their own atomic uploads.

Use: ``Trainer(plugins=[AtomicCheckpointIO()])``.
"""
from __future__ import annotations

import logging
import os
import pickle
import secrets
from typing import Any, Callable, Optional, Union

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.types import _PATH

# The suite's one allowlist (harmless hparam types such as jsonargparse's Namespace), installed
# here too so that what loads never depends on which module happened to be imported first.
import lightning_modules.components.safe_load  # noqa: E402,F401

log = logging.getLogger(__name__)


def _is_local(path: _PATH) -> bool:
    text = str(path)
    return "://" not in text or text.startswith("file://")


def _local(path: _PATH) -> str:
    text = str(path)
    return text[len("file://"):] if text.startswith("file://") else text


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some file systems do not allow opening directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_torch_save(obj: Any, path: _PATH) -> None:
    """``torch.save`` to ``path`` through a same-directory temporary file, fsync and ``os.replace``."""
    path = os.path.abspath(_local(path))
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)


def _unpickling_reason(err: BaseException) -> str:
    """The informative line of torch's long weights_only error (the unsupported global)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for ln in lines:
        if "Unsupported global" in ln or "WeightsUnpickler error" in ln:
            return ln
    return lines[0] if lines else type(err).__name__


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint that needs more than ``weights_only=True`` allows; the message names file and type."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves are atomic and whose loads are ``weights_only=True``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        log.debug("AtomicCheckpointIO: saving %s", path)
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(
        self,
        path: _PATH,
        map_location: Optional[Union[Callable, str, torch.device]] = lambda storage, loc: storage,
        weights_only: Optional[bool] = None,
    ) -> dict[str, Any]:
        if weights_only is False:
            raise ValueError(f"AtomicCheckpointIO loads {path} with weights_only=True only (no code may run)")
        if not _is_local(path):
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        local = _local(path)
        if not os.path.exists(local):
            raise FileNotFoundError(f"Checkpoint file not found: {path}")
        try:
            return torch.load(local, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as err:
            reason = _unpickling_reason(err)
            self.last_refusal_reason = reason
            raise UnsafeCheckpointError(
                f"{path} does not load with weights_only=True ({reason}); it was not loaded, because unpickling "
                "it could run code. If you trust the file, allowlist the type with "
                "torch.serialization.add_safe_globals([...]) before loading."
            ) from None

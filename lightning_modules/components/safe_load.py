"""Load a ``torch.save`` / Lightning checkpoint without running code from it.

Full unpickling (``weights_only`` off) builds arbitrary objects, so a crafted file runs code
the moment it is read (an auto-resumed SLURM checkpoint, a teacher, a stage's checkpoint).
Every loader of the suite goes through :func:`safe_torch_load`, which always reads with
``weights_only=True``. The few harmless non-tensor types that the suite's own Lightning
checkpoints carry in their hyper-parameters (jsonargparse's ``Namespace``, paths) are put on
torch's allowlist (``torch.serialization.add_safe_globals``); anything else in the file is
refused with one message naming the file and the type, instead of being executed.
There is deliberately no switch back to full unpickling: convert an old file once in a trusted
session (load it with full unpickling and save its ``state_dict`` alone) if ever needed.
"""
from __future__ import annotations

import pathlib
import pickle
import re
from os import PathLike
from typing import Any, Union

import torch

#: Harmless value types that may appear in the hyper-parameters of the suite's checkpoints.
_SAFE_TYPES: list[Any] = [pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePosixPath, pathlib.PureWindowsPath]
try:  # jsonargparse's Namespace is a plain attribute bag (argparse.Namespace subclass)
    from jsonargparse import Namespace as _JsonargparseNamespace

    _SAFE_TYPES.append(_JsonargparseNamespace)
except ImportError:  # pragma: no cover - jsonargparse ships with the CLI extra
    pass
import argparse  # noqa: E402

_SAFE_TYPES.append(argparse.Namespace)
torch.serialization.add_safe_globals(_SAFE_TYPES)


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint holds objects that only a full (code-running) unpickle could build."""


def _offending_global(err: BaseException) -> str:
    """The ``module.name`` torch's long weights_only message complains about, if it names one."""
    text = str(err)
    match = re.search(r"(?:unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", text, re.IGNORECASE)
    if match:
        return match.group(1)
    return "a type outside the allowlist"


def safe_torch_load(path: Union[str, PathLike], map_location: Any = "cpu", key: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)``; a file that needs more fails with one clear line.

    ``key`` names the config key or argument the path came from, so the message points at it.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # the weights_only unpickler raises UnpicklingError (or RuntimeError)
        if not isinstance(err, pickle.UnpicklingError) and "weights_only" not in str(err).lower():
            raise
        raise UnsafeCheckpointError(
            f"{key}: refusing to load '{path}': it contains '{_offending_global(err)}', which is not a tensor, "
            "a plain container or an allowlisted type, so loading it would run code from the file. "
            "Use a checkpoint written by this suite, or a plain state dict / .safetensors file."
        ) from None


def _callable_name(value: Any) -> str:
    """``torch.optim.AdamW`` -> ``"torch.optim.adamw.AdamW"``; a ``functools.partial`` names its function."""
    target = getattr(value, "func", value)
    module, name = getattr(target, "__module__", None), getattr(target, "__qualname__", None)
    return f"{module}.{name}" if module and name else type(value).__name__


def plain_hyperparameters(hparams: Any) -> None:
    """Replace classes and callables in ``hparams`` (in place) by their dotted names.

    A module built directly (not through ``cli.py``, whose instantiator stores the config) keeps
    its constructor arguments as given, e.g. ``optimizer=torch.optim.AdamW``. Pickled classes are
    not plain data, so such a checkpoint would be refused by :func:`safe_torch_load`; a name
    records the same information and keeps the suite's own checkpoints loadable.
    """
    for key in list(hparams.keys()):
        value = hparams[key]
        if isinstance(value, type) or (callable(value) and not isinstance(value, (torch.nn.Module, torch.Tensor))):
            hparams[key] = _callable_name(value)


#: the only globals a pickled ``.npy`` (``np.save`` of a dict of arrays / numbers) may name
_NUMPY_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _NUMPY_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"unsupported global: GLOBAL {module}.{name}")
        return super().find_class(module, name)


def safe_numpy_load(path: Union[str, PathLike], key: str = "file") -> Any:
    """``np.load`` of a ``.npy`` file; an object array (``np.save`` of a dict, as some released
    assets are) is unpickled with only numpy's array/scalar/dtype constructors allowed, never
    arbitrary code: ``.item()`` of a 0-d object array is returned (the saved dict)."""
    import numpy as np
    from numpy.lib import format as npy_format

    with open(path, "rb") as handle:
        version = npy_format.read_magic(handle)
        shape, _, dtype = (npy_format.read_array_header_1_0(handle) if version == (1, 0)
                           else npy_format.read_array_header_2_0(handle))
        if not dtype.hasobject:
            handle.seek(0)
            return np.load(handle, allow_pickle=False)
        try:
            array = _NumpyOnlyUnpickler(handle).load()
        except pickle.UnpicklingError as err:
            raise UnsafeCheckpointError(
                f"{key}: refusing to load '{path}': its pickled content names '{_offending_global(err)}', "
                "not a numpy array, number or dict, so loading it would run code from the file") from None
    if not isinstance(array, np.ndarray) or tuple(array.shape) != tuple(shape):
        raise UnsafeCheckpointError(f"{key}: '{path}' is not a numpy object array of shape {shape}")
    return array.item() if array.shape == () else array


__all__ = ["UnsafeCheckpointError", "plain_hyperparameters", "safe_numpy_load", "safe_torch_load"]

"""The run folder (``trainer.log_dir``) without a collective on one rank.

``Trainer.log_dir`` broadcasts rank 0's value, so it is a collective: read on rank 0 only
(``if trainer.is_global_zero: ... trainer.log_dir``) it waits for the other ranks forever, or
pairs with an unrelated collective of theirs ("collective mismatch"). Callbacks call
:func:`remember_run_dir` from ``setup`` (a hook every rank runs at the same point, so the one
broadcast is matched), and everything else reads :func:`run_dir`, which never communicates:
the remembered value, or the logger's own folder computed locally (the same on every rank
when the logger's version is fixed, as ``cli.py`` does). Objects that only look like a trainer
(tests, tools) may lack ``loggers`` or ``default_root_dir``: the fallback is then the working
directory, which is also Lightning's own default for ``default_root_dir``.
"""
from __future__ import annotations

import os
from typing import Any

_ATTR = "_gensuite_run_dir"


def remember_run_dir(trainer: Any) -> str:
    """Read ``trainer.log_dir`` (a broadcast) and keep it; call it on every rank, e.g. in ``setup``."""
    cached = getattr(trainer, _ATTR, None)
    if cached is None:
        cached = str(getattr(trainer, "log_dir", None) or getattr(trainer, "default_root_dir", None) or os.getcwd())
        setattr(trainer, _ATTR, cached)
    return cached


def run_dir(trainer: Any) -> str:
    """The run folder, with no collective: safe inside ``if trainer.is_global_zero``."""
    cached = getattr(trainer, _ATTR, None)
    if cached is not None:
        return cached
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers = list(getattr(trainer, "loggers", []) or [])
    if loggers:
        first = loggers[0]
        folder = first.log_dir if isinstance(first, (TensorBoardLogger, CSVLogger)) else first.save_dir
    else:
        folder = None
    return str(folder or getattr(trainer, "default_root_dir", None) or os.getcwd())


__all__ = ["remember_run_dir", "run_dir"]

"""What ``cli.py`` adds to every run's logs: run-folder naming for any logger, an LR curve, quiet known warnings.

Kept out of ``cli.py`` so the CLI stays a list of hooks (and the SLURM launcher or tests can
reuse the pieces):

* :func:`name_loggers` puts ``CSVLogger`` and ``WandbLogger`` runs in the same
  ``<runs_dir>/<run_name>/version_<n>/`` folder a TensorBoard run gets (``--run_name`` is
  honoured by all three; a value the user set explicitly is kept);
* :func:`add_default_callbacks` adds a ``LearningRateMonitor`` (the learning-rate curve of
  every optimizer) unless the config has one, or the run has no logger;
* :func:`filter_known_warnings` silences messages that are harmless for this suite and only
  bury the useful ones: Lightning's litlogger / litmodels tips, the pytree ``LeafSpec``
  deprecation (Lightning calling a deprecated torch API), the ``srun`` hint (the suite's SLURM
  launcher, ``launch/slurm.py``, decides how a job starts) and "dirpath has changed" (a resumed
  run whose checkpoint folder moved keeps its weights; only best-k bookkeeping is reset);
* :data:`CKPT_PATH_HELP` documents the suite's ``--ckpt_path last``.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from jsonargparse import Namespace

LR_MONITOR = "lightning.pytorch.callbacks.LearningRateMonitor"
_CSV = ("lightning.pytorch.loggers.CSVLogger", "lightning.pytorch.loggers.csv_logs.CSVLogger", "CSVLogger")
_WANDB = ("lightning.pytorch.loggers.WandbLogger", "lightning.pytorch.loggers.wandb.WandbLogger", "WandbLogger")
_LIGHTNING_DEFAULT_NAMES = (None, "", "lightning_logs")

CKPT_PATH_HELP = (
    "Checkpoint to start from: a file, or 'last' (this suite): the newest last.ckpt under "
    "<runs_dir>/<run_name>/version_*/checkpoints/. With 'last', fit resumes in the same run folder at the "
    "saved step (or starts from scratch when there is none); validate/test/predict load it and fail "
    "naming the folder when there is none. Lightning's 'best'/'hpc' also work."
)


def _class_path(item: Any) -> str:
    if isinstance(item, (dict, Namespace)):
        return str(item.get("class_path", ""))
    return type(item).__name__


def _init_args(item: Any) -> Namespace:
    args = item.get("init_args")
    if args is None:
        args = Namespace()
        item["init_args"] = args
    return args


def name_loggers(trainer: Namespace, runs_dir: Path, run_name: str, version: "int | str") -> None:
    """Point CSV / W&B loggers of the resolved config at the run folder (in place).

    ``version`` is the fit's version number, or ``"version_<n>/<subcommand>"`` for test/validate
    (their logs go inside the run they load)."""
    loggers = trainer.get("logger")
    items = loggers if isinstance(loggers, list) else [loggers]
    for item in items:
        if not isinstance(item, (dict, Namespace)):
            continue
        path = _class_path(item)
        args = _init_args(item)
        if path in _CSV:
            if args.get("save_dir") in (None, "", "."):
                args["save_dir"] = str(runs_dir)
            if Path(str(args["save_dir"])) != runs_dir:
                continue  # the user chose another folder: keep their layout
            if args.get("name") in _LIGHTNING_DEFAULT_NAMES:
                args["name"] = run_name
            if args.get("version") is None:
                args["version"] = version
        elif path in _WANDB:
            # trainer.log_dir of a W&B run is its save_dir: make that the run folder.
            if args.get("save_dir") in (None, "", "."):
                args["save_dir"] = str(runs_dir / run_name / (version if isinstance(version, str) else f"version_{version}"))
            if not args.get("name"):
                args["name"] = run_name


def _argv_value(argv: list[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def default_logger_save_dir(argv: list[str]) -> list[str]:
    """``--trainer.logger CSVLogger`` alone: supply its required ``save_dir`` (the ``--runs_dir``).

    ``CSVLogger`` requires ``save_dir`` while parsing, before the CLI can name the run folder;
    :func:`name_loggers` then sets ``name``/``version`` so the run lands in
    ``<runs_dir>/<run_name>/version_<n>/``. An explicit ``--trainer.logger.save_dir`` is kept.
    """
    logger = _argv_value(argv, "--trainer.logger")
    if not logger or not logger.endswith("CSVLogger"):
        return argv
    if any(a == "--trainer.logger.save_dir" or a.startswith("--trainer.logger.save_dir=") for a in argv):
        return argv
    return [*argv, "--trainer.logger.save_dir", _argv_value(argv, "--runs_dir") or "runs"]


def add_default_callbacks(trainer: Namespace) -> None:
    """Append a ``LearningRateMonitor`` unless one is configured or logging is off."""
    if trainer.get("logger") is False:
        return
    callbacks = list(trainer.get("callbacks") or [])
    if any(_class_path(cb) in (LR_MONITOR, "LearningRateMonitor") for cb in callbacks):
        return
    callbacks.append(Namespace(class_path=LR_MONITOR, init_args=Namespace(logging_interval="step")))
    trainer["callbacks"] = callbacks


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith("💡 Tip:")


def filter_known_warnings() -> None:
    """Silence the known harmless messages listed in the module docstring (idempotent)."""
    for message in (
        r".*isinstance\(treespec, LeafSpec\)` is deprecated",
        r"The `srun` command is available on your system but is not used",
        r"The dirpath has changed from",
    ):
        warnings.filterwarnings("ignore", message=message)
    for name in ("lightning.pytorch.utilities.rank_zero", "pytorch_lightning.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in logger.filters):
            logger.addFilter(_DropTips())


def document_ckpt_path(parser: Any) -> None:
    """Replace Lightning's help of ``--ckpt_path`` with the suite's (``last``)."""
    for action in getattr(parser, "_actions", []):
        if getattr(action, "dest", None) == "ckpt_path":
            action.help = CKPT_PATH_HELP


__all__ = ["default_logger_save_dir", "name_loggers", "add_default_callbacks", "filter_known_warnings", "document_ckpt_path", "CKPT_PATH_HELP"]

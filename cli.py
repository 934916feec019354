"""The suite's one entry point: LightningCLI in subclass mode for model and data.

    python cli.py fit --config configs/flow_matching_digits.yaml --config configs/tiny/flow_matching_digits.yaml
    python cli.py fit --config flow_matching_digits.yaml --ckpt_path last      # resume the newest run
    python cli.py predict --config flow_matching_digits.yaml --ckpt_path last  # sample from it
    python cli.py fit --config fitcheck.yaml --print_config                    # dry run: resolved config

What this adds to a plain LightningCLI (see docs/cli.md):

* a ``--config`` that is not a file in the working directory is looked up in ``configs/``
  (``fitcheck.yaml``, ``fitcheck`` and ``tiny/fitcheck`` all work);
* every run gets one folder ``<runs_dir>/<run_name>/version_<n>/`` holding the resolved
  ``config.yaml``, TensorBoard logs and ``checkpoints/`` (``last.ckpt`` always kept);
* ``--ckpt_path last`` finds the newest ``last.ckpt`` of that run name: ``fit`` resumes in the
  same folder at the same step, ``validate``/``test``/``predict`` load it;
* CSV and W&B loggers use the same run folder and ``--run_name`` as TensorBoard, a
  ``LearningRateMonitor`` logs the learning rate, and known harmless warnings are filtered
  (``launch/run_logging.py``); results rows learn the ``--config`` files of the run;
* checkpoints are written atomically, a progress bar shows progress (Rich in a terminal, TQDM lines in log files), and the paths of
  the run folder, checkpoints and predictions are printed at the end.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from jsonargparse import Namespace  # noqa: E402
from lightning.pytorch import LightningDataModule, LightningModule  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI  # noqa: E402

from callbacks.run_checkpoint import RunCheckpoint  # noqa: E402
from launch import run_logging  # noqa: E402

from launch.run_folders import (  # noqa: E402
    find_last_checkpoint,
    next_version,
    version_number,
    resolve_config_argv,
    run_name_from_configs,
)

log = logging.getLogger("cli")

REPO_ROOT = Path(__file__).resolve().parent
CONFIG_DIR = REPO_ROOT / "configs"
PROGRESS_BAR_CLASSES = (
    "lightning.pytorch.callbacks.RichProgressBar",
    "lightning.pytorch.callbacks.TQDMProgressBar",
    "RichProgressBar",
    "TQDMProgressBar",
)


class SuiteCLI(LightningCLI):
    """LightningCLI with run folders, ``last`` resolution and suite defaults."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--run_name",
            type=Optional[str],
            default=None,
            help="Name of the run folder under --runs_dir (default: stem of the first --config).",
        )
        parser.add_argument(
            "--runs_dir",
            type=str,
            default="runs",
            help="Where run folders are created; one folder per run name, one version per launch.",
        )
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.save_last": True,
                "checkpoint.save_top_k": 1,
                "checkpoint.every_n_train_steps": None,
            }
        )

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        run_name = cfg.get("run_name") or run_name_from_configs(cfg.get("config") or [])
        cfg["run_name"] = run_name
        runs_dir = Path(cfg.get("runs_dir") or "runs")
        run_root = runs_dir / run_name
        version = self._resolve_version_and_checkpoint(cfg, run_root)
        trainer = cfg["trainer"]
        if trainer.get("default_root_dir") in (None, "", "."):
            # SLURM requeue checkpoints (hpc_ckpt_*.ckpt) live here, shared by every version.
            trainer["default_root_dir"] = str(run_root)
        if trainer.get("logger") in (None, True):
            trainer["logger"] = Namespace(
                class_path="lightning.pytorch.loggers.TensorBoardLogger",
                init_args=Namespace(
                    save_dir=str(runs_dir), name=run_name, version=version, default_hp_metric=False
                ),
            )
        run_logging.name_loggers(trainer, runs_dir, run_name, version)
        run_logging.add_default_callbacks(trainer)
        if trainer.get("enable_progress_bar", True) is not False:
            callbacks = list(trainer.get("callbacks") or [])
            if not any(_class_path_of(cb) in PROGRESS_BAR_CLASSES for cb in callbacks):
                callbacks.append(_default_progress_bar())
                trainer["callbacks"] = callbacks
        if not trainer.get("plugins"):
            trainer["plugins"] = [Namespace(class_path="callbacks.checkpoint_io.AtomicCheckpointIO")]

    def _resolve_version_and_checkpoint(self, cfg: Namespace, run_root: Path) -> int:
        """Pick the run folder version; turn ``--ckpt_path last`` into a concrete file."""
        ckpt_path = cfg.get("ckpt_path")
        if ckpt_path != "last":
            return next_version(run_root)
        found = find_last_checkpoint(run_root)
        if found is None:
            if self.subcommand == "fit":
                log.warning("--ckpt_path last: no last.ckpt under %s; starting from scratch.", run_root)
                cfg["ckpt_path"] = None
                return next_version(run_root)
            raise SystemExit(
                f"error: --ckpt_path last: no checkpoint found under {run_root}/version_*/checkpoints/. "
                "Train first (cli.py fit) or pass a checkpoint file."
            )
        cfg["ckpt_path"] = str(found)
        if self.subcommand == "fit":
            log.info("Resuming %s", found)
            return version_number(found.parent.parent.name)  # reuse the run folder that wrote it
        return next_version(run_root)

    def _report_paths(self) -> None:
        trainer = self.trainer
        if trainer is None:
            return
        run_folder = trainer.log_dir  # a broadcast: read on every rank, before the rank check
        if not trainer.is_global_zero:
            return
        lines = [f"Run folder: {run_folder}"]
        ckpt = trainer.checkpoint_callback
        if isinstance(ckpt, ModelCheckpoint) and ckpt.last_model_path:
            lines.append(f"Last checkpoint: {ckpt.last_model_path}")
        predictions = getattr(self.model, "predictions_dir", None)
        if predictions:
            lines.append(f"Predictions: {predictions}")
        lines.append(f"TensorBoard: tensorboard --logdir {Path(run_folder).parent}")
        print("\n".join(lines), flush=True)

    def _prepare_subcommand_parser(self, klass: Any, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        run_logging.document_ckpt_path(parser)
        return parser

    def _tag_trainer(self) -> None:
        """Tell results rows (``metrics.results_rows.run_provenance``) which ``--config`` files made this run."""
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        if self.trainer is not None:
            self.trainer.suite_config_files = [os.fspath(str(p)) for p in (cfg.get("config") or [])]

    def before_fit(self) -> None:
        self._tag_trainer()

    def before_validate(self) -> None:
        self._tag_trainer()

    def before_test(self) -> None:
        self._tag_trainer()

    def before_predict(self) -> None:
        self._tag_trainer()

    def after_fit(self) -> None:
        self._report_paths()

    def after_predict(self) -> None:
        self._report_paths()

    def after_test(self) -> None:
        self._report_paths()

    def after_validate(self) -> None:
        self._report_paths()


def _default_progress_bar() -> Namespace:
    """Rich in a terminal; in a log file (SLURM, CI) Rich draws nothing, so a TQDM bar that
    writes a line every 50 steps."""
    if sys.stdout.isatty():
        return Namespace(class_path="lightning.pytorch.callbacks.RichProgressBar")
    return Namespace(
        class_path="lightning.pytorch.callbacks.TQDMProgressBar", init_args=Namespace(refresh_rate=50)
    )


def _class_path_of(callback: Any) -> str:
    if isinstance(callback, (dict, Namespace)):
        return str(callback.get("class_path", ""))
    return type(callback).__name__


def main(argv: list[str] | None = None) -> SuiteCLI:
    """Run the CLI on ``argv`` (default: ``sys.argv[1:]``)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_logging.filter_known_warnings()
    from_command_line = argv is None
    args = resolve_config_argv(list(sys.argv[1:] if from_command_line else argv), CONFIG_DIR)
    args = run_logging.default_logger_save_dir(args)
    if from_command_line:  # LightningCLI reads sys.argv itself; giving `args` too only warns
        sys.argv[1:] = args
    return SuiteCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        args=None if from_command_line else args,
        auto_configure_optimizers=False,
    )


if __name__ == "__main__":
    main()

"""The suite's one entry point: LightningCLI in subclass mode for model and data.

    python cli.py fit --config configs/flow_matching_digits.yaml --config configs/tiny/flow_matching_digits.yaml
    python cli.py fit --config flow_matching_digits.yaml --ckpt_path last      # resume the newest run
    python cli.py predict --config flow_matching_digits.yaml --ckpt_path last  # sample from it
    python cli.py fit --config fitcheck.yaml --print_config                    # dry run: resolved config

What this adds to a plain LightningCLI (see docs/cli.md):

* a ``--config`` that is not a file in the working directory is looked up in ``configs/``
  (``fitcheck.yaml``, ``fitcheck`` and ``tiny/fitcheck`` all work);
* every run gets one folder ``<runs_dir>/<run_name>/version_<n>/`` (run name: config stems joined
  by ``+``, e.g. ``flow_matching_digits+tiny``) holding the resolved
  ``config.yaml``, TensorBoard logs and ``checkpoints/`` (``last.ckpt`` always kept);
* ``--ckpt_path last`` finds the newest complete checkpoint of that run name (``last.ckpt``, step
  or SLURM ``hpc_ckpt``): ``fit`` resumes in the same folder at the same step,
  ``validate``/``test``/``predict`` load it and write under that run; a file path behaves the
  same, and the config and command line always win over the checkpoint's hyper-parameters;
* ``test``/``predict`` without a checkpoint need ``--allow_random_weights true``;
* every ``fit`` has a NaN guard (exit 1, last finite checkpoint kept) and saves ``last.ckpt``
  on SIGTERM/SIGINT (exit 143/130) and SIGUSR1 (continues);
* CSV and W&B loggers use the same run folder and ``--run_name`` as TensorBoard, a
  ``LearningRateMonitor`` logs the learning rate, and known harmless warnings are filtered
  (``launch/run_logging.py``); results rows learn the ``--config`` files of the run;
* checkpoints are written atomically, a progress bar shows progress (Rich in a terminal, TQDM lines in log files), and the paths of
  the run folder, checkpoints and predictions are printed at the end.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from jsonargparse import ActionConfigFile, Namespace  # noqa: E402
from lightning.pytorch import __version__ as _pl_version  # noqa: E402
from lightning.pytorch import LightningDataModule, LightningModule, Trainer  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback  # noqa: E402
from lightning.pytorch.utilities.exceptions import SIGTERMException  # noqa: E402

from callbacks.run_checkpoint import RunCheckpoint  # noqa: E402
from launch import run_logging  # noqa: E402
from launch.checkpoints import (  # noqa: E402
    clean_stale_temporaries,
    compatibility_error,
    newest_complete_checkpoint,
    run_version_of,
)
from launch.config_errors import short_message  # noqa: E402
from launch.errors import find_missing_weights  # noqa: E402
from launch.run_folders import (  # noqa: E402
    next_version,
    resolve_config_argv,
    run_name_from_configs,
    version_number,
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
NAN_GUARD = "callbacks.nan_guard.NaNGuard"
INTERRUPT = "callbacks.interrupt.InterruptCheckpoint"
RANDOM_WEIGHTS_STAMP = "RANDOM_WEIGHTS.txt"
RUN_DIR_ENV = "GENSUITE_RUN_DIR"  # rank 0's run version folder, inherited by the ranks it launches


class SuiteParser(LightningArgumentParser):
    """A parser whose errors are one short message (no usage dump, no nested Union report)."""

    config_files: list[str] = []

    def error(self, message: str, ex: Optional[Exception] = None) -> "NoReturn":  # type: ignore[override]
        if not self.exit_on_error:
            return super().error(message, ex)
        missing = find_missing_weights(ex) if ex is not None else None
        if missing is not None:  # a missing pretrained model: its own line names the key and path
            sys.stderr.write(f"error: {' '.join(str(missing).split())}\n")
            raise SystemExit(2)
        prog = self.prog.replace(" [options]", "")
        sys.stderr.write(f"error: {short_message(message, self.config_files)}\n(options: {prog} --help)\n")
        raise SystemExit(2)


class RunConfig(SaveConfigCallback):
    """Writes the resolved config so that it relaunches a *fresh* run as it is.

    The CLI fills in the checkpoint it resolved, the logger version and the run's root
    folder; those belong to this launch, not to the experiment, so the saved file resets them
    (``ckpt_path: null``, no injected logger / ``default_root_dir``). ``fit`` writes
    ``<run>/config.yaml``; ``test``/``validate`` write ``<run>/<stage>/config.yaml`` (their own log
    folder, which results rows cite) and ``predict`` ``<run>/predict_config.yaml``.
    """

    def __init__(self, *args: Any, reset: Optional[dict[str, Any]] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reset = reset if reset is not None else {}

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        config = self.config.clone()
        for key, value in self.reset.items():
            config[key] = value
        self.config = config
        stage = str(getattr(stage, "value", stage))
        if stage == "predict":  # predict writes into the run folder itself: keep fit's config.yaml
            self.config_filename = "predict_config.yaml"
        super().setup(trainer, pl_module, stage)


class SuiteCLI(LightningCLI):
    """LightningCLI with run folders, ``last`` resolution and suite defaults."""

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        kwargs.setdefault("dump_header", [f"lightning.pytorch=={_pl_version}"])
        parser = SuiteParser(**kwargs)
        parser.add_argument(
            "-c", "--config", action=ActionConfigFile, help="Path to a configuration file in json or yaml format."
        )
        return parser

    def _setup_parser_kwargs(self, parser_kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        main_kwargs, sub_kwargs = super()._setup_parser_kwargs(parser_kwargs)
        main_kwargs.setdefault("parser_mode", "yaml")
        return main_kwargs, sub_kwargs

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        self.parser_class = SuiteParser
        super()._add_subcommands(parser, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--run_name",
            type=Optional[str],
            default=None,
            help="Name of the run folder under --runs_dir (default: the config stems joined by '+', "
            "e.g. flow_matching_digits+tiny).",
        )
        parser.add_argument(
            "--runs_dir",
            type=str,
            default="runs",
            help="Where run folders are created; one folder per run name, one version per launch.",
        )
        parser.add_argument(
            "--allow_random_weights",
            type=bool,
            default=False,
            help="test/predict/validate without --ckpt_path: use the untrained weights (outputs and results "
            "rows are stamped random). Without it such a launch fails.",
        )
        parser.add_argument(
            "--nan_guard",
            type=bool,
            default=True,
            help="fit: stop at the first non-finite loss/gradient, keep the last finite checkpoint, exit 1.",
        )
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.save_last": True,
                "checkpoint.save_top_k": 1,
                "checkpoint.every_n_train_steps": None,
            }
        )

    def _parse_ckpt_path(self) -> None:
        """The config and the command line decide; a checkpoint supplies weights and training state.

        LightningCLI's own version re-applies the checkpoint's saved hyper-parameters over the
        YAML and the command line whenever ``--ckpt_path`` is a file, silently (and not for
        ``last``). Here nothing is taken from the checkpoint's hyper-parameters; a checkpoint
        that does not fit the configured module fails in ``after_instantiate_classes``.
        """

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        run_name = cfg.get("run_name") or run_name_from_configs(cfg.get("config") or [])
        cfg["run_name"] = run_name
        # Absolute and real: ModelCheckpoint stores its (realpath'd) folder in the checkpoint and warns
        # "dirpath has changed" when a later test/predict sees the same folder spelled differently.
        runs_dir = Path(os.path.realpath(cfg.get("runs_dir") or "runs"))
        run_root = runs_dir / run_name
        version_dir = self._resolve_run(cfg, run_root)
        inherited = os.environ.get(RUN_DIR_ENV)
        if inherited and int(os.environ.get("LOCAL_RANK", "0") or 0) > 0 and Path(inherited).parent == run_root:
            version_dir = Path(inherited)  # a DDP child started by rank 0: same folder, even if rank 0 made it
        else:
            os.environ[RUN_DIR_ENV] = str(version_dir)
        self.run_dir = version_dir
        self._created_run_dir = not version_dir.exists()
        _launch["cli"] = self
        reset: dict[str, Any] = {"ckpt_path": None}
        trainer = cfg["trainer"]
        fit = self.subcommand == "fit"
        if trainer.get("default_root_dir") in (None, "", "."):
            # SLURM requeue checkpoints (hpc_ckpt_*.ckpt) go here, inside the run version.
            trainer["default_root_dir"] = str(version_dir)
            reset["trainer.default_root_dir"] = None
        if not fit and not cfg["checkpoint"].get("dirpath") and (version_dir / "checkpoints").is_dir():
            cfg["checkpoint"]["dirpath"] = str(version_dir / "checkpoints")  # as saved: no "dirpath changed"
            reset["checkpoint.dirpath"] = None
        version: Any = version_number(version_dir.name) if fit else f"{version_dir.name}/{self.subcommand}"
        if trainer.get("logger") in (None, True):
            reset["trainer.logger"] = None
            if self.subcommand == "predict":
                trainer["logger"] = False  # log_dir = default_root_dir = the run: <run>/predictions/...
            else:
                trainer["logger"] = Namespace(
                    class_path="lightning.pytorch.loggers.TensorBoardLogger",
                    init_args=Namespace(save_dir=str(version_dir.parent.parent), name=version_dir.parent.name,
                                        version=version, default_hp_metric=False),
                )
        # CSV / W&B loggers land in the same run folder; LearningRateMonitor by default
        run_logging.name_loggers(trainer, version_dir.parent.parent, version_dir.parent.name, version)
        run_logging.add_default_callbacks(trainer)
        callbacks = list(trainer.get("callbacks") or [])
        if trainer.get("enable_progress_bar", True) is not False:
            if not any(_class_path_of(cb) in PROGRESS_BAR_CLASSES for cb in callbacks):
                callbacks.append(_default_progress_bar())
        if cfg.get("nan_guard", True) and not any(_class_path_of(cb).endswith("NaNGuard") for cb in callbacks):
            callbacks.append(Namespace(class_path=NAN_GUARD))
        if fit and not any(_class_path_of(cb).endswith("InterruptCheckpoint") for cb in callbacks):
            callbacks.append(Namespace(class_path=INTERRUPT))
        trainer["callbacks"] = callbacks
        if not trainer.get("plugins"):
            trainer["plugins"] = [Namespace(class_path="callbacks.checkpoint_io.AtomicCheckpointIO")]
        self.save_config_kwargs["reset"] = reset
        if fit:
            clean_stale_temporaries([version_dir, version_dir / "checkpoints"])

    def _resolve_run(self, cfg: Namespace, run_root: Path) -> Path:
        """Turn ``--ckpt_path last`` into a file; return the run version folder this launch uses.

        A checkpoint that lives in a run folder (``last`` or a file path alike) makes this launch
        use that folder: ``fit`` resumes there, ``test``/``predict`` write their outputs there.
        """
        ckpt_path = cfg.get("ckpt_path")
        if ckpt_path == "last":
            found = newest_complete_checkpoint(run_root)
            if found is None:
                if self.subcommand == "fit":
                    log.warning("--ckpt_path last: no checkpoint under %s; starting from scratch.", run_root)
                    cfg["ckpt_path"] = None
                    return run_root / f"version_{next_version(run_root)}"
                raise SystemExit(
                    f"error: --ckpt_path last: no checkpoint of run {run_root.name!r} under {run_root}/version_*/. "
                    "Train first (cli.py fit with the same --config files) or pass a checkpoint file."
                )
            cfg["ckpt_path"] = str(found)
            print(f"--ckpt_path last -> {found} (run {run_root.name}, {run_version_of(found).name})", flush=True)
        elif ckpt_path:
            if not Path(ckpt_path).is_file():
                raise SystemExit(f"error: --ckpt_path {ckpt_path}: no such file")
        if cfg.get("ckpt_path"):
            owner = run_version_of(Path(cfg["ckpt_path"]))
            if owner is not None:
                return owner
        return run_root / f"version_{next_version(run_root)}"

    def instantiate_classes(self) -> None:
        """Constructors raise ``ValueError`` for bad config values: show the message, not a traceback."""
        try:
            super().instantiate_classes()
        except ValueError as err:
            if os.environ.get("GENSUITE_TRACEBACK"):
                raise
            missing = find_missing_weights(err)  # jsonargparse wraps it in a Union report: show its own line
            if missing is not None:
                print(f"error: {' '.join(str(missing).split())}", file=sys.stderr, flush=True)
                raise SystemExit(2) from None
            raise SystemExit(f"error: {err}\n(set GENSUITE_TRACEBACK=1 for the traceback)") from None

    def after_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        ckpt_path = cfg.get("ckpt_path")
        if ckpt_path:
            self._check_checkpoint_fits(str(ckpt_path))
        elif self.subcommand in ("test", "predict", "validate") and not getattr(self.model, "loads_own_weights", False):
            if not cfg.get("allow_random_weights"):
                raise SystemExit(
                    f"error: {self.subcommand} without --ckpt_path would use untrained (random) weights. Pass "
                    "--ckpt_path last (the newest checkpoint of this run) or a checkpoint file; or "
                    "--allow_random_weights true to run on random weights (outputs and results rows are stamped random)."
                )
            # a plain flag every module gets; modules that derive ``uses_random_weights`` (a read-only
            # property: ltt_gan, d2sm) fold ``untrained_weights`` into it, the others take the flag itself
            self.model.untrained_weights = True
            if not isinstance(getattr(type(self.model), "uses_random_weights", None), property):
                self.model.uses_random_weights = True
            self.random_weights = True
            print(f"WARNING: {self.subcommand} with RANDOM (untrained) weights (--allow_random_weights true); "
                  "results rows say weights: random.", flush=True)

    def _check_checkpoint_fits(self, path: str) -> None:
        import torch

        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as err:  # noqa: BLE001 - one line naming the file
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise SystemExit(f"error: --ckpt_path {path}: cannot be read safely ({reason})") from None
        message = compatibility_error(checkpoint, self.model, path)
        if message:
            raise SystemExit(f"error: {message}")

    def _report_paths(self) -> None:
        trainer = self.trainer
        if trainer is None:
            return
        log_dir = trainer.log_dir  # a collective under some strategies: every rank reads it
        if not trainer.is_global_zero:
            return
        lines = [f"Run folder: {self.run_dir}"]
        ckpt = trainer.checkpoint_callback
        if isinstance(ckpt, ModelCheckpoint) and ckpt.last_model_path:
            lines.append(f"Last checkpoint: {ckpt.last_model_path}")
        predictions = getattr(self.model, "predictions_dir", None)
        if predictions:
            lines.append(f"Predictions: {predictions}")
            if getattr(self, "random_weights", False):
                Path(predictions).mkdir(parents=True, exist_ok=True)
                (Path(predictions) / RANDOM_WEIGHTS_STAMP).write_text(
                    "These outputs were produced with RANDOM (untrained) weights (--allow_random_weights true).\n")
        if trainer.logger is not None and log_dir:
            lines.append(f"TensorBoard: tensorboard --logdir {self.run_dir.parent}")
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
        guard = next((cb for cb in self.trainer.callbacks if type(cb).__name__ == "NaNGuard"), None)
        if guard is not None and guard.stopped_at_step is not None:
            raise SystemExit(1)  # the guard printed the step, the tensor and the checkpoint

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
    SuiteParser.config_files = _config_values(args)
    _launch.clear()
    try:
        return _run(args, from_command_line)
    except SIGTERMException:  # Lightning's own stop on SIGTERM exits 0; a stopped run is not a finished one
        _remove_empty_run_folder()
        raise SystemExit(128 + signal.SIGTERM) from None
    except BaseException:
        _remove_empty_run_folder()
        raise


_launch: dict[str, Any] = {}


def _remove_empty_run_folder() -> None:
    """A launch that failed before writing any checkpoint leaves no version folder behind."""
    cli_obj = _launch.get("cli")
    run_dir = getattr(cli_obj, "run_dir", None) if cli_obj is not None else None
    if run_dir is None or not getattr(cli_obj, "_created_run_dir", False) or not Path(run_dir).is_dir():
        return
    if any(Path(run_dir).rglob("*.ckpt")):
        return
    shutil.rmtree(run_dir, ignore_errors=True)


def _config_values(args: list[str]) -> list[str]:
    out = []
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            out.append(args[i + 1])
        elif arg.startswith("--config="):
            out.append(arg.split("=", 1)[1])
    return out


def _run(args: list[str], from_command_line: bool) -> SuiteCLI:
    return SuiteCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        save_config_callback=RunConfig,
        args=None if from_command_line else args,
        auto_configure_optimizers=False,
    )


if __name__ == "__main__":
    main()

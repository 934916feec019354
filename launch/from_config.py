"""Build a run's module, datamodule and trainer from its config files, without running a subcommand.

The export (``launch.export``) and the sampling-budget sweep (``benchmarks.sampling_budget``)
must see exactly the objects ``cli.py`` builds for the same ``--config`` files and overrides
(the same parser, defaults, config lookup in ``configs/`` and trainer defaults), so they go
through :class:`cli.SuiteCLI` with ``run=False`` instead of re-implementing the parsing. No
run folder or ``config.yaml`` is written (``save_config_callback=None``; the logger is off
unless an override turns it on); checkpoints are loaded by the callers, not here.

Also here: reading a Lightning checkpoint safely (``torch.load(weights_only=True)``) and
picking the EMA average out of its callback state.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

__all__ = ["build_cli", "config_args", "load_checkpoint", "ema_weights", "resolve_ckpt_path", "check_fits"]


def config_args(configs: Sequence[str]) -> list[str]:
    """``["--config", c1, "--config", c2, ...]``."""
    out: list[str] = []
    for config in configs:
        out += ["--config", str(config)]
    return out


def build_cli(configs: Sequence[str], overrides: Sequence[str] = (), logger: bool = False) -> Any:
    """A :class:`cli.SuiteCLI` with ``model``, ``datamodule`` and ``trainer`` built and nothing run."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    import cli
    from lightning.pytorch import LightningDataModule, LightningModule

    from launch.run_folders import resolve_config_argv

    if not configs:
        raise SystemExit("error: give at least one --config (the run's paper config and its overlays)")
    args = resolve_config_argv([*config_args(configs), *overrides], cli.CONFIG_DIR)
    if not logger and not any(a.startswith("--trainer.logger") for a in overrides):
        args += ["--trainer.logger", "false"]
    saved_argv = sys.argv
    sys.argv = saved_argv[:1]  # LightningCLI warns when it sees both `args` and a command line
    try:
        return cli.SuiteCLI(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=0,
            save_config_callback=None,
            args=args,
            run=False,
            auto_configure_optimizers=False,
        )
    finally:
        sys.argv = saved_argv


def resolve_ckpt_path(ckpt_path: str, configs: Sequence[str], runs_dir: str = "runs",
                      run_name: Optional[str] = None) -> Path:
    """A checkpoint file: the path itself, or for ``last`` the newest complete checkpoint of the run (as ``cli.py``)."""
    import os

    from launch.checkpoints import newest_complete_checkpoint
    from launch.run_folders import run_name_from_configs

    if ckpt_path == "last":
        name = run_name or run_name_from_configs(configs)
        run_root = Path(os.path.realpath(runs_dir)) / name
        found = newest_complete_checkpoint(run_root)
        if found is None:
            raise SystemExit(f"error: --ckpt_path last: no checkpoint of run {name!r} under {run_root}/version_*/")
        return found
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise SystemExit(f"error: --ckpt_path {ckpt_path}: no such file")
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint as plain tensors and containers (``weights_only=True``; no pickled code runs)."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # an unsupported global in a foreign checkpoint
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SystemExit(f"error: {path}: not loadable with torch.load(weights_only=True): {first}") from None


def ema_weights(checkpoint: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The ``EMACallback`` state of a checkpoint (``{"ema": {name: tensor}, "num_updates": n, ...}``), if any."""
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if str(key).startswith("EMACallback") and isinstance(state, dict) and state.get("ema"):
            return state
    return None


def check_fits(module: Any, state: dict[str, Any], ckpt_path: str | Path = "the checkpoint") -> None:
    """One-line error when a checkpoint's ``network.*`` weights do not fit the module built from the config."""
    own = module.state_dict()
    missing = [k for k in own if k.startswith("network.") and k not in state]
    if missing:
        raise SystemExit(f"error: {ckpt_path} lacks {len(missing)} network weights of this config, e.g. {missing[0]}; "
                         "pass the config (and overrides) it was trained with")
    for key, value in state.items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            raise SystemExit(f"error: {ckpt_path} does not fit this config: {key} is {list(value.shape)} in the "
                             f"checkpoint, {list(own[key].shape)} in the module; pass the config (and overrides, "
                             "e.g. --model.init_args.width) it was trained with")

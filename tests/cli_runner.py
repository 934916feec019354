"""Run ``cli.py`` in-process from tests (one import of torch for all CLI tests)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cli

REPO = Path(cli.__file__).resolve().parent
CONFIGS = REPO / "configs"


def run_cli(args: Sequence[str], runs_dir: Path) -> cli.SuiteCLI:
    """Run one subcommand with run folders under ``runs_dir``; return the CLI object."""
    return cli.main([*args, "--runs_dir", str(runs_dir)])


def paper_configs() -> list[str]:
    """Every full config that has a tiny overlay (the ones the suite promises to run)."""
    return sorted(p.stem for p in CONFIGS.glob("*.yaml") if (CONFIGS / "tiny" / p.name).is_file())


def is_overlay(path: Path) -> bool:
    """A top-level YAML that names no model class: a named preset laid over a full config
    (``cfld_official_code.yaml`` over ``cfld.yaml``), not a config of its own."""
    import yaml

    model = (yaml.safe_load(path.read_text()) or {}).get("model") or {}
    return "class_path" not in model


def all_configs() -> list[Path]:
    """Every YAML under configs/ that is a full config (not an overlay folder, not a top-level preset)."""
    return sorted(p for p in CONFIGS.glob("*.yaml") if not is_overlay(p))

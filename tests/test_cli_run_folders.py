"""Run-folder conventions of the CLI: config lookup, run names, versions, ``last``."""
from __future__ import annotations

from pathlib import Path

import os

import pytest
import torch

from launch.checkpoints import newest_complete_checkpoint, run_version_of
from launch.run_folders import (
        next_version,
    resolve_config_argv,
    resolve_config_path,
    run_name_from_configs,
    version_number,
)


def test_bare_config_name_is_looked_up_in_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_dir = tmp_path / "configs"
    (config_dir / "tiny").mkdir(parents=True)
    (config_dir / "fitcheck.yaml").write_text("a: 1\n")
    (config_dir / "tiny" / "fitcheck.yaml").write_text("a: 2\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # a cwd where none of the names exist as given
    assert resolve_config_path("fitcheck.yaml", config_dir) == config_dir / "fitcheck.yaml"
    assert resolve_config_path("fitcheck", config_dir) == config_dir / "fitcheck.yaml"
    assert resolve_config_path("tiny/fitcheck", config_dir) == config_dir / "tiny" / "fitcheck.yaml"


def test_a_file_in_the_working_directory_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    (config_dir / "x.yaml").write_text("a: 1\n")
    (tmp_path / "x.yaml").write_text("a: 2\n")
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path("x.yaml", config_dir) == Path("x.yaml")


def test_missing_config_names_every_place_looked(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        resolve_config_argv(["fit", "--config", "nope.yaml"], tmp_path)
    message = str(info.value)
    assert "nope.yaml" in message and str(tmp_path / "nope.yaml.yaml") in message


def test_argv_rewrite_keeps_other_arguments(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("x: 1\n")
    argv = resolve_config_argv(["fit", "--config", "a", "--config=a.yaml", "--trainer.max_steps", "3"], tmp_path)
    assert argv == ["fit", "--config", str(tmp_path / "a.yaml"), f"--config={tmp_path / 'a.yaml'}", "--trainer.max_steps", "3"]


def test_run_name_and_versions(tmp_path: Path) -> None:
    assert run_name_from_configs([Path("configs/fitcheck.yaml")]) == "fitcheck"
    assert run_name_from_configs([Path("configs/fitcheck.yaml"), Path("configs/tiny/fitcheck.yaml")]) == "fitcheck+tiny"
    assert run_name_from_configs([Path("configs/ldm_scaling.yaml"), Path("configs/tiny/ldm_scaling.yaml"),
                                  Path("configs/ldm_scaling/dreambooth.yaml")]) == "ldm_scaling+tiny+dreambooth"
    root = tmp_path / "fitcheck"
    assert next_version(root) == 0
    (root / "version_0" / "checkpoints").mkdir(parents=True)
    (root / "version_3").mkdir()
    assert next_version(root) == 4
    assert version_number("version_12") == 12
    assert newest_complete_checkpoint(root) is None
    last = root / "version_0" / "checkpoints" / "last.ckpt"
    torch.save({"global_step": 1}, last)
    assert newest_complete_checkpoint(root) == last
    hpc = root / "version_3" / "hpc_ckpt_1.ckpt"  # newer SLURM checkpoint of a later version wins
    torch.save({"global_step": 2}, hpc)
    os.utime(last, (last.stat().st_mtime - 10,) * 2)
    assert newest_complete_checkpoint(root) == hpc and run_version_of(hpc) == root / "version_3"
    (root / "version_3" / "hpc_ckpt_2.ckpt").write_bytes(b"PK truncated")  # incomplete: ignored
    assert newest_complete_checkpoint(root) == hpc

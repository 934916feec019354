"""Exact resume through ``cli.py``: N steps, then ``--ckpt_path`` to 2N, equals 2N straight, bit for bit.

The epoch is cut to 4 batches (``limit_train_batches``) and N = 3, so the checkpoint is taken
mid-epoch and the resumed run crosses an epoch boundary; validation runs every 2 steps in both.
"""
from __future__ import annotations

from pathlib import Path

import torch

from cli_runner import run_cli

BASE = ["--config", "flow_matching_digits.yaml", "--config", "tiny/flow_matching_digits.yaml",
        "--trainer.limit_train_batches", "4", "--trainer.enable_progress_bar", "false"]
N = 3


def _last(runs: Path, name: str) -> Path:
    """The newest ``last.ckpt`` of a run name (resuming from a file may open a new version folder)."""
    files = sorted((runs / name).glob("version_*/checkpoints/last.ckpt"), key=lambda p: int(p.parts[-3][8:]))
    assert files, f"no last.ckpt under {runs / name}"
    return files[-1]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    out = dict(ckpt["state_dict"])
    for name, state in (ckpt.get("callbacks") or {}).items():  # the EMA too
        for key, value in (state.get("ema") or {}).items() if isinstance(state, dict) else ():
            out[f"{name}/{key}"] = value
    assert ckpt["global_step"] == 2 * N
    return out


def test_resume_mid_epoch_equals_uninterrupted_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run_cli(["fit", *BASE, "--trainer.max_steps", str(2 * N), "--run_name", "straight"], runs)
    run_cli(["fit", *BASE, "--trainer.max_steps", str(N), "--run_name", "resumed"], runs)
    half = _last(runs, "resumed")
    half_state = torch.load(half, map_location="cpu", weights_only=True)
    assert half_state["global_step"] == N
    run_cli(["fit", *BASE, "--trainer.max_steps", str(2 * N), "--run_name", "resumed", "--ckpt_path", str(half)], runs)
    straight, resumed = _weights(_last(runs, "straight")), _weights(_last(runs, "resumed"))
    assert straight.keys() == resumed.keys() and any("ema" in k.lower() for k in straight)
    different = [k for k in straight if not torch.equal(straight[k], resumed[k])]
    assert not different, f"{len(different)} tensors differ after resume, e.g. {different[:3]}"
    # and the interrupted run really was behind: its weights differ from the final ones
    assert any(not torch.equal(half_state["state_dict"][k], straight[k]) for k in half_state["state_dict"])

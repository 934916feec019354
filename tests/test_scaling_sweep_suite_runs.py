"""``benchmarks.scaling_sweep --config``: the LDM scaling sweep on the suite's own ScaledLDM runs (issue 13 §5).

Two tiny members (c = 32, 64; the tiny overlay: 8x8 latents of a random tiny VAE, hashed-prompt
stand-in, embedded digits; stand-ins, not trained models) are trained through cli.py, loaded from
their own checkpoints (4 latent channels: the in-process sweep could not load these) and swept
through the shared sampling-budget path; FID on random-weight digits features (a stand-in).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.results_rows import read_rows


def test_scaling_sweep_on_suite_checkpoints_writes_rows_with_costs(tmp_path: Path) -> None:
    from benchmarks.scaling_sweep import main

    out = tmp_path / "out"
    result = main(["--config", "ldm_scaling.yaml", "--config", "tiny/ldm_scaling.yaml", "--widths", "32", "64",
                   "--train-steps", "1", "--samplers", "ddim", "--steps", "2", "--cfg-scales", "1", "3",
                   "--num-samples", "8", "--batch-size", "8", "--fid-features", "digits-random",
                   "--runs-dir", str(tmp_path / "runs"), "--out", str(out), "--results-dir", str(tmp_path / "results")])
    rows = read_rows([str(out / "rows.jsonl")])
    assert len(rows) == 4 and {r.extra["width"] for r in rows} == {32, 64}
    for r in rows:
        assert r.method == "ScaledLDM" and r.extra["checkpoint"].endswith("last.ckpt") and r.extra["step"] == 1
        assert r.extra["sampling_cost"] == pytest.approx(r.extra["normalised_cost"] * r.extra["num_steps"])
        assert r.nfe == 2 * (2 if r.guidance != 1.0 else 1)
    assert result["gflops"][32] < result["gflops"][64]
    assert {r.extra["normalised_cost"] for r in rows if r.extra["width"] == 64} == {1.0}
    assert (out / "frontier.png").stat().st_size > 1000 and "winning" not in (out / "frontier.md").read_text()
    assert [p["model"] for p in result["frontier"]][0] == 32  # the cheapest point is the small member's


def test_checkpoints_need_the_config() -> None:
    from benchmarks.scaling_sweep import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--checkpoints", "64=a.ckpt"])

"""``python -m benchmarks.sampling_budget``: rows per (sampler, steps, guidance) through Lightning, the frontier.

A tiny class-conditional DDPM (``ddpm_digits_cfg`` + its tiny overlay, 2 training steps: a stand-in,
not a trained model) is trained through cli.py and swept with FID on random-weight digits features
(``digits-random``, a stand-in evaluator: rows say ``weights: random``). Also: the frontier helpers
and the leaderboard's frontier plot from those rows.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks.results_rows import read_rows
from benchmarks.sampling_budget import best_guidance, frontier_points, main
from tests.cli_runner import run_cli

CONFIGS = ["ddpm_digits_cfg.yaml", "tiny/ddpm_digits_cfg.yaml"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    run_cli(["fit", "--config", CONFIGS[0], "--config", CONFIGS[1]], runs)
    return next(runs.glob("ddpm_digits_cfg+tiny/version_*/checkpoints/last.ckpt"))


def test_frontier_helpers_pick_the_best_guidance_and_the_envelope() -> None:
    pts = [
        {"sampler": "ddim", "steps": 4, "guidance": 1.0, "nfe": 4, "value": 30.0},
        {"sampler": "ddim", "steps": 4, "guidance": 3.0, "nfe": 8, "value": 20.0},
        {"sampler": "ddim", "steps": 8, "guidance": 3.0, "nfe": 16, "value": 25.0},  # worse than cheaper: off front
        {"sampler": "ddpm", "steps": 8, "guidance": 1.0, "nfe": 8, "value": float("nan")},  # never wins
        {"sampler": "ddpm", "steps": 8, "guidance": 3.0, "nfe": 16, "value": 10.0},
    ]
    best = best_guidance(pts)
    assert [(p["sampler"], p["steps"], p["guidance"]) for p in best] == [("ddim", 4, 3.0), ("ddim", 8, 3.0), ("ddpm", 8, 3.0)]
    assert [p["value"] for p in frontier_points(best)] == [20.0, 10.0]
    assert [p["value"] for p in frontier_points(best, higher_is_better=True)] == [20.0, 25.0]


def test_sweep_writes_rows_and_the_frontier_through_lightning(checkpoint: Path, tmp_path: Path) -> None:
    out, results = tmp_path / "out", tmp_path / "results"
    result = main(["--config", CONFIGS[0], "--config", CONFIGS[1], "--ckpt_path", str(checkpoint),
                   "--samplers", "ddim", "ddpm", "--steps", "2", "3", "--guidance", "1", "3",
                   "--num_samples", "12", "--batch_size", "12", "--features", "digits-random",
                   "--out", str(out), "--results_dir", str(results)])
    rows = read_rows([str(out / "rows.jsonl")])
    assert len(rows) == 8 and read_rows([str(results / "sampling_budget" / "ddpm_digits_cfg+tiny.jsonl")]) == rows
    seen = {(r.extra["sampler"], r.extra["num_steps"], r.guidance) for r in rows}
    assert seen == {(s, n, g) for s in ("ddim", "ddpm") for n in (2, 3) for g in (1.0, 3.0)}
    for r in rows:  # guided steps evaluate the network twice (conditional + null class)
        assert r.nfe == r.extra["num_steps"] * (2 if r.guidance != 1.0 else 1)
        assert r.metric == "FID" and r.weights == "random" and r.extra["sweep"] == "sampling_budget"
        assert r.extra["step"] == 2 and r.extra["checkpoint"] == str(checkpoint)
    # the best guidance per (sampler, steps), recomputed from the rows themselves
    written = json.loads((out / "points.json").read_text())
    for p in written["best"]:
        same = [r.value for r in rows if r.extra["sampler"] == p["sampler"] and r.extra["num_steps"] == p["steps"]]
        assert p["value"] == min(same)
    assert (out / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "best guidance" in (out / "frontier.md").read_text()
    # the sweep ran on the checkpoint's weights (Lightning restored them; EMA swapped out again afterwards)
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]["network.conv_in.weight"]
    assert torch.equal(result["module"].network.conv_in.weight.detach().cpu(), raw)

    from benchmarks.leaderboard import main as leaderboard

    leaderboard(["--results", str(results), "--output", str(tmp_path / "LEADERBOARD.md")])
    text = (tmp_path / "LEADERBOARD.md").read_text()
    assert "__fid__frontier.png" in text
    assert next((tmp_path / "leaderboard_plots").glob("*__fid__frontier.png")).stat().st_size > 1000


def test_guidance_sweep_refuses_an_unconditional_module(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="unconditional"):
        main(["--config", "ddpm_digits.yaml", "--config", "tiny/ddpm_digits.yaml", "--ckpt_path", str(checkpoint),
              "--steps", "2", "--guidance", "1", "3", "--out", str(tmp_path)])

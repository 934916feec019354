"""``benchmarks.scaling_sweep --config``: the LDM scaling sweep on the suite's own ScaledLDM runs (issue 13 §5).

Two tiny members (c = 32, 64; the tiny overlay: 8x8 latents of a random tiny VAE, hashed-prompt
stand-in, embedded digits; stand-ins, not trained models) are trained through cli.py, loaded from
their own checkpoints (4 latent channels: the in-process sweep could not load these) and swept
through the shared sampling-budget path with the tiny overlay's test evaluation (stand-in FID on tiny
random features and CLIP score of a random tiny CLIP: the Table 2.1 columns, not their numbers).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks.results_rows import read_rows


def test_scaling_sweep_on_suite_checkpoints_writes_rows_with_costs(tmp_path: Path) -> None:
    from benchmarks.scaling_sweep import main

    out = tmp_path / "out"
    result = main(["--config", "ldm_scaling.yaml", "--config", "tiny/ldm_scaling.yaml", "--widths", "32", "64",
                   "--train-steps", "1", "--samplers", "ddim", "--steps", "2", "--cfg-scales", "1", "3",
                   "--num-samples", "8", "--batch-size", "8", "--fid-features", "digits-random",
                   "--runs-dir", str(tmp_path / "runs"), "--out", str(out), "--results-dir", str(tmp_path / "results")])
    every = read_rows([str(out / "rows.jsonl")])
    assert sorted(r.metric for r in every) == ["CLIP"] * 4 + ["FID"] * 4  # both Table 2.1 columns per point
    # the frontier's metric: the first evaluated, FID (the thesis selects the CFG scale by FID, Sec. 2.3.3)
    assert json.loads((out / "points.json").read_text())["metric"] == "FID"
    rows = [r for r in every if r.metric == "FID"]
    assert len(rows) == 4 and {r.extra["width"] for r in rows} == {32, 64}
    for r in rows:
        assert r.method.startswith("ScaledLDM") and r.extra["checkpoint"].endswith("last.ckpt") and r.extra["step"] == 1
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
    with pytest.raises(SystemExit):  # the distilled members are CoDi runs of the suite: they need the config
        parse_args(["--quick", "--distill"])


def test_distilled_curve_through_codi_writes_flagged_rows(tmp_path: Path) -> None:
    """``--distill`` (Sec. 2.3.5): the member trained through cli.py, distilled by the CoDi module (``task: t2i``,
    from the member's ``network.*`` weights), swept with the consistency sampler over the CFG grid. Tests code
    (random tiny stand-ins), not Fig. 2.13's numbers."""
    from benchmarks.scaling_sweep import main

    out = tmp_path / "out"
    result = main(["--config", "ldm_scaling.yaml", "--config", "tiny/ldm_scaling.yaml", "--widths", "32",
                   "--train-steps", "1", "--samplers", "ddim", "--steps", "2", "--cfg-scales", "1", "3",
                   "--distill", "--distill-config", "ldm_scaling/distill.yaml", "--distill-config",
                   "tiny/ldm_scaling/distill.yaml", "--distill-steps", "1", "--distill-sampling-steps", "2",
                   "--num-samples", "4", "--batch-size", "4", "--runs-dir", str(tmp_path / "runs"), "--out", str(out),
                   "--results-dir", str(tmp_path / "results"), "--", "--data.init_args.num_workers", "0"])
    every = read_rows([str(out / "rows.jsonl")])
    distilled = [r for r in every if r.extra.get("distilled") and r.metric == "FID"]
    assert len(distilled) == 2 and {r.guidance for r in distilled} == {1.0, 3.0}
    for r in distilled:
        assert r.extra["sampler"] == "consistency" and r.extra["num_steps"] == 2 and "distilled" in r.extra["checkpoint"]
        assert r.method.startswith("ScaledLDM, CoDi-distilled") and r.extra.get("table") is None
        assert r.nfe == 2 * (2 if r.guidance != 1.0 else 1)
        assert r.extra["sampling_cost"] == pytest.approx(r.extra["normalised_cost"] * 2 * (1 if r.guidance == 1.0 else 1))
    assert len([r for r in every if not r.extra.get("distilled")]) == 4  # the undistilled points are still there
    assert len(result["best_distilled"]) == 1 and all(p["sampler"] != "consistency" for p in result["frontier"])
    assert "Distilled curve" in (out / "frontier.md").read_text()
    # the member's weights (its EMA average, Sec. 2.3.5 distils the trained model) land in CoDi's plain backbone
    from diffusers import UNet2DConditionModel

    from lightning_modules.codi.adapter import PlainBackboneUNet
    from lightning_modules.codi.base import load_network_weights
    from lightning_modules.components.safe_load import safe_torch_load

    member = distilled[0].extra["member_checkpoint"]
    saved = safe_torch_load(member)
    ema = next(v for k, v in saved["callbacks"].items() if k.startswith("EMACallback"))["ema"]
    ema["network.conv_in.weight"] = saved["state_dict"]["network.conv_in.weight"] + 1.0  # tell the two apart
    torch.save(saved, tmp_path / "member.ckpt")
    net = PlainBackboneUNet(UNet2DConditionModel.from_config(result["unet_configs"][32]))
    load_network_weights(net, str(tmp_path / "member.ckpt"))
    assert torch.equal(net.backbone.conv_in.weight, ema["network.conv_in.weight"])

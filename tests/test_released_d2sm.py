"""FFDNet checkpoints of the D2SM authors' code (MKFMIKU/d2sm models/ffdnet_model.py layout) in the suite's FFDNet.

The file is written with their names (m_head / m_body / m_tail under DDP's module., plus the D2SM loss's VGG) and
random values: an importer test, not the paper's numbers. Their forward is restated below from their code.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.components.released_weights import ReleasedWeightsError
from lightning_modules.d2sm import FFDNet
from lightning_modules.d2sm.released import import_d2sm_ffdnet


def _their_file(feats: int = 8, blocks: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g) * 0.2  # noqa: E731
    state = {"m_head.0.weight": r(feats, 13, 3, 3), "m_head.0.bias": r(feats),
             "m_tail.weight": r(12, feats, 3, 3), "m_tail.bias": r(12),
             "deep_semantic_transfer.vgg.0.weight": r(4, 3, 3, 3)}
    for i in range(blocks - 2):
        state[f"m_body.{i}.0.weight"], state[f"m_body.{i}.0.bias"] = r(feats, feats, 3, 3), r(feats)
    return {"epoch": 400, "state_dict": {f"module.{k}": v for k, v in state.items()}}


def _their_forward(state: dict, x01: torch.Tensor, sigma01: float, blocks: int) -> torch.Tensor:
    """FFDNetModel.forward: unshuffle 2, one sigma channel, head / body / tail with ReLU, shuffle (on [0, 1])."""
    s = {k[len("module."):]: v for k, v in state.items()}
    h = F.pixel_unshuffle(x01, 2)
    h = torch.cat([h, torch.full_like(h[:, :1], sigma01)], 1)
    h = F.relu(F.conv2d(h, s["m_head.0.weight"], s["m_head.0.bias"], padding=1))
    for i in range(blocks - 2):
        h = F.relu(F.conv2d(h, s[f"m_body.{i}.0.weight"], s[f"m_body.{i}.0.bias"], padding=1))
    return F.pixel_shuffle(F.conv2d(h, s["m_tail.weight"], s["m_tail.bias"], padding=1), 2)


def test_their_ffdnet_checkpoint_loads_and_computes_their_function(tmp_path: Path) -> None:
    torch.save(_their_file(), tmp_path / "checkpoint_0400.pth.tar")
    net = FFDNet(features=8, num_layers=4, noise_map_channels=1)
    mapped = import_d2sm_ffdnet(net, tmp_path / "checkpoint_0400.pth.tar")
    assert set(mapped) == set(net.state_dict())
    x01 = torch.rand(2, 3, 8, 12)
    ours = (net(x01 * 2 - 1, torch.tensor([25.0, 25.0])) + 1) / 2
    torch.testing.assert_close(ours, _their_forward(_their_file()["state_dict"], x01, 25 / 255, 4), atol=1e-5, rtol=1e-4)


def test_other_ffdnet_sizes_are_refused_with_one_message(tmp_path: Path) -> None:
    torch.save(_their_file(), tmp_path / "checkpoint_0400.pth.tar")
    with pytest.raises(ReleasedWeightsError, match=r"checkpoint_0400.pth.tar.*D2SM-code FFDNet.*other shapes.*noise_map_channels: 1"):
        import_d2sm_ffdnet(FFDNet(features=8, num_layers=4), tmp_path / "checkpoint_0400.pth.tar")  # 3-channel sigma map
    with pytest.raises(ReleasedWeightsError, match="missing"):
        import_d2sm_ffdnet(FFDNet(features=8, num_layers=5, noise_map_channels=1), tmp_path / "checkpoint_0400.pth.tar")


def test_cli_test_with_the_released_flag_writes_labelled_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`cli.py test --config d2sm_denoise.yaml --config tiny/d2sm_denoise.yaml --model.init_args.released_checkpoint F`
    (the cheapest paper's test stage): no --ckpt_path needed, rows carry the file, the leaderboard labels them."""
    import json

    from benchmarks.leaderboard import load_paper_numbers, render_leaderboard
    from benchmarks.results_rows import read_rows
    from cli_runner import REPO, run_cli

    monkeypatch.chdir(tmp_path)  # results/ is relative to the working directory
    file = tmp_path / "checkpoint_0400.pth.tar"
    torch.save(_their_file(feats=8, blocks=3), file)  # the tiny overlay's FFDNet: 8 features, 3 convs
    cli = run_cli(["test", "--config", "d2sm_denoise.yaml", "--config", "tiny/d2sm_denoise.yaml",
                   "--model.init_args.released_checkpoint", str(file),
                   "--model.init_args.restorer.init_args.noise_map_channels", "1"], tmp_path)
    loaded = _their_file(feats=8, blocks=3)["state_dict"]["module.m_tail.weight"]
    assert torch.equal(cli.model.restorer.body[4].weight, loaded), "the test ran the imported weights"
    results = tmp_path / "results" / "d2sm.jsonl"
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert rows and all(r["released_checkpoint"] == str(file) for r in rows)
    text = render_leaderboard(read_rows([str(results)]), load_paper_numbers(str(REPO / "benchmarks" / "paper_numbers.yaml")))
    assert "authors' released weights checkpoint_0400.pth.tar" in text

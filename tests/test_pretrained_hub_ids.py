"""Pretrained paths accept Hugging Face hub ids through the cache (issue 13 §6).

A fake cache in the real layout (``models--org--name/refs/main`` + ``snapshots/<commit>/``)
under a temporary ``HF_HOME`` holds a tiny random diffusers UNet written with
``save_pretrained`` (a stand-in for a real model); ``HF_HUB_OFFLINE=1`` (conftest) so only the
cache is read. A missing model gives one line, also through ``cli.py``.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightning_modules.components.pretrained_paths import (
    MissingWeightsError,
    build_diffusers_model,
    looks_like_hub_id,
    require_files,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _fake_cache(home: Path, repo_id: str, write) -> Path:
    """``$HF_HOME/hub/models--org--name`` with ``refs/main`` and one snapshot filled by ``write(folder)``."""
    repo = home / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    write(snapshot)
    return snapshot


def _tiny_unet():
    from diffusers import UNet2DModel

    torch.manual_seed(3)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4)


def test_hub_id_resolves_through_a_fake_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers import UNet2DModel

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    net = _tiny_unet()
    snapshot = _fake_cache(tmp_path / "hf", "tinyorg/tiny-pipe", lambda f: net.save_pretrained(f / "unet"))
    assert looks_like_hub_id("tinyorg/tiny-pipe") and not looks_like_hub_id(str(snapshot))
    for ref in ("tinyorg/tiny-pipe", f"tinyorg/tiny-pipe@{COMMIT}"):
        loaded = build_diffusers_model(UNet2DModel, key="model.init_args.sd_path", path=ref, subfolder="unet")
        for (name, a), (_, b) in zip(net.state_dict().items(), loaded.state_dict().items()):
            assert torch.equal(a, b), name
    assert require_files("tinyorg/tiny-pipe", "k", ["unet/config.json"], "test") == snapshot


def test_scaled_ldm_takes_a_hub_id_unet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers import UNet2DConditionModel

    from lightning_modules.ldm_scaling.family import scaled_unet_config
    from lightning_modules.ldm_scaling.module import ScaledLDM

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    unet = UNet2DConditionModel.from_config(scaled_unet_config(32, context_dim=32, layers_per_block=1, sample_size=8,
                                                               levels=2))
    _fake_cache(tmp_path / "hf", "tinyorg/tiny-ldm-unet", unet.save_pretrained)
    model = ScaledLDM(width=32, levels=2, layers_per_block=1, context_dim=32, latent_size=8, text_encoder="stand_in",
                      unet_path="tinyorg/tiny-ldm-unet")
    assert torch.equal(model.network.conv_in.weight, unet.conv_in.weight)


def test_missing_hub_id_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers import UNet2DModel

    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError) as err:
        build_diffusers_model(UNet2DModel, key="model.init_args.sd_path", path="nobody/nothing", subfolder="unet",
                              source="test")
    text = str(err.value)
    assert "\n" not in text and "model.init_args.sd_path" in text and "nobody/nothing" in text
    assert "HF_HUB_OFFLINE=1" in text and str(tmp_path / "empty") in text


def test_cli_prints_one_line_for_a_missing_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    from launch.errors import one_line_errors
    from tests.cli_runner import run_cli

    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    with pytest.raises(SystemExit) as stop, one_line_errors():
        run_cli(["fit", "--config", "ldm_scaling.yaml", "--config", "tiny/ldm_scaling.yaml",
                 "--model.init_args.unet_path", "nobody/unet"], tmp_path / "runs")
    assert stop.value.code == 2
    lines = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: model.init_args.unet_path:"), lines

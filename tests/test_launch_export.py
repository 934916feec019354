"""``python -m launch.export``: a tiny DDPM baseline trained through cli.py, exported, reloaded with diffusers.

The reloaded ``DDPMPipeline`` / ``DDIMPipeline`` must draw the image the suite draws from the same
checkpoint (EMA weights) with the same seed: same initial noise, same scheduler steps (issue 13 §6).
The network is the tiny overlay's random-init UNet after two training steps: a stand-in, not a
trained model.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.cli_runner import run_cli

CONFIGS = ["ddpm_digits.yaml", "tiny/ddpm_digits.yaml"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    run_cli(["fit", *sum((["--config", c] for c in CONFIGS), [])], runs)
    return next(runs.glob("ddpm_digits+tiny/version_*/checkpoints/last.ckpt"))


def _suite_sample(ckpt: Path, overrides: list[str], seed: int) -> torch.Tensor:
    """The suite's own sample of the checkpoint's EMA weights: module.sample with a seeded generator."""
    from launch.from_config import build_cli

    model = build_cli(CONFIGS, overrides).model
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    model.load_state_dict(state["state_dict"])
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state["callbacks"]["EMACallback"]["ema"].items():
            params[name].copy_(value)
    return model.eval().sample(2, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_export_reloads_in_diffusers_and_samples_the_suite_image(trained: Path, tmp_path: Path, sampler: str) -> None:
    import diffusers
    from safetensors.torch import load_file

    from launch.export import main

    out = tmp_path / "export"
    overrides = ["--model.init_args.sampler", sampler]
    manifest = main(["--config", CONFIGS[0], "--config", CONFIGS[1], "--ckpt_path", str(trained), "--out", str(out),
                     "--", *overrides])
    assert manifest["weights"] == "ema" and manifest["global_step"] == 2
    assert json.loads((out / "export.json").read_text())["pipeline"] == f"{sampler.upper()}Pipeline"
    weights = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    assert (out / "unet" / "config.json").is_file() and not any(k.startswith("network.") for k in weights)
    raw = torch.load(trained, map_location="cpu", weights_only=True)["state_dict"]
    ema = torch.load(trained, map_location="cpu", weights_only=True)["callbacks"]["EMACallback"]["ema"]
    assert torch.equal(weights["conv_in.weight"], ema["network.conv_in.weight"])
    assert not torch.equal(weights["conv_in.weight"], raw["network.conv_in.weight"])  # EMA, not the raw weights

    pipe = getattr(diffusers, f"{sampler.upper()}Pipeline").from_pretrained(str(out))
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(batch_size=2, generator=torch.Generator().manual_seed(11), num_inference_steps=4,
                  output_type="np").images
    ours = (_suite_sample(trained, overrides, 11) + 1) / 2
    ours = ours.clamp(0, 1).permute(0, 2, 3, 1).numpy()
    assert theirs.shape == ours.shape == (2, 16, 16, 1)
    assert abs(theirs - ours).max() < 1e-4, abs(theirs - ours).max()


def test_no_pipeline_for_flow_matching_and_conditional_models() -> None:
    from diffusers import UNet2DModel

    from launch.export import scheduler_for
    from lightning_modules.baselines import DDPM, FlowMatching

    def unet(classes=None):
        return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                           down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                           norm_num_groups=4, num_class_embeds=classes)

    name, config, reason = scheduler_for(FlowMatching(unet()))
    assert name is None and config is None and "RectifiedFlowPath" in reason
    name, _, reason = scheduler_for(DDPM(unet(11), num_classes=10))
    assert name is None and "class" in reason
    name, config, _ = scheduler_for(DDPM(unet(), sampler="euler"))
    assert name is None


def test_a_checkpoint_of_another_config_is_one_clear_error(trained: Path, tmp_path: Path) -> None:
    from launch.export import main

    with pytest.raises(SystemExit, match="does not fit this config: network.conv_in.weight is"):
        main(["--config", CONFIGS[0], "--config", CONFIGS[1], "--ckpt_path", str(trained), "--out", str(tmp_path),
              "--", "--model.init_args.network.init_args.block_out_channels", "[16, 32]"])

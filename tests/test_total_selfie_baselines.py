"""Table 3.1 baseline DreamBooth + ControlNet (thesis 000 Ch. 3, §3.3 (4)); tiny random parts: tests the code,
not the paper's numbers."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from codi_helpers import TINY_VAE

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "total_selfie_baselines" / "dreambooth_controlnet.yaml"
TINY_CONTROLNET = dict(in_channels=4, conditioning_channels=3, layers_per_block=1, block_out_channels=[32, 64],
                       down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"], cross_attention_dim=32,
                       attention_head_dim=8, norm_num_groups=32, conditioning_embedding_out_channels=[8, 16])


@pytest.fixture(scope="module")
def baseline():
    from lightning_modules.total_selfie.dreambooth_controlnet import DreamBoothControlNetBaseline

    torch.manual_seed(0)
    model = DreamBoothControlNetBaseline(
        width=32, levels=2, layers_per_block=1, context_dim=32, latent_size=8, vae_config=TINY_VAE,
        text_encoder="stand_in", prediction_type="epsilon", num_sampling_steps=2, num_prior_images=0,
        prior_loss_weight=0.0, controlnet_config=TINY_CONTROLNET, guidance_scale=3.0).eval()
    with torch.no_grad():  # a trained ControlNet's zero convolutions are not zero any more
        for p in [*model.controlnet.controlnet_down_blocks.parameters(), *model.controlnet.controlnet_mid_block.parameters(),
                  *model.controlnet.controlnet_cond_embedding.conv_out.parameters()]:
            p.normal_(0.0, 0.2)
    return model


def _capture_batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    fg = torch.zeros(2, 1, 16, 16)
    fg[:, :, 3:14, 5:11] = 1
    return {"image": torch.rand(2, 3, 16, 16, generator=g) * 2 - 1, "pose": (torch.rand(2, 3, 16, 16, generator=g) > 0.8).float(),
            "foreground": fg, "selfies": torch.rand(2, 4, 3, 16, 16, generator=g) * 2 - 1}


def test_generates_a_foreground_only_image_that_follows_the_pose(baseline):
    batch = _capture_batch()
    out = baseline.sample_for_batch(batch, generator=torch.Generator().manual_seed(1))
    assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()
    outside = (batch["foreground"] == 0).expand_as(out)
    assert torch.all(out[outside] == -1.0)  # background black: only the person is scored (Table 3.1)
    other = dict(batch, pose=1.0 - batch["pose"])  # the ControlNet hint reaches the output
    moved = baseline.sample_for_batch(other, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(out, moved)
    baseline.conditioning_scale = 0.0
    try:  # scale 0: residuals vanish, the hint no longer matters
        a = baseline.generate(batch["pose"], generator=torch.Generator().manual_seed(1))
        b = baseline.generate(other["pose"], generator=torch.Generator().manual_seed(1))
    finally:
        baseline.conditioning_scale = 1.0
    assert torch.allclose(a, b, atol=1e-6)


def test_missing_pose_or_controlnet_is_a_clear_error(baseline):
    from lightning_modules.total_selfie.dreambooth_controlnet import DreamBoothControlNetBaseline

    with pytest.raises(KeyError, match="pose"):
        baseline.sample_for_batch({"image": torch.zeros(1, 3, 16, 16)})
    with pytest.raises(ValueError, match="controlnet_path"):
        DreamBoothControlNetBaseline(width=32, levels=2, layers_per_block=1, context_dim=32, latent_size=8,
                                     text_encoder="stand_in", num_prior_images=0)


def test_four_selfie_dreambooth_data_and_the_config_row():
    from datamodules.total_selfie.dreambooth import BASELINE_PROMPT, TotalSelfieDreamBoothDataModule

    dm = TotalSelfieDreamBoothDataModule(capture=None, size=32, per_concept=2, batch_size=2, concepts="selfies")
    train, _ = dm.build_datasets()
    assert len(train) == 8 and {train[i]["caption"] for i in range(8)} == {BASELINE_PROMPT}
    with pytest.raises(ValueError, match="concepts"):
        TotalSelfieDreamBoothDataModule(concepts="faces")
    config = yaml.safe_load(CONFIG.read_text())
    assert config["model"]["class_path"].endswith("DreamBoothControlNetBaseline")
    assert config["data"]["init_args"]["concepts"] == "selfies"
    evaluation = config["trainer"]["callbacks"][0]["init_args"]
    table = next(t for p in yaml.safe_load((REPO / "benchmarks" / "paper_numbers.yaml").read_text())["papers"]
                 if p["paper"] == evaluation["paper"] for t in p["tables"] if t["table"] == evaluation["table"])
    assert evaluation["method"] in {row["method"] for row in table["rows"]}  # the "DreamBooth" row of Table 3.1
    assert set(evaluation["metrics"]) == set(table["metric_directions"])
    assert evaluation["dataset"] == table["dataset"] and evaluation["split"] == table["split"]

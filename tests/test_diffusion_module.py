"""``DiffusionModule`` behaviour: learning, frozen parts, guidance wiring, sampling, checks."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import UNet2DModel
from lightning.pytorch import Trainer
from torch import nn

from datamodules.embedded import DigitsDataModule
from diffusion.paths import DiscreteDDPMPath, RectifiedFlowPath
from lightning_modules.baselines import DDPM, FlowMatching
from lightning_modules.diffusion_module import DiffusionModule


def tiny_unet(num_class_embeds: int | None = None, size: int = 16) -> UNet2DModel:
    return UNet2DModel(
        sample_size=size,
        in_channels=1,
        out_channels=1,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        num_class_embeds=num_class_embeds,
    )


def quiet_trainer(**kwargs: object) -> Trainer:
    return Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def test_flow_matching_training_lowers_validation_loss() -> None:
    """A short CPU training on the real digits lowers the fixed-seed validation loss."""
    torch.manual_seed(0)
    module = FlowMatching(tiny_unet(), optimizer=lambda p: torch.optim.AdamW(p, lr=2e-3))
    data = DigitsDataModule(size=16, batch_size=16)
    before = quiet_trainer(limit_val_batches=3).validate(module, datamodule=data, verbose=False)[0]["val/loss"]
    quiet_trainer(max_steps=60, limit_val_batches=0).fit(module, datamodule=data)
    after = quiet_trainer(limit_val_batches=3).validate(module, datamodule=data, verbose=False)[0]["val/loss"]
    assert after < 0.6 * before, f"validation loss {before:.3f} -> {after:.3f}"


def test_validation_loss_is_deterministic() -> None:
    module = FlowMatching(tiny_unet())
    batch = {"image": torch.rand(4, 1, 16, 16) * 2 - 1}
    module.eval()
    assert torch.equal(module.validation_step(batch, 0), module.validation_step(batch, 0))
    assert not torch.equal(module.validation_step(batch, 0), module.validation_step(batch, 1))


class FrozenEncoderModule(DiffusionModule):
    """A module with a frozen part, standing in for a latent model's VAE."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__(network)
        self.register_frozen("encoder", nn.Conv2d(1, 1, 1))


def test_frozen_parts_stay_out_of_optimizer_and_checkpoint(tmp_path: Path) -> None:
    module = FrozenEncoderModule(tiny_unet())
    trainable = {id(p) for p in module.trainable_parameters()}
    assert all(id(p) not in trainable for p in module.encoder.parameters())
    optimizer = module.configure_optimizers()
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert in_optimizer == trainable

    module.train()
    assert not module.encoder.training, "frozen parts stay in eval mode"

    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert not any(k.startswith("encoder.") for k in checkpoint["state_dict"])
    restored = FrozenEncoderModule(tiny_unet())
    restored.load_state_dict(checkpoint["state_dict"])  # frozen keys may be absent
    for key, value in module.network.state_dict().items():
        assert torch.equal(value, restored.network.state_dict()[key])
    broken = dict(checkpoint["state_dict"])
    broken.pop(next(k for k in broken if k.startswith("network.")))
    with pytest.raises(RuntimeError, match="missing keys"):
        FrozenEncoderModule(tiny_unet()).load_state_dict(broken)


def test_guidance_scale_one_equals_conditional_and_zero_equals_null_class() -> None:
    module = FlowMatching(tiny_unet(num_class_embeds=11), num_classes=10).eval()
    x = torch.randn(3, 1, 16, 16)
    t = torch.full((3,), 0.3)
    labels = torch.tensor([1, 4, 7])
    conditional = module.denoiser(labels)(x, t)
    null = module.denoiser(torch.full_like(labels, 10))(x, t)
    assert torch.allclose(module.denoiser(labels, guidance_scale=1.0)(x, t), conditional)
    assert torch.allclose(module.denoiser(labels, guidance_scale=0.0)(x, t), null, atol=1e-5)
    guided = module.denoiser(labels, guidance_scale=3.0)(x, t)
    assert torch.allclose(guided, null + 3.0 * (conditional - null), atol=1e-5)


def test_sample_is_reproducible_and_in_range() -> None:
    module = DDPM(tiny_unet(num_class_embeds=11), num_classes=10, num_sampling_steps=5, guidance_scale=2.0).eval()
    first = module.sample(4, generator=torch.Generator().manual_seed(3))
    second = module.sample(4, generator=torch.Generator().manual_seed(3))
    assert first.shape == (4, 1, 16, 16)
    assert torch.equal(first, second)
    assert first.min() >= -1 and first.max() <= 1


def test_label_dropout_rate() -> None:
    module = FlowMatching(tiny_unet(num_class_embeds=11), num_classes=10, label_dropout=0.25)
    labels = torch.zeros(20000, dtype=torch.long)
    dropped = (module.drop_labels(labels) == 10).float().mean().item()
    assert abs(dropped - 0.25) < 0.02


def test_baseline_defaults_follow_the_lecture() -> None:
    ddpm = DDPM(tiny_unet())
    assert isinstance(ddpm.path, DiscreteDDPMPath)
    assert ddpm.path.num_train_timesteps == 1000
    assert ddpm.prediction_type == "epsilon"
    t = ddpm.time_sampler(4096, "cpu")
    steps = ddpm.path.timestep_from_t(t)
    assert torch.allclose(steps, steps.round(), atol=1e-3), "DDPM trains on integer steps"
    flow = FlowMatching(tiny_unet())
    assert isinstance(flow.path, RectifiedFlowPath) and flow.prediction_type == "velocity"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 10}, "num_class_embeds=11"),
        ({"prediction_type": "noise"}, "noise"),
        ({"grid": "cosine"}, "cosine"),
        ({"label_dropout": 1.5}, "label_dropout"),
    ],
)
def test_bad_arguments_name_the_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FlowMatching(tiny_unet(), **kwargs)


def test_missing_label_key_is_named() -> None:
    module = FlowMatching(tiny_unet(num_class_embeds=11), num_classes=10)
    with pytest.raises(KeyError, match="label"):
        module.training_step({"image": torch.zeros(2, 1, 16, 16)}, 0)

"""DreamBooth downstream of the Ch. 2 family (ScaledLDMDreamBooth + DreamBoothSubjectsDataModule); tiny random models."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codi_helpers import TINY_VAE

CLASS_PROMPT, INSTANCE_PROMPT = "a photo of a dog", "a photo of sks dog"


def _dreambooth(**kwargs):
    from lightning_modules.ldm_scaling.dreambooth import ScaledLDMDreamBooth

    args = dict(width=32, levels=2, layers_per_block=1, context_dim=32, latent_size=8, vae_config=TINY_VAE,
                text_encoder="stand_in", num_sampling_steps=2, num_prior_images=3, prior_generation_batch=2,
                instance_prompt=INSTANCE_PROMPT, class_prompt=CLASS_PROMPT)
    args.update(kwargs)
    return ScaledLDMDreamBooth(**args)


def _batch(size: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(size, 3, 16, 16, generator=g) * 2 - 1, "caption": [INSTANCE_PROMPT] * size}


def _loss_by_hand(model, x: torch.Tensor, ctx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(t, noise) drawn from ``g`` in the loss's order, v-target, per-sample MSE, batch mean."""
    from diffusion.predictions import training_target

    t = model.time_sampler(x.shape[0], x.device, generator=g).to(x.dtype)
    noise = torch.randn(x.shape, generator=g, dtype=x.dtype)
    x_t = model.path.add_noise(x, noise, t)
    pred = model.denoiser(ctx)(x_t, t)
    target = training_target("v_prediction", x, noise, t, model.path)
    return (pred - target).pow(2).flatten(1).mean(1).mean()


def _sgd_steps(model, steps: int = 2) -> None:
    opt = torch.optim.Adam(model.trainable_parameters(), lr=1e-2)
    for i in range(steps):
        loss = model.training_step(_batch(seed=i), i)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_prior_comes_from_the_frozen_start_and_stays_fixed(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _dreambooth()
    monkeypatch.setattr(model, "log", lambda *a, **k: None)
    start = copy.deepcopy(model)
    prior = model.prepare_prior(3, batch_size=2, seed=5).clone()
    g = torch.Generator().manual_seed(5)
    images = torch.cat([start.sample(2, prompts=[CLASS_PROMPT] * 2, generator=g),
                        start.sample(1, prompts=[CLASS_PROMPT], generator=g)])
    assert prior.shape == (3, 4, 8, 8)
    assert torch.allclose(prior, start.encode(images), atol=1e-5)
    weights = [p.detach().clone() for p in model.network.parameters()]
    _sgd_steps(model)
    assert any(not torch.equal(a, b) for a, b in zip(weights, model.network.parameters())), "the UNet trained"
    assert torch.equal(model.prior_latents, prior), "the cached prior does not follow the training weights"
    model.on_fit_start()  # already cached: not regenerated
    assert torch.equal(model.prior_latents, prior)
    fresh = model.encode(model.sample(2, prompts=[CLASS_PROMPT] * 2, generator=torch.Generator().manual_seed(5)))
    assert not torch.allclose(fresh, prior[:2], atol=1e-4)


def test_loss_is_instance_plus_lambda_prior_by_hand() -> None:
    model = _dreambooth(prior_loss_weight=0.5)
    x = model.encode(_batch()["image"])
    ctx = model.context([INSTANCE_PROMPT] * 2)
    prior = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    total, instance, prior_loss = model.dreambooth_loss(x, ctx, prior, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    by_hand_instance = _loss_by_hand(model, x, ctx, g)
    by_hand_prior = _loss_by_hand(model, prior, model.context([CLASS_PROMPT] * 3), g)
    assert torch.allclose(instance, by_hand_instance, atol=1e-6)
    assert torch.allclose(prior_loss, by_hand_prior, atol=1e-6)
    assert torch.allclose(total, by_hand_instance + 0.5 * by_hand_prior, atol=1e-6)
    assert not torch.allclose(total, instance)


def test_lambda_zero_is_the_plain_instance_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _dreambooth(prior_loss_weight=0.0)
    x = model.encode(_batch()["image"])
    ctx = model.context([INSTANCE_PROMPT] * 2)
    prior = torch.randn(3, 4, 8, 8)
    total, instance, prior_loss = model.dreambooth_loss(x, ctx, prior, generator=torch.Generator().manual_seed(3))
    plain = model.diffusion_loss(x, ctx, generator=torch.Generator().manual_seed(3)).mean()
    assert torch.allclose(total, plain) and torch.allclose(instance, plain) and float(prior_loss) == 0.0
    assert torch.allclose(plain, _loss_by_hand(model, x, ctx, torch.Generator().manual_seed(3)), atol=1e-6)
    monkeypatch.setattr(model, "log", lambda *a, **k: None)
    model.on_fit_start()  # lambda 0: no prior images generated, training_step needs none
    assert len(model.prior_latents) == 0 and torch.isfinite(model.training_step(_batch(), 0))


def test_only_the_unet_is_trainable() -> None:
    model = _dreambooth()
    trainable = {id(p) for p in model.trainable_parameters()}
    assert trainable == {id(p) for p in model.network.parameters()}
    assert not any(p.requires_grad for p in model.vae.parameters())
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    assert "prior_latents" in dict(model.named_buffers())


def test_datamodule_embedded_stand_in_subject() -> None:
    from datamodules.dreambooth_subjects import DreamBoothSubjectsDataModule

    dm = DreamBoothSubjectsDataModule(root=None, instance_prompt="a photo of sks cat", size=32, batch_size=8)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1 and batch["image"].std() > 0.1
    assert batch["caption"] == ["a photo of sks cat"] * 4
    assert not torch.equal(batch["image"][0], batch["image"][1]), "distinct crops"


def test_datamodule_reads_a_dreambooth_subject_folder(tmp_path: Path) -> None:
    from datamodules.dreambooth_subjects import DreamBoothSubjectsDataModule

    rng = np.random.default_rng(0)
    for subject, count in (("dog", 3), ("backpack", 4)):
        (tmp_path / subject).mkdir()
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)).save(tmp_path / subject / f"{i:02d}.jpg")
    dm = DreamBoothSubjectsDataModule(root=str(tmp_path), subject="dog", size=16, batch_size=8, repeats=2)
    dm.setup("fit")
    assert len(dm.train_dataset) == 6 and len(dm.val_dataset) == 3
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (3, 3, 16, 16) and batch["caption"] == [INSTANCE_PROMPT] * 3
    with pytest.raises(FileNotFoundError, match="backpack"):
        DreamBoothSubjectsDataModule(root=str(tmp_path), subject=None, size=16).setup("fit")


def test_two_step_fit_keeps_the_start_prior_and_checkpoint_restores_it(tmp_path: Path) -> None:
    import lightning as L

    from datamodules.dreambooth_subjects import DreamBoothSubjectsDataModule

    model = _dreambooth(num_prior_images=4)
    expected = copy.deepcopy(model).prepare_prior()
    weights = [p.detach().clone() for p in model.network.parameters()]
    dm = DreamBoothSubjectsDataModule(root=None, size=16, batch_size=4)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1,
                        val_check_interval=2, check_val_every_n_epoch=None, num_sanity_val_steps=0, default_root_dir=str(tmp_path))
    trainer.fit(model, dm)
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["train/loss"])
    assert {"train/instance_loss", "train/prior_loss", "val/loss"} <= set(trainer.callback_metrics)
    assert torch.allclose(model.prior_latents, expected, atol=1e-5), "prior generated before the first update"
    assert any(not torch.equal(a, b) for a, b in zip(weights, model.network.parameters()))
    ckpt = tmp_path / "db.ckpt"
    trainer.save_checkpoint(ckpt)
    restored = _dreambooth(num_prior_images=4)
    restored.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"])
    assert torch.equal(restored.prior_latents, model.prior_latents)


def test_overlay_switches_ldm_scaling_and_stacks_on_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml
    from cli_runner import run_cli

    with pytest.raises(SystemExit) as info:
        run_cli(["fit", "--config", "ldm_scaling.yaml", "--config", "ldm_scaling/dreambooth.yaml", "--print_config"],
                tmp_path)
    assert info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].endswith("ScaledLDMDreamBooth")
    assert printed["model"]["init_args"]["width"] == 320 and printed["model"]["init_args"]["prior_loss_weight"] == 1.0
    assert printed["model"]["init_args"]["optimizer"]["init_args"]["lr"] == 5e-6
    assert printed["data"]["class_path"].endswith("DreamBoothSubjectsDataModule")
    assert printed["data"]["init_args"]["size"] == 512
    cli = run_cli(["fit", "--config", "ldm_scaling.yaml", "--config", "tiny/ldm_scaling.yaml", "--config",
                   "ldm_scaling/dreambooth.yaml", "--trainer.max_steps", "2"], tmp_path)
    assert cli.trainer.global_step == 2 and len(cli.model.prior_latents) == 200
    assert cli.model.prior_latents.shape[1:] == (4, 8, 8)

"""The authors' released PE-CoDi ControlNet (fast-codi/CoDi canny_99000, converted to diffusers' PyTorch layout).

A tiny diffusers ``ControlNetModel`` written with ``save_pretrained`` (the real key names and layout) with
random weights: this tests the import and the forward equivalence, not the released model's quality.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from codi_helpers import TINY_UNET, TINY_VAE


def _released(tmp_path: Path) -> Path:
    from diffusers import ControlNetModel, UNet2DConditionModel

    torch.manual_seed(3)
    controlnet = ControlNetModel.from_unet(UNet2DConditionModel(**TINY_UNET), conditioning_embedding_out_channels=(16, 16))
    with torch.no_grad():
        for p in controlnet.parameters():  # a "trained" branch: zero-convs and hint output no longer zero
            p.add_(0.05 * torch.randn_like(p))
    controlnet.save_pretrained(tmp_path / "codi_canny")
    return tmp_path / "codi_canny"


def _module(**kwargs):
    from lightning_modules.codi import CoDi

    args = dict(unet_config=TINY_UNET, vae_config=TINY_VAE, text_encoder="stand_in", image_size=16, task="canny",
                adapter="controlnet", condition_input="pixel", hint_channels=[16, 16], train_backbone=False)
    args.update(kwargs)
    return CoDi(**args)


def test_released_controlnet_loads_and_runs_as_diffusers_controlnet(tmp_path: Path) -> None:
    from diffusers import ControlNetModel

    folder = _released(tmp_path)
    model = _module(released_checkpoint=str(folder))
    assert model.released_checkpoint == str(folder) and not model.uses_random_weights
    net, reference = model.network, ControlNetModel.from_pretrained(folder)
    g = torch.Generator().manual_seed(0)
    z, ctx = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 8, 32, generator=g)
    edges = (torch.rand(2, 3, 16, 16, generator=g) > 0.8).float()  # the pixel condition in [0, 1]
    k = torch.tensor([999.0, 249.0])
    with torch.no_grad():
        down, mid = reference(z, k, encoder_hidden_states=ctx, controlnet_cond=edges, return_dict=False)
        expected = net.backbone(z, k, encoder_hidden_states=ctx, down_block_additional_residuals=down,
                                mid_block_additional_residual=mid).sample
        ours = net(z, k, encoder_hidden_states=ctx, condition=edges)
        assert not torch.allclose(expected, net.backbone(z, k, encoder_hidden_states=ctx).sample, atol=1e-3)
    assert torch.allclose(ours, expected, atol=1e-5), (ours - expected).abs().max()
    batch = {"canny": edges * 2 - 1}  # data batches hold [-1, 1]; condition() hands the embedding [0, 1]
    assert torch.allclose(model.condition(batch), edges)
    assert model.sample_for_batch(batch).shape == (2, 3, 16, 16)


def test_released_checkpoint_errors_name_the_fix(tmp_path: Path) -> None:
    from lightning_modules.components.released_weights import ReleasedWeightsError

    flax_only = tmp_path / "canny_99000"
    flax_only.mkdir()
    (flax_only / "diffusion_flax_model.msgpack").write_bytes(b"")
    with pytest.raises(ReleasedWeightsError, match="from_flax=True"):
        _module(released_checkpoint=str(flax_only))
    folder = _released(tmp_path)
    with pytest.raises(ValueError, match="hint_channels"):  # embedding of another depth than the VAE factor
        _module(released_checkpoint=str(folder), hint_channels=[16, 32, 96, 256])
    with pytest.raises(ReleasedWeightsError, match="other shapes"):
        _module(released_checkpoint=str(folder), hint_channels=[16, 32])
    with pytest.raises(ValueError, match="condition_input"):
        _module(released_checkpoint=str(folder), condition_input="latent")


def test_canny_predict_inputs_carry_their_prompts_and_the_stand_in_edges(tmp_path: Path) -> None:
    from PIL import Image

    from datamodules.codi_tasks import CoDiTaskDataModule, sobel_edges_stand_in

    for stem, (h, w) in {"bird": (10, 14), "cat": (16, 16)}.items():
        Image.fromarray(((torch.rand(h, w) > 0.7).numpy() * 255).astype("uint8")).save(tmp_path / f"{stem}.png")
        (tmp_path / f"{stem}.txt").write_text(f" a {stem} \n")
    dm = CoDiTaskDataModule(task="canny", size=16, predict_root=str(tmp_path), batch_size=2)
    batch = next(iter(dm.predict_dataloader()))
    assert batch["canny"].shape == (2, 1, 16, 16) and sorted(batch["caption"]) == ["a bird", "a cat"]
    (tmp_path / "cat.txt").unlink()
    with pytest.raises(FileNotFoundError, match="cat.txt"):
        CoDiTaskDataModule(task="canny", size=16, predict_root=str(tmp_path)).predict_dataloader()
    step = torch.cat([torch.full((1, 3, 8, 4), -1.0), torch.full((1, 3, 8, 4), 1.0)], dim=-1)
    edges = sobel_edges_stand_in(step)
    assert edges.shape == (1, 1, 8, 8) and edges[0, 0, :, 3:5].eq(1).all() and edges[0, 0, :, 0].eq(-1).all()

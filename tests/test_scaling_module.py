"""ScaledLDM (Ch. 2 text-to-image member) and its SR downstream model; random weights, tiny sizes."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from codi_helpers import TINY_VAE


def _member(**kwargs):
    from lightning_modules.ldm_scaling import ScaledLDM

    args = dict(width=32, levels=2, layers_per_block=1, context_dim=32, latent_size=8, vae_config=TINY_VAE,
                text_encoder="stand_in", num_sampling_steps=3)
    args.update(kwargs)
    return ScaledLDM(**args)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpm_solver++"])
def test_sampling_with_each_sweep_sampler_and_cfg(sampler: str) -> None:
    model = _member(sampler=sampler)
    images = model.sample(2, prompts=["a handwritten digit 1", "a handwritten digit 2"],
                          generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, 3, 16, 16) and torch.isfinite(images).all()


def test_prompt_dropout_and_captions() -> None:
    model = _member(prompt_dropout=0.999)
    assert model.prompts({"label": torch.tensor([3])}) == ["a handwritten digit 3"]
    assert model.prompts({"label": torch.tensor([3, 4])}, drop=True) == ["", ""]
    assert model.prompts({"caption": ["a cat"], "image": torch.zeros(1)}) == ["a cat"]


def test_tiny_fit_lowers_the_loss() -> None:
    torch.manual_seed(0)
    model = _member(prompt_dropout=0.0)
    opt = torch.optim.Adam(model.trainable_parameters(), lr=2e-3)
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    batch = {"image": images, "label": torch.arange(4)}
    losses = []
    g = torch.Generator().manual_seed(0)
    for _ in range(25):
        x = model.encode(batch["image"])
        loss = model.diffusion_loss(x, model.context(model.prompts(batch)), generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5])


def test_sr_model_starts_as_the_text_to_image_model(tmp_path: Path) -> None:
    from lightning_modules.ldm_scaling import ScaledLDMSuperResolution

    t2i = _member(prompt_dropout=0.0)
    ckpt = tmp_path / "t2i.ckpt"
    torch.save({"state_dict": {f"network.{k}": v for k, v in t2i.network.state_dict().items()}}, ckpt)
    sr = ScaledLDMSuperResolution(width=32, levels=2, layers_per_block=1, context_dim=32, latent_size=8,
                                  vae_config=TINY_VAE, text_encoder="stand_in", image_size=16, init_checkpoint=str(ckpt))
    assert sr.network.config.in_channels == 8 and sr.guidance_scale == 1.0
    batch = {"lr": torch.rand(2, 3, 4, 4) * 2 - 1, "image": torch.rand(2, 3, 16, 16) * 2 - 1}
    z, k = torch.randn(2, 4, 8, 8), torch.tensor([500.0, 500.0])
    ctx = sr.null_context(2)
    with torch.no_grad():
        a = sr._net(batch)(z, k, encoder_hidden_states=ctx).sample
        b = t2i.network(z, k, encoder_hidden_states=t2i.null_context(2)).sample
    assert torch.allclose(a, b, atol=1e-5)
    out = sr.upscale(batch, num_steps=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 16, 16)
    # the SR evaluation's per-input outputs (sr.yaml's EvaluationCallback): upscale, CFG ignored
    again = sr.sample_for_batch(batch, num_steps=2, guidance_scale=7.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, out)
    assert torch.isfinite(sr.sr_loss(batch))


TINY_CLIP = {"projection_dim": 16,
             "text_config": {"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                             "vocab_size": 200, "max_position_embeddings": 32, "bos_token_id": 0, "eos_token_id": 1,
                             "pad_token_id": 1},
             "vision_config": {"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                               "image_size": 16, "patch_size": 8}}


def test_sample_for_batch_draws_one_image_per_caption_for_clip_score() -> None:
    """Code test (random weights): the Table 2.1 evaluation's per-caption images, scored by a tiny random CLIP."""
    from diffusion.dpm_solver import build_any_sampler
    from metrics.clip_score import CLIPScore

    model = _member(guidance_scale=3.0).eval()
    captions = ["a red car", "two dogs on a beach", "a red car"]
    batch = {"image": torch.zeros(3, 3, 16, 16), "caption": captions}
    out = model.sample_for_batch(batch, num_steps=2, sampler="dpm_solver++", generator=torch.Generator().manual_seed(0))
    same = model.sample(3, prompts=captions, num_steps=2, sampler=build_any_sampler("dpm_solver++"),
                        generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 3, 16, 16) and torch.equal(out, same)  # the batch's captions, the given sampler/steps
    other = model.sample_for_batch({**batch, "caption": ["two dogs on a beach"] * 3}, num_steps=2, sampler="dpm_solver++",
                                   generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(other[0], out[0]) and torch.allclose(other[1], out[1])  # the image follows its caption
    clip = CLIPScore(config=TINY_CLIP)
    clip.update(out, text=batch[clip.batch_conditions["text"]])
    score = float(clip.compute())
    assert -1.0 <= score <= 1.0 and clip.count == 3

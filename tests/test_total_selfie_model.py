"""Total Selfie (thesis 000, Ch. 3) model parts on tiny random-weight networks: these test the code, not the paper's numbers."""
from __future__ import annotations

import json

import pytest
import torch

from tests.total_selfie_tiny import CLIP, UNET, VAE, tiny_module


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return tiny_module()


def _batch(seed: int = 0, size: int = 32) -> dict:
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(2, 1, size, size)
    mask[:, :, 6:28, 8:24] = 1
    fg = torch.zeros(2, 1, size, size)
    fg[:, :, 10:24, 12:20] = 1
    return {"image": torch.rand(2, 3, size, size, generator=g) * 2 - 1, "mask": mask, "foreground": fg,
            "selfies": torch.rand(2, 4, 3, 32, 32, generator=g) * 2 - 1, "pose": torch.rand(2, 3, size, size, generator=g)}


def test_zero_initialised_L_makes_the_first_forward_independent_of_the_selfies(model):
    """Eq. 3.2 with L zero-initialised (§3.5.2): different selfies give the same context and the same epsilon."""
    a, b = _batch(0), _batch(1)
    assert torch.count_nonzero(model.selfie_head.projection.weight) == 0
    ca, cb = model.selfie_context(a["selfies"]), model.selfie_context(b["selfies"])
    assert torch.equal(ca, cb)
    cond = lambda batch: {"context": model.selfie_context(batch["selfies"]), "masked_latent": torch.zeros(2, 4, 16, 16),  # noqa: E731
                          "keep_mask": torch.ones(2, 1, 16, 16), "control": None}
    x, t = torch.randn(2, 4, 16, 16), torch.full((2,), 0.5)
    assert torch.equal(model._net(x, t, cond(a)), model._net(x, t, cond(b)))
    with torch.no_grad():  # once L is non-zero the selfies matter (the check above could fail)
        model.selfie_head.projection.weight.normal_()
    try:
        assert not torch.allclose(model.selfie_context(a["selfies"]), model.selfie_context(b["selfies"]))
    finally:
        with torch.no_grad():
            model.selfie_head.projection.weight.zero_()


def test_concatenation_dimensions_feature_and_token_axis(model):
    head = model.selfie_head
    assert head.projection.in_features == 4 * CLIP["hidden_size"] and head.projection.out_features == CLIP["proj_size"]
    assert model.selfie_context(_batch()["selfies"]).shape == (2, 1, 32)
    assert head.null(2).shape == (2, 1, 32)
    token = tiny_module(concat_axis="token", controlnet_config=None, control="none")
    assert token.selfie_head.projection.in_features == CLIP["hidden_size"]
    assert token.selfie_context(_batch()["selfies"]).shape == (2, 4, 32) and token.selfie_head.null(3).shape == (3, 4, 32)


def test_trainable_set_is_unet_mapper_L_and_null_embedding(model):
    trainable = {id(p) for p in model.trainable_parameters()}
    assert all(id(p) in trainable for p in model.network.parameters())
    assert all(id(p) in trainable for p in model.selfie_head.parameters())
    assert not any(id(p) in trainable for p in [*model.clip.parameters(), *model.vae.parameters(), *model.controlnet.parameters()])


def test_controlnet_residuals_change_the_output_only_when_the_scale_is_not_zero(model):
    with torch.no_grad():  # ControlNet's zero convolutions start at 0: give them values so residuals exist
        for conv in [*model.controlnet.controlnet_down_blocks, model.controlnet.controlnet_mid_block]:
            conv.weight.normal_(0, 0.2)
    batch = _batch()
    cond = {"context": model.selfie_context(batch["selfies"]), "masked_latent": torch.randn(2, 4, 16, 16),
            "keep_mask": torch.ones(2, 1, 16, 16), "control": batch["pose"]}
    x, t = torch.randn(2, 4, 16, 16), torch.full((2,), 0.3)
    plain = model._net(x, t, {**cond, "control": None})
    try:
        model.conditioning_scale = 0.0
        assert torch.equal(model._net(x, t, cond), plain)
        model.conditioning_scale = 1.0
        assert not torch.allclose(model._net(x, t, cond), plain)
    finally:
        model.conditioning_scale = 1.0


def test_eq_3_4_background_locked_for_t_above_sT_and_free_after():
    from diffusion.grids import uniform_grid
    from diffusion.paths import DiscreteDDPMPath
    from lightning_modules.total_selfie.background_ddim import background_preserving_ddim, blend_steps

    path = DiscreteDDPMPath()
    noise, bg, fixed = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    fg = torch.zeros(1, 1, 8, 8)
    fg[..., 2:6, 2:6] = 1

    def denoiser(x, t):
        return torch.sin(3 * x) + 0.1  # any network: the background must still be the noised I_b

    denoiser.prediction_type = "epsilon"
    grid = uniform_grid(10, 0.0, 0.999)
    states = []
    background_preserving_ddim(denoiser, path, noise, grid, bg, fg, 0.4, background_noise=fixed,
                               on_step=lambda i, x, zb: states.append((i, x.clone())))
    assert blend_steps(10, 0.4) == [True] * 6 + [False] * 4  # t = T - i > sT: the first 60% of the steps
    outside = fg == 0
    for i, x in states:
        expected = path.add_noise(bg, fixed, torch.full((1,), float(grid[i + 1])))
        if i < 6:
            assert torch.allclose(x[outside.expand_as(x)], expected[outside.expand_as(x)], atol=1e-6)
        else:  # released: the model's own DDIM step
            assert not torch.allclose(x[outside.expand_as(x)], expected[outside.expand_as(x)], atol=1e-3)
    assert len(states) == 10


def test_background_preserving_with_s_equal_1_is_plain_ddim(model):
    batch = _batch()
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    model.preserve_fraction = 1.0
    try:
        a = model.generate(batch, generator=g1)
        b = model.generate(batch, generator=g2, background_preserving=False)
    finally:
        model.preserve_fraction = 0.4
    assert torch.allclose(a, b, atol=1e-5)


def test_tiny_fit_lowers_the_loss():
    torch.manual_seed(0)
    module = tiny_module(controlnet_config=None, control="none", cond_dropout=0.0)
    batch = _batch()
    optimizer = torch.optim.Adam(module.trainable_parameters(), lr=2e-3)
    loss = lambda: module.selfie_loss(batch, torch.Generator().manual_seed(0), drop=False)  # noqa: E731
    before = float(loss().detach())
    for _ in range(15):
        optimizer.zero_grad()
        value = loss()
        value.backward()
        optimizer.step()
    assert float(loss().detach()) < 0.8 * before


def test_pbe_checkpoint_layout_loads_new_L_zero_rest_equal(tmp_path):
    """A PaintByExamplePipeline folder written with save_pretrained (diffusers' own classes) loads;
    L is new (weight zero, PbE's bias), every other tensor equals the saved one."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPVisionConfig

    from lightning_modules.total_selfie.selfie_encoder import pbe_image_encoder_class

    torch.manual_seed(1)
    config = {k: v for k, v in CLIP.items() if k != "proj_size"}
    encoder = pbe_image_encoder_class()(CLIPVisionConfig(**config), proj_size=32)
    encoder.save_pretrained(tmp_path / "image_encoder")
    UNet2DConditionModel.from_config(UNET).save_pretrained(tmp_path / "unet")
    AutoencoderKL.from_config(VAE).save_pretrained(tmp_path / "vae")
    module = tiny_module(pretrained_pbe=str(tmp_path), unet_config=None, vae_config=None, image_encoder_config=None,
                         controlnet_config=None, control="none")
    head, saved = module.selfie_head, encoder.state_dict()
    assert torch.count_nonzero(head.projection.weight) == 0 and head.projection.weight.shape == (32, 4 * 32)
    assert torch.equal(head.projection.bias, saved["proj_out.bias"])
    assert torch.equal(head.uncond_vector, saved["uncond_vector"])
    for key, value in head.mapper.state_dict().items():
        assert torch.equal(value, saved[f"mapper.{key}"]), key
    for key, value in module.clip.state_dict().items():
        assert torch.equal(value, saved[f"model.{key}"]), key
    assert not module.uses_random_weights


def test_released_checkpoint_layout_loads_the_trained_L(tmp_path):
    """The authors' pbe_selfie2full layout (PbE key names, proj_out [768, 4 x 1024]) fills L strictly."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    from lightning_modules.components.released_weights import ReleasedWeightsError

    source = tiny_module(controlnet_config=None, control="none")
    with torch.no_grad():
        source.selfie_head.projection.weight.normal_()
    state = {f"model.{k}": v for k, v in source.clip.state_dict().items()}
    state.update({k.replace("projection.", "proj_out."): v for k, v in source.selfie_head.state_dict().items()})
    (tmp_path / "image_encoder").mkdir()
    (tmp_path / "image_encoder" / "config.json").write_text(json.dumps({"model_type": "clip_vision_model"}))
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "image_encoder" / "model.safetensors"))
    source.network.unet.save_pretrained(tmp_path / "unet")
    module = tiny_module(controlnet_config=None, control="none", released_checkpoint=str(tmp_path))
    assert torch.equal(module.selfie_head.projection.weight, source.selfie_head.projection.weight)
    assert module.released_checkpoint == str(tmp_path)
    with pytest.raises(ReleasedWeightsError, match="concat_axis"):
        tiny_module(controlnet_config=None, control="none", released_checkpoint=str(tmp_path), concat_axis="token")
    assert UNet2DConditionModel  # imported for the layout


def test_bad_unet_channels_named():
    bad = dict(UNET, in_channels=4)
    with pytest.raises(ValueError, match="9 input channels"):
        tiny_module(unet_config=bad, controlnet_config=None, control="none")


def test_paint_by_example_baseline_stacks_the_selfies_into_one_exemplar():
    """Table 3.1 baseline (1): one exemplar = the four selfies stacked vertically, PbE's own projection."""
    module = tiny_module(num_selfies=1, selfie_layout="stacked", zero_init_projection=False, controlnet_config=None,
                         control="none")
    batch = _batch()
    assert module.exemplars(batch["selfies"]).shape == (2, 1, 3, 32, 32)
    assert module.selfie_context(batch["selfies"]).shape == (2, 1, 32)
    assert not torch.allclose(module.selfie_context(batch["selfies"]), module.selfie_context(_batch(5)["selfies"]))
    with pytest.raises(ValueError, match="num_selfies: 1"):
        tiny_module(selfie_layout="stacked", controlnet_config=None, control="none")


def test_init_checkpoint_starts_the_fine_tune_from_the_main_stage(tmp_path):
    source = tiny_module(controlnet_config=None, control="none")
    with torch.no_grad():
        source.selfie_head.projection.weight.normal_()
    torch.save({"state_dict": source.state_dict()}, tmp_path / "last.ckpt")
    module = tiny_module(controlnet_config=None, control="none", init_checkpoint=str(tmp_path / "last.ckpt"))
    assert torch.equal(module.selfie_head.projection.weight, source.selfie_head.projection.weight)
    with pytest.raises(FileNotFoundError, match="init_checkpoint"):
        tiny_module(controlnet_config=None, control="none", init_checkpoint=str(tmp_path / "missing.ckpt"))


def test_full_size_parts_on_the_meta_device():
    """Full size (digest §2.2, PbE's v1.yaml [EXT]): 9-channel SD UNet (320 base, context 768), ViT-L/14 tower
    (1024 wide, 24 layers) -> a 5-block mapper, L = Linear(4 x 1024 -> 768); no memory allocated."""
    from lightning_modules.total_selfie.pretrained import build_pbe_parts

    unet_config = dict(in_channels=9, out_channels=4, cross_attention_dim=768, sample_size=64)
    clip = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=224,
                patch_size=14, proj_size=768)
    with torch.device("meta"):
        unet, _, tower, head = build_pbe_parts(None, unet_config, VAE, clip, 4, "feature", True)
    assert unet.conv_in.weight.shape == (320, 9, 3, 3)
    assert abs(sum(p.numel() for p in unet.parameters()) / 1e6 - 859.5) < 1.0  # SD-1.x UNet, +14.4k for 5 inputs
    assert abs(sum(p.numel() for p in tower.parameters()) / 1e6 - 303.2) < 1.0  # CLIP ViT-L/14 vision tower
    assert len(head.mapper.blocks) == 5 and head.projection.weight.shape == (768, 4096)
    assert head.uncond_vector.shape == (1, 1, 768)

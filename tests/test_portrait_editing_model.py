"""Portrait editing (thesis 000, Ch. 5): the parts' defining properties.

Random tiny networks and constructed denoisers: these test the code, not the paper's numbers.
"""
from __future__ import annotations

import pytest
import torch

from diffusion.guidance import ClassifierFreeGuidance
from lightning_modules.portrait_editing import ImageEmbedAdapter, composed_pair_denoiser, half_masks
from lightning_modules.portrait_editing.identity import IdentityEncoder, encode_with_pseudo_words, insert_tokens_before_word

from portrait_editing_helpers import TEXT, UNET, tiny_mcdm


@pytest.fixture(scope="module")
def mcdm():
    torch.manual_seed(0)
    return tiny_mcdm().eval()


@pytest.fixture(scope="module")
def batch():
    from datamodules.portrait_pairs import PortraitPairsDataModule

    dm = PortraitPairsDataModule(size=16, batch_size=2, num_pairs=4, num_val_pairs=2)
    dm.setup("fit")
    return next(iter(dm.val_dataloader()))


class _ConstNet:
    """``net(x, t, cond) = x * 0 + cond['text'][:, 0]`` broadcast: each prompt gives a distinct constant."""

    def __call__(self, x, t, cond):
        return x * 0 + cond["text"][:, :1].reshape(-1, 1, 1, 1)


def test_eq_5_2_applies_each_term_only_to_its_half():
    x, t = torch.randn(2, 4, 3, 8), torch.full((2,), 0.5)
    text = lambda v: {"text": torch.full((2, 1), float(v))}  # noqa: E731
    den = composed_pair_denoiser(_ConstNet(), text(1), text(2), text(3), {"text": torch.zeros(1, 1)}, (3, 8))
    out = den(x, t)
    assert den.last_evaluations == 4, "three CFG terms share the empty-prompt pass: 4 evaluations in one call"
    den.share_passes = False
    assert torch.equal(den(x, t), out)
    # each CFG term: 0 + 7.5 (v - 0); left = 0.1*7.5*1 + 0.9*7.5*2, right = 0.1*7.5*1 + 0.9*7.5*3
    assert torch.allclose(out[..., :4], torch.full_like(out[..., :4], 0.75 + 13.5))
    assert torch.allclose(out[..., 4:], torch.full_like(out[..., 4:], 0.75 + 20.25))
    other = composed_pair_denoiser(_ConstNet(), text(1), text(2), text(-9), {"text": torch.zeros(1, 1)}, (3, 8))(x, t)
    assert torch.equal(other[..., :4], out[..., :4]) and not torch.equal(other[..., 4:], out[..., 4:])
    m_a, m_b = half_masks(3, 8)
    assert m_a[..., :4].eq(1).all() and m_a[..., 4:].eq(0).all() and torch.equal(m_a + m_b, torch.ones_like(m_a))


class _ThreeCondNet:
    """An interacting function of three conditions; counts calls and the batch each call sees."""

    def __init__(self):
        self.calls, self.batches = 0, []

    def __call__(self, x, t, cond):
        self.calls += 1
        self.batches.append(x.shape[0])
        im, sp, tx = (cond[k].reshape(-1, 1, 1, 1) for k in ("image", "spatial", "text"))
        return torch.tanh(x) * (1 + im) + 2 * sp + 3 * tx + im * sp * tx


def _nested(net, scales):
    cond = {"image": torch.tensor([0.7, -0.2]), "spatial": torch.tensor([0.3, 0.9]), "text": torch.tensor([-0.5, 0.4])}
    null = {k: torch.zeros(1) for k in cond}
    return ClassifierFreeGuidance(net, "epsilon", cond=cond, null_cond=null, scale=scales, mode="nested",
                                  order=["image", "spatial", "text"]), cond, null


def test_nested_three_condition_cfg_scales_one_and_zero():
    x, t = torch.randn(2, 4, 3, 3), torch.full((2,), 0.4)
    net = _ThreeCondNet()
    den, cond, null = _nested(net, {"image": 1.0, "spatial": 1.0, "text": 1.0})
    assert torch.allclose(den(x, t), net(x, t, cond), atol=1e-6)
    e = lambda keys: net(x, t, {k: (cond[k] if k in keys else null[k].expand(2)) for k in cond})  # noqa: E731
    e0, e1, e2, e3 = e([]), e(["image"]), e(["image", "spatial"]), e(["image", "spatial", "text"])
    den0, _, _ = _nested(net, {"image": 3.0, "spatial": 3.0, "text": 0.0})
    assert torch.allclose(den0(x, t), e0 + 3 * (e1 - e0) + 3 * (e2 - e1), atol=1e-5)  # the text term is gone
    full, _, _ = _nested(net, {"image": 3.0, "spatial": 3.0, "text": 5.0})
    net.calls, net.batches = 0, []
    out = full(x, t)
    assert net.calls == 1 and net.batches == [4 * 2], "4 evaluations batched into one network call"
    assert torch.allclose(out, e0 + 3 * (e1 - e0) + 3 * (e2 - e1) + 5 * (e3 - e2), atol=1e-5)


def test_mcdm_step_costs_four_evaluations_in_one_call(mcdm, batch):
    x_a = batch["x_A"]
    null = mcdm.null_conditions(x_a)
    den = mcdm.guided_denoiser(mcdm.conditions(x_a, batch["p_b"]), null)
    seen = []
    handle = mcdm.network.unet.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    try:
        den(torch.randn(2, *mcdm.sample_shape), torch.full((2,), 0.5))
    finally:
        handle.remove()
    assert seen == [8] and mcdm.nfe_per_step(masked=False) == 4
    cond_b = mcdm.conditions(x_a, batch["p_b"])
    cond_a = {**cond_b, "text": mcdm.text_encoder(list(batch["p_a"]))}
    masked = mcdm.edit_denoiser(cond_a, cond_b, null, torch.rand(2, 1, 8, 8))
    seen.clear()
    handle = mcdm.network.unet.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    try:
        x, t = torch.randn(2, *mcdm.sample_shape), torch.full((2,), 0.5)
        shared = masked(x, t)
    finally:
        handle.remove()
    # p_a and p_b share the null / image / image+spatial passes: 5 evaluations, one call
    assert seen == [10] and mcdm.nfe_per_step(masked=True) == 5 and masked.last_evaluations == 5
    masked.share_passes = False
    assert torch.allclose(masked(x, t), shared, atol=1e-5), "sharing passes changes nothing but the cost"


def test_zero_initialised_conv_in_keeps_pretrained_output(tmp_path):
    from diffusers import UNet2DConditionModel

    from lightning_modules.components.sd_parts import build_unet
    from lightning_modules.portrait_editing import MCDMNetwork

    torch.manual_seed(1)
    UNet2DConditionModel.from_config(UNET).save_pretrained(tmp_path / "unet")  # the real diffusers layout
    pristine = build_unet(str(tmp_path), None, "model.init_args.sd_path").eval()
    net = MCDMNetwork(build_unet(str(tmp_path), None, "model.init_args.sd_path"), None, use_spatial=True).eval()
    assert net.unet.conv_in.in_channels == 8 and net.unet.config.in_channels == 8
    assert net.unet.conv_in.weight[:, 4:].abs().sum() == 0
    z, c_s, k = torch.randn(2, 4, 8, 8), 3 * torch.randn(2, 4, 8, 8), torch.tensor([10.0, 700.0])
    text = torch.randn(2, 5, 32)
    with torch.no_grad():
        expected = pristine(z, k, encoder_hidden_states=text).sample
        got = net(z, k, {"spatial": c_s, "text": text})
    assert torch.allclose(got, expected, atol=1e-5)


def test_adapter_at_identity_init_passes_clip_tokens_through():
    adapter = ImageEmbedAdapter(latent_channels=4, latent_size=8, clip_tokens=17, clip_dim=32, dim=32)
    clip = torch.randn(2, 17, 32)
    out = adapter(torch.randn(2, 4, 8, 8) * 5, clip)
    assert torch.allclose(out, clip, atol=1e-6)
    with pytest.raises(ValueError, match="latent_size"):
        adapter(torch.randn(2, 4, 6, 6), clip)


def test_identity_tokens_land_before_the_gender_word():
    from lightning_modules.components.sd_parts import TextEncoder
    from lightning_modules.portrait_editing.identity import gender_token_ids

    emb = torch.arange(2 * 6 * 1, dtype=torch.float32).reshape(2, 6, 1).expand(2, 6, 3).contiguous()
    ids = torch.tensor([[0, 5, 9, 7, 1, 1], [0, 9, 3, 4, 1, 1]])
    new = -torch.ones(2, 2, 3)
    out = insert_tokens_before_word(emb, ids, [9], new)
    assert out.shape == emb.shape
    assert torch.equal(out[0, :2], emb[0, :2]) and out[0, 2:4].eq(-1).all() and torch.equal(out[0, 4:], emb[0, 2:4])
    assert out[1, 1:3].eq(-1).all() and torch.equal(out[1, 3], emb[1, 1])
    with pytest.raises(ValueError, match="gender word"):
        insert_tokens_before_word(emb, torch.zeros_like(ids), [9], new)

    torch.manual_seed(0)
    text = TextEncoder(None, TEXT, "model.init_args.sd_path")
    words = gender_token_ids(text)
    encoder = IdentityEncoder(clip_dim=32, word_dim=32, num_words=2, mlp_hidden=16)
    tokens = encoder(torch.randn(1, 17, 32))
    assert tokens.shape == (1, 2, 32)
    plain = encode_with_pseudo_words(text, ["a photo of a woman, santa"], None, words)
    with_id = encode_with_pseudo_words(text, ["a photo of a woman, santa"], tokens, words)
    position = 1 + 4  # BOS, "a photo of a" -> the gender word is token 5
    # causal text attention: everything before the gender word is unchanged, from it on the pseudo-words enter
    assert torch.allclose(with_id[:, :position], plain[:, :position], atol=1e-6)
    assert not torch.allclose(with_id[:, position], plain[:, position])


def test_edit_mask_zero_for_equal_prompts_and_full_mask_equals_unmasked(mcdm, batch):
    x_a = batch["x_A"]
    null = mcdm.null_conditions(x_a)
    cond_b = mcdm.conditions(x_a, batch["p_b"])
    cond_a = {**cond_b, "text": mcdm.text_encoder(list(batch["p_a"]))}
    same = mcdm.edit_mask(x_a, cond_b, cond_b, null)
    assert same.shape == (2, 1, 8, 8) and same.eq(0).all()
    rows = []
    handle = mcdm.network.unet.register_forward_pre_hook(lambda m, args: rows.append(args[0].shape[0]))
    try:
        soft = mcdm.edit_mask(x_a, cond_a, cond_b, null, soft=True)
    finally:
        handle.remove()
    assert rows == [5 * 2] * mcdm.mask_seeds, "per seed: the p_a and p_b steps in one call of 5 evaluations"
    assert soft.max() > 0 and soft.max() <= 1 + 1e-6
    x, t = torch.randn(2, *mcdm.sample_shape), torch.full((2,), 0.6)
    ones = torch.ones(2, 1, 8, 8)
    masked = mcdm.edit_denoiser(cond_a, cond_b, null, ones)(x, t)
    assert torch.allclose(masked, mcdm.edit_denoiser(cond_a, cond_b, null, None)(x, t), atol=1e-6)
    kept = mcdm.edit_denoiser(cond_a, cond_b, null, torch.zeros_like(ones))(x, t)
    assert torch.allclose(kept, mcdm.guided_denoiser(cond_a, null)(x, t), atol=1e-6)


def test_condition_dropout_replaces_a_nonempty_subset(mcdm, batch):
    x_a = batch["x_A"].repeat(8, 1, 1, 1)
    cond = mcdm.conditions(x_a, list(batch["p_b"]) * 8)
    null = mcdm.null_conditions(x_a)
    mcdm.condition_dropout = 0.999
    try:
        dropped = mcdm.drop_conditions(cond, null, torch.Generator().manual_seed(0))
    finally:
        mcdm.condition_dropout = 0.2
    changed = torch.stack([(dropped[k] != cond[k]).flatten(1).any(1) for k in ("spatial", "image", "text")], 1)
    assert changed.any(1).all(), "every dropped row loses at least one condition"
    assert len({tuple(row) for row in changed.tolist()}) > 1, "the dropped subset varies (uniform over the 7)"


def test_tiny_fit_lowers_the_loss(batch):
    torch.manual_seed(0)
    model = tiny_mcdm(identity_swap=0.0, condition_dropout=0.0)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=2e-3)
    assert not any(p.requires_grad for p in model.vae.parameters())
    def loss():
        return model.pair_loss(batch, torch.Generator().manual_seed(3), train=False).mean()
    with torch.no_grad():
        before = float(loss())
    for _ in range(12):
        opt.zero_grad()
        loss().backward()
        opt.step()
    with torch.no_grad():
        after = float(loss())
    assert after < 0.9 * before, (before, after)


def test_training_free_baselines_sdedit_and_diffedit(batch):
    from lightning_modules.portrait_editing import TrainingFreeEditor

    from portrait_editing_helpers import VAE

    torch.manual_seed(0)
    common = dict(sd_path=None, unet_config=UNET, vae_config=VAE, text_encoder_config=TEXT, image_size=16,
                  num_sampling_steps=4, mask_seeds=2)
    sdedit = TrainingFreeEditor(method="sdedit", strength=0.5, **common).eval()
    assert sdedit._start(0.5, 50) == 25 and sdedit._start(0.8, 50) == 10
    out = sdedit.sample_for_batch(batch, generator=torch.Generator().manual_seed(0))
    assert out.shape == batch["x_A"].shape and out.abs().max() <= 1
    diffedit = TrainingFreeEditor(method="diffedit", **common).eval()
    z = diffedit.encode(batch["x_A"])
    same = diffedit.diffedit(batch["x_A"], batch["p_a"], batch["p_a"], 4)  # equal prompts: empty mask, input kept
    assert torch.allclose(same, z, atol=1e-6)
    edited = diffedit.diffedit(batch["x_A"], batch["p_a"], batch["p_b"], 4)
    assert edited.shape == z.shape and torch.isfinite(edited).all()
    with pytest.raises(ValueError, match="method"):
        TrainingFreeEditor(method="p2p", **common)


def test_full_size_mcdm_shapes_on_meta_device():
    """SD-1.5 sizes (512 px, 64x64x4 latents, 768-d context, ViT-B/32's 50 tokens), no memory allocated."""
    from diffusers import UNet2DConditionModel

    from lightning_modules.portrait_editing import MCDMNetwork

    sd15 = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=[320, 640, 1280, 1280],
                down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3, cross_attention_dim=768, attention_head_dim=8)
    with torch.device("meta"):
        net = MCDMNetwork(UNet2DConditionModel.from_config(sd15), ImageEmbedAdapter(4, 64, 50, 768, 768), use_spatial=True)
    assert tuple(net.unet.conv_in.weight.shape) == (320, 8, 3, 3)
    unet_params = sum(p.numel() for p in net.unet.parameters())
    assert 859_000_000 < unet_params < 860_600_000, unet_params  # SD-1.5's 859.5M + 4 x 320 x 9 new conv_in weights
    assert tuple(net.adapter.latent_proj.weight.shape) == (768, 32 * 32) and tuple(net.adapter.mix.weight.shape) == (50, 54)


def test_identity_checkpoint_loads_the_trained_encoder(tmp_path):
    from portrait_editing_helpers import tiny_generator

    torch.manual_seed(0)
    trained = tiny_generator(use_pose=False)
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": {f"network.{k}": v + 1.0 for k, v in trained.network.state_dict().items()}}, ckpt)
    loaded = tiny_generator(use_pose=False, identity_checkpoint=str(ckpt))
    for key, value in trained.network.state_dict().items():
        assert torch.equal(loaded.network.state_dict()[key], value + 1.0), key
    torch.save({"state_dict": {"unet.x": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="identity encoder"):
        tiny_generator(use_pose=False, identity_checkpoint=str(tmp_path / "other.ckpt"))

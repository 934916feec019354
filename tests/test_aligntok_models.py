"""AlignTok (thesis 000, Ch. 7) components: shapes, parameter counts, defining properties.

Random-weight tests: they test the code, not the paper's numbers.
"""
from __future__ import annotations


import pytest
import torch
from torch import nn

from lightning_modules.aligntok.encoder import FoundationEncoder
from lightning_modules.aligntok.lightning_dit import LightningDiT, LightningDiTBlock, apply_rope, rope_2d_angles
from lightning_modules.aligntok.losses import PatchDiscriminator, adaptive_weight
from lightning_modules.aligntok.tokenizer import AlignTokenizer, build_decoder

TINY_ENCODER = {"model_name": "vit_small_patch14_dinov2", "model_kwargs": {"embed_dim": 32, "depth": 1, "num_heads": 2, "img_size": 56}}
TINY_DECODER = {"block_out_channels": [8, 8, 16, 16, 16], "layers_per_block": 1, "norm_num_groups": 4, "attention_levels": 1}


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core runner, 2 threads per process oversubscribe (10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("size", [(64, 64), (64, 96), (256, 256)])
def test_token_grid_is_image_over_16_after_resize_to_multiple_of_14(size):
    encoder = FoundationEncoder(**TINY_ENCODER)
    images = torch.rand(1, 3, *size) * 2 - 1
    pre = encoder.preprocess(images)
    assert pre.shape[-2:] == (size[0] // 16 * 14, size[1] // 16 * 14)  # 256 -> 224
    assert encoder(images).shape == (1, 32, size[0] // 16, size[1] // 16)


def test_register_tokens_are_dropped():
    encoder = FoundationEncoder("vit_small_patch14_reg4_dinov2", model_kwargs={"embed_dim": 32, "depth": 1, "num_heads": 2, "img_size": 56})
    assert encoder.num_prefix_tokens == 5
    assert encoder(torch.zeros(2, 3, 64, 64)).shape == (2, 32, 4, 4)


def test_missing_encoder_weights_name_the_key_and_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="pretrained_path.*huggingface"):
        FoundationEncoder(pretrained_path=str(tmp_path / "nowhere"))


def test_full_size_parameter_counts_on_meta_device():
    with torch.device("meta"):
        decoder = build_decoder(32)
        encoder = FoundationEncoder()
        dit = LightningDiT(size="XL", in_channels=32, num_classes=1000)
        disc = PatchDiscriminator()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert abs(count(decoder) - 41.42e6) < 0.05e6, count(decoder)  # Tables 7.7/7.8: 41.42M
    assert abs(count(encoder) - 304.4e6) < 0.5e6, count(encoder)  # Table 7.6: 304.4M
    assert abs(count(dit) - 673e6) / 673e6 < 0.01, count(dit)  # ~673M (LightningDiT-XL/1)
    adapter = 1024 * 64 + 64 + 64 * 32 + 32
    assert abs(count(decoder) + count(disc) + adapter - 44.25e6) < 0.01e6  # Table 7.6, stage-1 trainable


def test_decoder_upsamples_16x():
    tok = AlignTokenizer(encoder=TINY_ENCODER, adapter_hidden=8, latent_channels=4, decoder=TINY_DECODER)
    z = tok.encode(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert z.shape == (2, 4, 4, 4)
    assert tok.decode(z).shape == (2, 3, 64, 64)


def test_adaln_zero_blocks_are_identity_at_init():
    torch.manual_seed(0)
    block = LightningDiTBlock(64, 4, qk_norm=True)
    x, c = torch.randn(2, 16, 64), torch.randn(2, 64)
    angles = rope_2d_angles(4, 4, 16)
    assert torch.equal(block(x, c, angles), x)
    net = LightningDiT(in_channels=4, input_size=4, hidden_size=64, depth=2, num_heads=4, num_classes=3)
    out = net(torch.randn(2, 4, 4, 4), torch.rand(2), torch.tensor([0, 3]))
    assert torch.count_nonzero(out) == 0  # zero-initialised final layer


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    head_dim = 16
    angles = rope_2d_angles(6, 6, head_dim)
    q, k = torch.randn(head_dim), torch.randn(head_dim)

    def score(p, r):
        qi = apply_rope(q.view(1, 1, 1, -1).expand(1, 1, 36, -1), angles)[0, 0, p[0] * 6 + p[1]]
        kj = apply_rope(k.view(1, 1, 1, -1).expand(1, 1, 36, -1), angles)[0, 0, r[0] * 6 + r[1]]
        return torch.dot(qi, kj)

    base = score((1, 2), (3, 1))
    assert torch.allclose(base, score((2, 3), (4, 2)), atol=1e-5)  # same offset, shifted
    assert torch.allclose(base, score((0, 1), (2, 0)), atol=1e-5)
    assert not torch.allclose(base, score((1, 2), (3, 2)), atol=1e-3)  # other offset
    # norms are preserved (a rotation)
    rotated = apply_rope(q.view(1, 1, 1, -1).expand(1, 1, 36, -1), angles)
    assert torch.allclose(rotated.norm(dim=-1), q.norm().expand(1, 1, 36), atol=1e-5)


def test_adaptive_weight_is_the_ratio_of_gradient_norms():
    torch.manual_seed(0)
    layer = nn.Linear(5, 3)
    x = torch.randn(4, 5)
    y = layer(x)
    num = y.pow(2).mean()
    den = (3.0 * y).sin().sum()
    g_num = torch.autograd.grad(num, layer.weight, retain_graph=True)[0]
    g_den = torch.autograd.grad(den, layer.weight, retain_graph=True)[0]
    expected = g_num.norm() / (g_den.norm() + 1e-4)
    got = adaptive_weight(num, den, layer.weight)
    assert torch.allclose(got, expected)
    assert not got.requires_grad
    # by-hand gradient of the mean square: d/dW mean(y^2) = 2/(N) * y^T x
    by_hand = 2.0 / y.numel() * y.detach().T @ x
    assert torch.allclose(g_num, by_hand, atol=1e-6)
    assert adaptive_weight(num, 1e-9 * num, layer.weight, max_weight=50.0) == 50.0  # clamped


@pytest.mark.parametrize("name, prefix, mean", [("vit_large_patch16_siglip_256.v2_webli", 0, 0.5), ("vit_large_patch16_224.mae", 1, 0.485)])
def test_other_encoders_selectable_by_name(name, prefix, mean):
    """SigLIP 2 and MAE (Table 7.2): patch 16 -> no resize, their own normalisation, prefix tokens dropped."""
    encoder = FoundationEncoder(name, model_kwargs={"embed_dim": 32, "depth": 1, "num_heads": 2})
    assert encoder.patch == 16 and encoder.num_prefix_tokens == prefix
    assert encoder.mean[0, 0].item() == pytest.approx(mean)
    assert encoder(torch.zeros(1, 3, 64, 96)).shape == (1, 32, 4, 6)

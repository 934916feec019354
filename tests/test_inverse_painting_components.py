"""Inverse Painting parts (thesis 000, Ch. 6): ReferenceNet attention, g_f, g_t, g_c, dropout, D, stop rule.

Random weights throughout: these tests check the code's defining properties, not the paper's numbers.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention

from inverse_painting_helpers import UNET, renderer
from lightning_modules.components.reference_attention import (
    ReferenceBank,
    ReferenceReadAttnProcessor,
    install_reference_attention,
    self_attention_names,
)
from lightning_modules.inverse_painting import (
    CanvasFeatureEncoder,
    DifferenceMask,
    NeRFPositionalEncoding,
    NextClipGenerator,
    StopCriterion,
    TimeEncoder,
)
from lightning_modules.inverse_painting.encoders import ConvInWithFeatures, widen_conv_in


def test_reference_read_processor_equals_concatenation_formula() -> None:
    torch.manual_seed(0)
    attn = Attention(query_dim=16, heads=2, dim_head=8)
    bank = ReferenceBank()
    x, r = torch.randn(3, 10, 16), torch.randn(3, 7, 16)
    bank.features["a"], bank.mode = r, "read"
    out = ReferenceReadAttnProcessor(bank, "a")(attn, x)
    # literal: softmax(Q(x) [K(x), K(r)]^T / sqrt(d)) [V(x), V(r)] per head, then to_out
    q = attn.to_q(x).view(3, 10, 2, 8).transpose(1, 2)
    kv_in = torch.cat([x, r], dim=1)
    k = attn.to_k(kv_in).view(3, 17, 2, 8).transpose(1, 2)
    v = attn.to_v(kv_in).view(3, 17, 2, 8).transpose(1, 2)
    weights = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, dim=-1)
    expected = attn.to_out[0]((weights @ v).transpose(1, 2).reshape(3, 10, 16))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    bank.mode = "off"  # off: plain self-attention, the reference is ignored
    plain = ReferenceReadAttnProcessor(bank, "a")(attn, x)
    assert not torch.allclose(plain, out, atol=1e-4)


def _unet_pair() -> tuple[UNet2DConditionModel, UNet2DConditionModel]:
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(UNET)
    return unet, copy.deepcopy(unet)


def test_referencenet_in_unet_equals_literal_token_concatenation() -> None:
    outputs = {}
    z, ref = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    ctx, t = torch.randn(2, 3, 16), torch.tensor([10.0, 500.0])
    for literal in (False, True):
        unet, refnet = _unet_pair()
        bank = ReferenceBank()
        names = install_reference_attention(refnet, unet, bank, literal=literal)
        assert names == self_attention_names(unet) and len(names) == 7  # every attn1: 2 down + 1 mid + 4 up
        bank.mode = "write"
        refnet(ref, torch.zeros(2), encoder_hidden_states=ctx[:, :1])
        assert set(bank.features) == set(names)
        bank.mode = "read"
        outputs[literal] = unet(z, t, encoder_hidden_states=ctx).sample
        # CFG stacks passes: a 2x batch reads the tiled reference
        doubled = unet(torch.cat([z, z]), torch.cat([t, t]), encoder_hidden_states=torch.cat([ctx, ctx])).sample
        torch.testing.assert_close(doubled[:2], outputs[literal], atol=1e-5, rtol=1e-4)
        bank.mode = "off"
        outputs[(literal, "off")] = unet(z, t, encoder_hidden_states=ctx).sample
    torch.testing.assert_close(outputs[False], outputs[True], atol=1e-5, rtol=1e-4)
    plain, _ = _unet_pair()
    torch.testing.assert_close(outputs[(False, "off")], plain(z, t, encoder_hidden_states=ctx).sample, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(outputs[False], outputs[(False, "off")], atol=1e-4), "the reference must change the output"


def test_canvas_encoder_has_nine_convs_and_reaches_latent_resolution() -> None:
    for mode, out in (("add", 320), ("concat", 4)):
        enc = CanvasFeatureEncoder(4, out, downsample=8, mode=mode)
        assert enc.num_conv_layers == 9
        assert enc(torch.randn(1, 4, 64, 48)).shape == (1, out, 8, 6)
    assert CanvasFeatureEncoder(3, 8, downsample=2)(torch.randn(1, 3, 16, 16)).shape == (1, 8, 8, 8)


def test_zero_initialised_canvas_paths_leave_the_unet_unchanged() -> None:
    unet, reference = _unet_pair()
    z, t, ctx = torch.randn(2, 4, 8, 8), torch.tensor([3.0, 700.0]), torch.randn(2, 2, 16)
    expected = reference(z, t, encoder_hidden_states=ctx).sample
    canvas = torch.randn(2, 4, 16, 16)
    # "add" (code): zero 1x1 output conv -> nothing added after conv_in, even with a scale of 2
    enc = CanvasFeatureEncoder(4, 8, downsample=2, mode="add")
    assert float(enc.scale.detach()) == 2.0 and enc(canvas).abs().max() == 0
    unet.conv_in = ConvInWithFeatures(unet.conv_in)
    unet.conv_in.extra = enc(canvas)
    torch.testing.assert_close(unet(z, t, encoder_hidden_states=ctx).sample, expected)
    # "concat" (thesis): widened conv_in with zero weights for the new channels
    unet2, _ = _unet_pair()
    widen_conv_in(unet2, 4)
    assert unet2.conv_in.in_channels == 8
    features = CanvasFeatureEncoder(4, 4, downsample=2, mode="concat")(canvas)
    assert features.abs().max() > 0
    torch.testing.assert_close(unet2(torch.cat([z, features], 1), t, encoder_hidden_states=ctx).sample, expected)
    # once trained, the canvas path matters
    with torch.no_grad():
        enc.out.weight.normal_()
    unet.conv_in.extra = enc(canvas)
    assert not torch.allclose(unet(z, t, encoder_hidden_states=ctx).sample, expected)


@pytest.mark.parametrize("mode", ["add", "concat"])
def test_renderer_canvas_mode_flag(mode: str) -> None:
    model = renderer(canvas_mode=mode)
    assert model.network.canvas_mode == mode
    conv_in = model.network.unet.conv_in
    assert isinstance(conv_in, ConvInWithFeatures) == (mode == "add")
    assert model.network.canvas_encoder.out.in_channels == 128


def test_time_encoder_shapes_and_positional_encoding() -> None:
    pe = NeRFPositionalEncoding(10)
    x = torch.tensor([0.0, 0.2, 0.5])
    enc = pe(x)
    assert pe.out_dim == 21 and enc.shape == (3, 21)
    torch.testing.assert_close(enc[:, 0], x)
    torch.testing.assert_close(enc[:, 1], torch.sin(torch.pi * x))
    torch.testing.assert_close(enc[:, 2], torch.cos(torch.pi * x))
    torch.testing.assert_close(enc[:, 19], torch.sin(2.0**9 * torch.pi * x))
    g_t = TimeEncoder(768)
    linears = [m for m in g_t.mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(21, 256), (256, 512), (512, 768)]
    assert g_t(torch.tensor([20.0, 5.0])).shape == (2, 1, 768)
    g_c = NextClipGenerator(768, (768, 384), 768)
    dims = [(m.in_features, m.out_features) for m in g_c.mlp if isinstance(m, torch.nn.Linear)]
    assert dims == [(1536, 768), (768, 384), (384, 768)]
    assert g_c(torch.randn(2, 768), torch.randn(2, 768)).shape == (2, 1, 768)


def test_each_condition_is_dropped_ten_percent_independently() -> None:
    model = renderer()
    n = 20000
    cond = {k: torch.ones(n, 3, 2) for k in ("text", "mask", "time", "clip")} | {"canvas": torch.ones(n, 3, 2, 2)}
    dropped = model.drop_conditions(cond, torch.Generator().manual_seed(0))
    assert torch.equal(dropped["canvas"], cond["canvas"]), "the canvas is never dropped"
    flags = torch.stack([(dropped[k].flatten(1).sum(1) == 0).float() for k in ("text", "mask", "time", "clip")], 1)
    rates = flags.mean(0)
    assert torch.all((rates - 0.1).abs() < 0.01), rates
    both = (flags[:, 0] * flags[:, 1]).mean()
    assert abs(float(both) - 0.01) < 0.004, "drops are independent across conditions"
    assert not torch.equal(flags[:, 0], flags[:, 1])


def test_difference_mask_on_a_hand_made_case() -> None:
    a = torch.ones(1, 3, 8, 8)  # white canvas
    b = a.clone()
    b[:, :, 2:5, 3:7] = -1.0  # a black stroke: distance 1 in [0, 1] units
    b[:, 0, 0, 0] = 0.8  # a faint change: distance (0.2 / 2) / 3 = 0.033 < alpha
    mask = DifferenceMask(alpha=0.2, distance="l1")(a, b)
    expected = torch.zeros(1, 1, 8, 8)
    expected[:, :, 2:5, 3:7] = 1
    assert torch.equal(mask, expected)
    assert DifferenceMask(alpha=0.01, distance="l1")(a, b)[0, 0, 0, 0] == 1
    lpips_d = DifferenceMask(alpha=0.2, distance="lpips")  # random backbone: code path only
    white = torch.ones(1, 3, 32, 32)
    assert lpips_d(white, white).sum() == 0
    assert lpips_d(white, -white).shape == (1, 1, 32, 32)


def test_stop_criterion_needs_two_consecutive_small_updates() -> None:
    changes = iter([0.5, 1e-4, 0.2, 5e-4, 9e-4, 0.3])
    stop = StopCriterion(lambda a, b: torch.tensor([next(changes)]), eps=1e-3)
    x = torch.zeros(1)
    results = [stop.update(x, x) for _ in range(5)]
    assert results == [False, False, False, False, True]
    assert stop.history == pytest.approx([0.5, 1e-4, 0.2, 5e-4, 9e-4])


def test_full_size_renderer_network_on_the_meta_device() -> None:
    """SD-1.5 UNet + ReferenceNet + g_f (thesis concat form) + g_t + g_c at 512 px, no memory allocated."""
    from lightning_modules.inverse_painting.renderer import RendererNetwork

    sd15 = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=[320, 640, 1280, 1280],
                down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"], up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
                cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32)
    with torch.device("meta"):
        unet, reference = UNet2DConditionModel.from_config(sd15), UNet2DConditionModel.from_config(sd15)
        net = RendererNetwork(unet, reference, canvas_channels=4, downsample=8, canvas_mode="concat", clip_dim=768)
        net.write_reference(torch.zeros(1, 4, 64, 64), torch.zeros(1, 768))
        context = torch.zeros(1, 77 + 1 + 1, 768)  # text + next-CLIP + time tokens
        out = net(torch.zeros(1, 4, 64, 64), torch.zeros(1), torch.zeros(1, 4, 512, 512), context)
    assert out.shape == (1, 4, 64, 64) and out.device.type == "meta"
    assert len(net.bank.features) == 16  # every self-attention of SD-1.5 gets a reference
    counts = {name: sum(p.numel() for p in getattr(net, name).parameters()) for name in ("unet", "reference_net", "time_encoder", "clip_generator")}
    assert counts["reference_net"] == 859_520_964  # the SD-1.5 UNet
    assert counts["unet"] == 859_520_964 + 320 * 4 * 9  # + the widened conv_in (4 more input channels)
    assert counts["time_encoder"] == 21 * 256 + 256 + 256 * 512 + 512 + 512 * 768 + 768
    assert counts["clip_generator"] == 1536 * 768 + 768 + 768 * 384 + 384 + 384 * 768 + 768
    assert net.canvas_encoder.num_conv_layers == 9


def test_released_mask_generator_imports_exactly_from_the_official_layout(tmp_path) -> None:
    """A synthetic checkpoint with the official key names and shapes (RP_state_dict: a diffusers UNet with 9 in /
    1 out channels; PE_state_dict: fc1/fc2/fc3) loads with nothing missing and reproduces the official forward:
    input [E(cur), E(ref), M_d], no timestep embedding, tokens [PE, text]. Random weights: tests code, not numbers."""
    from diffusers import UNet2DConditionModel

    from lightning_modules.components.released_weights import ReleasedWeightsError
    from lightning_modules.inverse_painting.common import downsample_mask
    from inverse_painting_helpers import mask_generator

    torch.manual_seed(0)
    official_unet = UNet2DConditionModel(**{**UNET, "in_channels": 9, "out_channels": 1})
    fc = [torch.nn.Linear(21, 8), torch.nn.Linear(8, 16), torch.nn.Linear(16, 16)]
    file = tmp_path / "checkpoint-global_step-80000.ckpt"
    torch.save({"RP_state_dict": official_unet.state_dict(), "global_step": 80000,
                "PE_state_dict": {f"fc{i + 1}.{k}": v for i, layer in enumerate(fc) for k, v in layer.state_dict().items()}}, file)
    with pytest.raises(ReleasedWeightsError, match="time_encoding: official, unet_time_input: false"):
        mask_generator(released_checkpoint=str(file))
    ours = mask_generator(released_checkpoint=str(file), time_encoding="official", unet_time_input=False).eval()
    assert ours.released_checkpoint == str(file) and not ours.uses_random_weights and ours.loads_own_weights
    assert torch.equal(ours.time_encoder.mlp[4].weight, fc[2].weight)

    target, canvas = torch.rand(1, 3, 16, 16) * 2 - 1, torch.ones(1, 3, 16, 16)
    unfinished, delta, text = (target.mean(1, keepdim=True) > 0).float(), torch.tensor([23.0]), ["mountain"]
    with torch.no_grad():
        mine = ours.logits(target, canvas, unfinished, delta, text)
        zt, zc = ours.encode(target), ours.encode(canvas)
        x = torch.tensor([[min(1.0, round(23.0 / 5) * 5 / 100) * 2 - 1]])  # the official PE_type 'abs' map
        angles = x * (2.0 ** torch.arange(10.0)) * math.pi
        pe = torch.cat([x, torch.stack([angles.sin(), angles.cos()], -1).flatten(1)], 1)
        token = fc[2](torch.relu(fc[1](torch.relu(fc[0](pe)))))[:, None]
        hooks = [m.register_forward_hook(lambda m, i, o: torch.zeros_like(o)) for n, m in official_unet.named_modules() if n.endswith("time_emb_proj")]
        reference = official_unet(torch.cat([zc, zt, downsample_mask(unfinished, zt.shape[-2:])], 1), 0,
                                  encoder_hidden_states=torch.cat([token, ours.text_encoder(text)], 1)).sample
        for hook in hooks:
            hook.remove()
    assert torch.allclose(mine, reference, atol=1e-5), (mine - reference).abs().max()
    wrong = {"RP_state_dict." + k: v for k, v in UNet2DConditionModel(**{**UNET, "in_channels": 8}).state_dict().items()}
    with pytest.raises(ReleasedWeightsError, match="other shapes.*conv_in"):
        from lightning_modules.inverse_painting.released import import_released_mask_generator

        import_released_mask_generator(ours, "fake.ckpt", state=wrong)


def test_ours_te_mask_generator_has_no_time_token() -> None:
    """Table 6.1 Ours-TE drops Δt everywhere: the mask generator has no g_t, its output ignores Δt (code test)."""
    import yaml

    from inverse_painting_helpers import mask_generator, pair_batch

    torch.manual_seed(0)
    model = mask_generator(use_time=False).eval()
    assert model.time_encoder is None and not any("time_encoder" in n for n, _ in model.named_parameters())
    batch = pair_batch(2)
    with torch.no_grad():
        a = model.logits(batch["target"], batch["canvas"], batch["unfinished"], torch.tensor([5.0, 5.0]), batch["text"])
        b = model.logits(batch["target"], batch["canvas"], batch["unfinished"], torch.tensor([90.0, 90.0]), batch["text"])
    assert torch.equal(a, b)
    timed = mask_generator().eval()
    with torch.no_grad():
        c = timed.logits(batch["target"], batch["canvas"], batch["unfinished"], torch.tensor([5.0, 5.0]), batch["text"])
        d = timed.logits(batch["target"], batch["canvas"], batch["unfinished"], torch.tensor([90.0, 90.0]), batch["text"])
    assert not torch.equal(c, d), "with g_t the interval changes the mask"
    from pathlib import Path

    overlay_file = Path(__file__).resolve().parents[1] / "configs" / "inverse_painting_ablations" / "ours_te.yaml"
    overlay = yaml.safe_load(overlay_file.read_text())["model"]["init_args"]
    assert overlay["renderer"]["init_args"]["use_time"] is False and overlay["mask_generator"]["init_args"]["use_time"] is False

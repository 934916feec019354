"""LFG-Diffusion networks (thesis 001 Ch. 7): ADM UNet sizes on the meta device, the encoder, DLVF, losses."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from diffusion.learned_variance import learned_log_variance, posterior_log_variance_range, vlb_terms
from diffusion.paths import DiscreteDDPMPath
from diffusion.weighting import P2Weighting
from lightning_modules.components.adm_unet import ADMUNet, load_adm_weights
from lightning_modules.lfg_shadow import LFGNetwork, LFGShadowRemoval
from lightning_modules.lfg_shadow.networks import PAPER_DENOISER

TINY_DEN = dict(model_channels=16, num_res_blocks=1, attention_ds=(2,), channel_mult=(1, 2), num_head_channels=8,
                learn_sigma=True, norm_num_groups=8)
TINY_ENC = dict(model_channels=8, num_res_blocks=1, attention_ds=(2,), channel_mult=(1, 2), num_heads=1,
                num_head_channels=-1, norm_num_groups=4)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _tiny(**kw) -> LFGNetwork:
    return LFGNetwork(denoiser=TINY_DEN, encoder=TINY_ENC, dlvf_pool_size=4, **kw)


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    """Replace ADM's zero-initialised layers by random values so outputs depend on every path."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def test_full_size_shapes_and_parameter_counts_on_meta() -> None:
    with torch.device("meta"):
        net = LFGNetwork()
        y = torch.empty(2, 3, 256, 256)
        m = torch.empty(2, 1, 256, 256)
        latent = net.encode(y, m)
        out = net(y, torch.zeros(2), y, m, latent, return_variance=True)
    assert tuple(latent.shape) == (2, 1, 256, 256), "E_theta: one channel at full resolution (Fig. 7.5)"
    assert tuple(out.shape) == (2, 6, 256, 256), "learned sigma: epsilon and v"
    assert net.denoiser.in_channels == 8, "[y_t, x, m, E(x, m)] = 3 + 3 + 1 + 1"
    assert net.encoder.unet.in_channels == 4
    c = 4 * 192
    assert _count(net.dlvf) == 64 * 64 * 3 * c + c + c * c + c
    total = _count(net)
    assert total == _count(net.denoiser) + _count(net.encoder) + _count(net.dlvf)
    # the thesis reports 82.6M (Table 7.5); these [code] sizes give 268.7M, recorded in docs/lfg_shadow.md


def test_denoiser_parameter_count_equals_diffusers_unet2d_at_full_size() -> None:
    """Peer check at the LFG size: diffusers' UNet2DModel with the ADM layout has exactly our count; without
    ``attn_norm_num_groups`` its mid-block attention lacks ADM's GroupNorm (2 * C_mid parameters)."""
    from diffusers import UNet2DModel

    mult, ds, mc = PAPER_DENOISER["channel_mult"], PAPER_DENOISER["attention_ds"], PAPER_DENOISER["model_channels"]
    levels = [2**i for i in range(len(mult))]
    down = ["AttnDownBlock2D" if d in ds else "ResnetDownsampleBlock2D" for d in levels]
    up = ["AttnUpBlock2D" if d in ds else "ResnetUpsampleBlock2D" for d in levels[::-1]]
    common = dict(sample_size=256, in_channels=8, out_channels=6, block_out_channels=[mc * m for m in mult],
                  down_block_types=down, up_block_types=up, layers_per_block=2, resnet_time_scale_shift="scale_shift",
                  downsample_type="resnet", upsample_type="resnet", attention_head_dim=64, norm_num_groups=32)
    with torch.device("meta"):
        peer = UNet2DModel(**common, attn_norm_num_groups=32)
        peer_default = UNet2DModel(**common)
        ours = ADMUNet(in_channels=8, out_channels=3, **PAPER_DENOISER)
    assert _count(ours) == _count(peer)
    assert _count(ours) - _count(peer_default) == 2 * mc * mult[-1]


def test_encoder_has_no_timestep_input() -> None:
    net = _tiny()
    names = [n for n, _ in net.encoder.named_parameters()]
    assert not any("time_embed" in n or "emb_layers" in n for n in names)
    x, m = torch.randn(2, 3, 8, 8), torch.ones(2, 1, 8, 8)
    assert net.encode(x, m).shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="no timestep embedding"):
        net.encoder.unet(torch.cat([x, m], 1), torch.zeros(2))
    assert any("emb_layers" in n for n, _ in net.denoiser.named_parameters()), "epsilon_theta keeps its timestep path"


def test_dlvf_with_zero_output_leaves_the_network_unchanged() -> None:
    with_dlvf, without = _tiny(use_dlvf=True), _tiny(use_dlvf=False)
    _randomise(with_dlvf)
    without.load_state_dict({k: v for k, v in with_dlvf.state_dict().items() if not k.startswith("dlvf.")})
    y, x, m = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8), (torch.rand(2, 1, 8, 8) > 0.5).float()
    t = torch.tensor([3.0, 700.0])
    assert not torch.allclose(with_dlvf(y, t, x, m), without(y, t, x, m)), "a random DLVF changes the output"
    with torch.no_grad():
        with_dlvf.dlvf.mlp[-1].weight.zero_()
        with_dlvf.dlvf.mlp[-1].bias.zero_()
    torch.testing.assert_close(with_dlvf(y, t, x, m), without(y, t, x, m), rtol=0, atol=0)


def test_dlvf_acts_only_through_the_timestep_embedding() -> None:
    """DLVF(y_t) added to time_embed's output == the DLVF network (Eq. 7.14 realised as [code] does)."""
    with_dlvf, without = _tiny(use_dlvf=True), _tiny(use_dlvf=False)
    _randomise(with_dlvf, seed=1)
    without.load_state_dict({k: v for k, v in with_dlvf.state_dict().items() if not k.startswith("dlvf.")})
    y, x, m = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8), torch.zeros(2, 1, 8, 8)
    t = torch.tensor([10.0, 500.0])
    shift = with_dlvf.dlvf(y).detach()
    handle = without.denoiser.time_embed.register_forward_hook(lambda mod, inp, out: out + shift)
    try:
        torch.testing.assert_close(without(y, t, x, m), with_dlvf(y, t, x, m))
    finally:
        handle.remove()


def test_adm_layout_zero_output_at_init_and_checkpoint_round_trip(tmp_path: Path) -> None:
    net = ADMUNet(in_channels=3, out_channels=3, **{**TINY_DEN, "learn_sigma": True})
    out = net(torch.randn(1, 3, 8, 8), torch.tensor([5]))
    assert out.shape == (1, 6, 8, 8) and torch.count_nonzero(out) == 0, "ADM zero-initialises the output conv"
    keys = set(net.state_dict())
    for key in ("time_embed.0.weight", "input_blocks.0.0.weight", "input_blocks.1.0.in_layers.2.weight",
                "input_blocks.1.0.emb_layers.1.weight", "middle_block.1.qkv.weight", "output_blocks.0.0.skip_connection.weight",
                "out.2.weight"):
        assert key in keys, f"guided-diffusion key name {key}"
    _randomise(net)
    torch.save(net.state_dict(), tmp_path / "adm.pt")
    fresh = load_adm_weights(ADMUNet(in_channels=3, out_channels=3, **{**TINY_DEN, "learn_sigma": True}), tmp_path / "adm.pt")
    x, t = torch.randn(1, 3, 8, 8), torch.tensor([9])
    torch.testing.assert_close(fresh(x, t), net(x, t))
    with pytest.raises(ValueError, match="missing"):
        load_adm_weights(ADMUNet(in_channels=3, out_channels=3, **{**TINY_DEN, "num_res_blocks": 2}), tmp_path / "adm.pt")


def _module(stage: str = "finetune", **kw) -> LFGShadowRemoval:
    return LFGShadowRemoval(_tiny(**kw.pop("net", {})), stage=stage, image_size=8, hybrid_loss=True, p2_gamma=1.0, **kw)


def test_invariant_loss_is_zero_when_shadow_and_clean_coincide_with_an_empty_mask() -> None:
    module = _module()
    _randomise(module.network)
    y0 = torch.rand(3, 3, 8, 8) * 2 - 1
    batch = {"image": y0, "shadow": y0.clone(), "mask": torch.zeros(3, 1, 8, 8)}
    terms = module.losses(batch, torch.Generator().manual_seed(0))
    assert torch.equal(terms["invariant"], torch.zeros(3))
    shadowed = {**batch, "shadow": y0 * 0.5, "mask": torch.ones(3, 1, 8, 8)}
    assert bool((module.losses(shadowed, torch.Generator().manual_seed(0))["invariant"] > 0).all())
    no_inv = _module(net={"guidance": "latent_no_inv"})
    assert "invariant" not in no_inv.losses(shadowed)


def test_pretraining_conditions_on_the_clean_image() -> None:
    module = _module(stage="pretrain")
    _randomise(module.network)
    y0 = torch.rand(2, 3, 8, 8) * 2 - 1
    mask = torch.ones(2, 1, 8, 8)
    a = module.losses({"image": y0, "shadow": torch.zeros_like(y0), "mask": mask}, torch.Generator().manual_seed(3))
    b = module.losses({"image": y0, "shadow": torch.ones_like(y0), "mask": mask}, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a["total"], b["total"]), "Eq. 7.12 never reads the shadow image"
    assert "invariant" not in a


def test_learned_variance_bounds_and_p2_weight() -> None:
    path = DiscreteDDPMPath("linear", 1e-4, 0.02, 1000)
    k = torch.tensor([1, 500, 999])
    like = torch.zeros(3, 1)
    low, high = posterior_log_variance_range(path, k, like)
    torch.testing.assert_close(learned_log_variance(path, k, -torch.ones(3, 1)), low)
    torch.testing.assert_close(learned_log_variance(path, k, torch.ones(3, 1)), high)
    torch.testing.assert_close(high.flatten(), torch.log(path.betas[k]).float())
    x0 = torch.rand(3, 3, 4, 4) * 2 - 1
    noise = torch.randn_like(x0)
    t = path.t_from_timestep(k.float())
    x_t = path.add_noise(x0, noise, t)
    exact = vlb_terms(path, x0, x_t, k, noise, torch.ones(3, 3, 4, 4))
    # with the true noise the means agree; what is left is the variance mismatch (>= 0), ~0 where beta ~ beta_tilde
    assert bool((exact >= -1e-6).all()) and float(exact[2]) < 1e-3
    w = P2Weighting(1.0, 1.0)(t, path)
    snr = path.alphas_cumprod[k] / (1 - path.alphas_cumprod[k])
    torch.testing.assert_close(w, (1.0 / (1.0 + snr)).to(w.dtype), rtol=1e-4, atol=1e-6)


def test_sampling_reuses_the_encoder_and_counts_nfe() -> None:
    module = _module()
    calls = {"enc": 0, "den": 0}
    module.network.encoder.register_forward_hook(lambda *a: calls.__setitem__("enc", calls["enc"] + 1))
    module.network.denoiser.register_forward_hook(lambda *a: calls.__setitem__("den", calls["den"] + 1))
    out = module.remove_shadows(torch.rand(2, 3, 8, 8) * 2 - 1, torch.ones(2, 1, 8, 8), num_steps=5, sampler="ddim")
    assert out.shape == (2, 3, 8, 8)
    assert calls == {"enc": 1, "den": 5} and module.nfe(5, "ddim") == 5
    out = module.remove_shadows(torch.rand(1, 3, 8, 8) * 2 - 1, torch.ones(1, 1, 8, 8), num_steps=3, sampler="dpm_solver++")
    assert torch.isfinite(out).all() and calls["den"] == 8, "DPM-Solver++ (Table 7.5's accelerated solver) from the core"


def test_bad_module_settings_fail_clearly() -> None:
    with pytest.raises(ValueError, match="stage"):
        _module(stage="warmup")
    with pytest.raises(ValueError, match="guidance"):
        _tiny(guidance="colour_map")
    with pytest.raises(ValueError, match="learn_sigma"):
        LFGShadowRemoval(LFGNetwork(denoiser={**TINY_DEN, "learn_sigma": False}, encoder=TINY_ENC, dlvf_pool_size=4),
                         image_size=8, hybrid_loss=True)
    with pytest.raises(FileNotFoundError, match="init_weights"):
        _module(init_weights="/nonexistent/ema.safetensors").load_weights("/nonexistent/ema.safetensors")


def test_learned_range_variance_matches_diffusers_ddpm_scheduler() -> None:
    """Peer check: diffusers' DDPMScheduler(variance_type='learned_range') interpolates the same log variances."""
    from diffusers import DDPMScheduler

    path = DiscreteDDPMPath("linear", 1e-4, 0.02, 1000)
    peer = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                         variance_type="learned_range")
    peer.set_timesteps(1000)
    for k, v in ((1, -0.3), (10, 0.7), (500, -1.0), (999, 0.2)):
        ref = peer._get_variance(k, predicted_variance=torch.tensor([[v]]))
        ours = learned_log_variance(path, torch.tensor([k]), torch.tensor([[v]], dtype=torch.float64))
        assert float(ours) == pytest.approx(float(ref), rel=1e-4)  # diffusers works in float32


def _adm_to_diffusers(state: dict, levels: int, nrb: int, attention_levels: set) -> dict:
    """Rename an ADMUNet state dict to diffusers' UNet2DModel names (test-only mapping)."""
    res = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj", "out_layers.0": "norm2",
           "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
    out: dict = {}

    def put_res(src: str, dst: str) -> None:
        for a, b in res.items():
            for kind in ("weight", "bias"):
                if f"{src}.{a}.{kind}" in state:
                    out[f"{dst}.{b}.{kind}"] = state[f"{src}.{a}.{kind}"]

    def put_attn(src: str, dst: str) -> None:
        c = state[f"{src}.norm.weight"].shape[0]
        out[f"{dst}.group_norm.weight"], out[f"{dst}.group_norm.bias"] = state[f"{src}.norm.weight"], state[f"{src}.norm.bias"]
        for name, w, b in zip(("to_q", "to_k", "to_v"), state[f"{src}.qkv.weight"][..., 0].split(c), state[f"{src}.qkv.bias"].split(c)):
            out[f"{dst}.{name}.weight"], out[f"{dst}.{name}.bias"] = w, b
        out[f"{dst}.to_out.0.weight"], out[f"{dst}.to_out.0.bias"] = state[f"{src}.proj_out.weight"][..., 0], state[f"{src}.proj_out.bias"]

    for a, b in (("time_embed.0", "time_embedding.linear_1"), ("time_embed.2", "time_embedding.linear_2"),
                 ("input_blocks.0.0", "conv_in"), ("out.0", "conv_norm_out"), ("out.2", "conv_out")):
        out[f"{b}.weight"], out[f"{b}.bias"] = state[f"{a}.weight"], state[f"{a}.bias"]
    index = 1
    for level in range(levels):
        for j in range(nrb):
            put_res(f"input_blocks.{index}.0", f"down_blocks.{level}.resnets.{j}")
            if level in attention_levels:
                put_attn(f"input_blocks.{index}.1", f"down_blocks.{level}.attentions.{j}")
            index += 1
        if level != levels - 1:
            put_res(f"input_blocks.{index}.0", f"down_blocks.{level}.downsamplers.0")
            index += 1
    put_res("middle_block.0", "mid_block.resnets.0")
    put_attn("middle_block.1", "mid_block.attentions.0")
    put_res("middle_block.2", "mid_block.resnets.1")
    index = 0
    for up in range(levels):
        level = levels - 1 - up
        for i in range(nrb + 1):
            put_res(f"output_blocks.{index}.0", f"up_blocks.{up}.resnets.{i}")
            pos = 1
            if level in attention_levels:
                put_attn(f"output_blocks.{index}.1", f"up_blocks.{up}.attentions.{i}")
                pos = 2
            if level and i == nrb:
                put_res(f"output_blocks.{index}.{pos}", f"up_blocks.{up}.upsamplers.0")
            index += 1
    return out


def test_adm_unet_equals_diffusers_unet2d_with_the_same_weights() -> None:
    """Peer check of the whole forward: the time-embedded ADMUNet is UNet2DModel(scale_shift, resnet up/down,
    attention norm groups set) under a renaming of its weights."""
    from diffusers import UNet2DModel

    cfg = dict(model_channels=16, num_res_blocks=2, attention_ds=(2,), channel_mult=(1, 2, 2), num_head_channels=8,
               norm_num_groups=8, use_new_attention_order=True, learn_sigma=True)
    ours = ADMUNet(in_channels=8, out_channels=3, **cfg)
    _randomise(ours, seed=4)
    levels = [2**i for i in range(3)]
    attention_levels = {i for i, d in enumerate(levels) if d in cfg["attention_ds"]}
    peer = UNet2DModel(sample_size=8, in_channels=8, out_channels=6, block_out_channels=[16, 32, 32], layers_per_block=2,
                       down_block_types=["AttnDownBlock2D" if i in attention_levels else "ResnetDownsampleBlock2D" for i in range(3)],
                       up_block_types=["AttnUpBlock2D" if 2 - u in attention_levels else "ResnetUpsampleBlock2D" for u in range(3)],
                       resnet_time_scale_shift="scale_shift", downsample_type="resnet", upsample_type="resnet",
                       attention_head_dim=8, norm_num_groups=8, attn_norm_num_groups=8)
    converted = _adm_to_diffusers(ours.state_dict(), 3, 2, attention_levels)
    assert set(converted) == set(peer.state_dict()), sorted(set(peer.state_dict()) ^ set(converted))[:5]
    peer.load_state_dict(converted, strict=True)
    x, t = torch.randn(2, 8, 8, 8), torch.tensor([3, 812])
    torch.testing.assert_close(ours(x, t), peer(x, t).sample, rtol=1e-4, atol=1e-5)


def test_adm_class_labels_and_attention_resolutions() -> None:
    from lightning_modules.components.adm_unet import attention_ds_from_resolutions

    assert attention_ds_from_resolutions(256, (32, 16, 8)) == (8, 16, 32)
    net = ADMUNet(in_channels=3, out_channels=3, **{**TINY_DEN, "learn_sigma": False}, num_classes=4)
    _randomise(net, seed=2)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([5, 5])
    assert not torch.allclose(net(x, t, y=torch.tensor([0, 0])), net(x, t, y=torch.tensor([1, 1])))
    assert "label_emb.weight" in net.state_dict()
    with pytest.raises(ValueError, match="class labels"):
        net(x, t)

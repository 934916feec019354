"""Bi-Noising model parts (thesis 001 Ch. 8): paper-size counts, guided-diffusion prior loading, L_corr, bad input."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightning_modules.bi_noising import BiNoisingRestoration, ConditionalADMUNet, load_prior_weights
from lightning_modules.bi_noising.module import correction_loss
from lightning_modules.components.adm_unet import ADMUNet

FFHQ_256 = dict(model_channels=128, num_res_blocks=1, attention_ds=(16,), channel_mult=(1, 1, 2, 2, 4, 4),
                num_head_channels=64, use_scale_shift_norm=True, resblock_updown=True)
TINY = dict(model_channels=16, num_res_blocks=1, attention_ds=(2,), channel_mult=(1, 2), num_head_channels=-1,
            num_heads=1, norm_num_groups=8)


def _millions(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def test_paper_size_parameter_counts_on_meta() -> None:
    """Table 8.4: 93.6M per model, 187.2M for f_phi + eps_theta."""
    with torch.device("meta"):
        f_phi = ConditionalADMUNet(**FFHQ_256)
        prior = ADMUNet(**FFHQ_256, learn_sigma=True)
        y = f_phi(torch.zeros(1, 3, 256, 256), torch.zeros(1), torch.zeros(1, 3, 256, 256))
    assert round(_millions(f_phi), 1) == 93.6 and round(_millions(prior), 1) == 93.6
    assert abs(_millions(f_phi) + _millions(prior) - 187.2) < 0.1, "the table's 187.2 is 2 x 93.6 (187.13 exactly)"
    assert tuple(y.shape) == (1, 3, 256, 256)


def guided_diffusion_state_dict(in_channels: int, model_channels: int, out_channels: int, num_res_blocks: int,
                                attention_ds: tuple[int, ...], channel_mult: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Key names and shapes of openai/guided-diffusion's ``UNetModel`` (resblock_updown, scale-shift norm), written
    from that file's construction loops (``time_embed``, ``input_blocks``, ``middle_block``, ``output_blocks``, ``out``)
    independently of the suite's ADMUNet, filled with random values."""
    g = torch.Generator().manual_seed(0)
    state: dict[str, torch.Tensor] = {}
    emb = 4 * model_channels

    def put(name: str, *shape: int) -> None:
        state[name] = torch.randn(shape, generator=g) * 0.05

    def resblock(prefix: str, cin: int, cout: int) -> None:
        put(f"{prefix}.in_layers.0.weight", cin), put(f"{prefix}.in_layers.0.bias", cin)
        put(f"{prefix}.in_layers.2.weight", cout, cin, 3, 3), put(f"{prefix}.in_layers.2.bias", cout)
        put(f"{prefix}.emb_layers.1.weight", 2 * cout, emb), put(f"{prefix}.emb_layers.1.bias", 2 * cout)
        put(f"{prefix}.out_layers.0.weight", cout), put(f"{prefix}.out_layers.0.bias", cout)
        put(f"{prefix}.out_layers.3.weight", cout, cout, 3, 3), put(f"{prefix}.out_layers.3.bias", cout)
        if cin != cout:
            put(f"{prefix}.skip_connection.weight", cout, cin, 1, 1), put(f"{prefix}.skip_connection.bias", cout)

    def attention(prefix: str, ch: int) -> None:
        put(f"{prefix}.norm.weight", ch), put(f"{prefix}.norm.bias", ch)
        put(f"{prefix}.qkv.weight", 3 * ch, ch, 1), put(f"{prefix}.qkv.bias", 3 * ch)
        put(f"{prefix}.proj_out.weight", ch, ch, 1), put(f"{prefix}.proj_out.bias", ch)

    put("time_embed.0.weight", emb, model_channels), put("time_embed.0.bias", emb)
    put("time_embed.2.weight", emb, emb), put("time_embed.2.bias", emb)
    ch = channel_mult[0] * model_channels
    put("input_blocks.0.0.weight", ch, in_channels, 3, 3), put("input_blocks.0.0.bias", ch)
    chans, ds, index = [ch], 1, 1
    for level, mult in enumerate(channel_mult):
        for _ in range(num_res_blocks):
            resblock(f"input_blocks.{index}.0", ch, mult * model_channels)
            ch = mult * model_channels
            if ds in attention_ds:
                attention(f"input_blocks.{index}.1", ch)
            chans.append(ch)
            index += 1
        if level != len(channel_mult) - 1:
            resblock(f"input_blocks.{index}.0", ch, ch)  # the down ResBlock
            chans.append(ch)
            ds, index = ds * 2, index + 1
    resblock("middle_block.0", ch, ch), attention("middle_block.1", ch), resblock("middle_block.2", ch, ch)
    index = 0
    for level, mult in list(enumerate(channel_mult))[::-1]:
        for i in range(num_res_blocks + 1):
            resblock(f"output_blocks.{index}.0", ch + chans.pop(), model_channels * mult)
            ch, sub = model_channels * mult, 1
            if ds in attention_ds:
                attention(f"output_blocks.{index}.1", ch)
                sub = 2
            if level and i == num_res_blocks:
                resblock(f"output_blocks.{index}.{sub}", ch, ch)  # the up ResBlock
                ds //= 2
            index += 1
    put("out.0.weight", ch), put("out.0.bias", ch)
    put("out.2.weight", out_channels, ch, 3, 3), put("out.2.bias", out_channels)
    return state


def test_guided_diffusion_checkpoint_loads_into_the_prior(tmp_path: Path) -> None:
    state = guided_diffusion_state_dict(3, 16, 6, 1, (2,), (1, 2))  # learn_sigma: 6 output channels
    torch.save(state, tmp_path / "ffhq_tiny.pt")
    prior = load_prior_weights(ADMUNet(**TINY, learn_sigma=True), tmp_path / "ffhq_tiny.pt")
    own = prior.state_dict()
    assert set(own) == set(state) and all(torch.equal(own[k], state[k]) for k in state)
    assert torch.isfinite(prior(torch.randn(1, 3, 16, 16), torch.tensor([10]))).all()
    with pytest.raises(ValueError, match="another resolution"):  # a 3-level (larger image) layout
        torch.save(guided_diffusion_state_dict(3, 16, 6, 1, (2,), (1, 2, 2)), tmp_path / "other_res.pt")
        load_prior_weights(ADMUNet(**TINY, learn_sigma=True), tmp_path / "other_res.pt")
    with pytest.raises(ValueError, match="channel layout 3 in / 6 out"):
        load_prior_weights(ADMUNet(**TINY, learn_sigma=False), tmp_path / "ffhq_tiny.pt")
    with pytest.raises(FileNotFoundError, match="prior_checkpoint"):
        load_prior_weights(ADMUNet(**TINY), tmp_path / "missing.pt")


def test_suite_prior_export_with_wrapper_prefixes_loads(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source = ADMUNet(**TINY, learn_sigma=True)
    save_file({f"network.network.{k}": v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "ema.safetensors"))
    target = load_prior_weights(ADMUNet(**TINY, learn_sigma=True), tmp_path / "ema.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))


def _module(**kw) -> BiNoisingRestoration:
    prior = None if kw.get("nonparametric") else ADMUNet(**TINY, learn_sigma=True)
    return BiNoisingRestoration(ConditionalADMUNet(**TINY), prior=prior, image_size=16, num_sampling_steps=3, **kw)


def test_correction_loss_is_zero_when_the_condition_is_clean() -> None:
    module = _module(corr_weight=0.001)
    torch.manual_seed(0)
    for p in module.network.parameters():  # a stand-in network whose output depends on its input
        p.data.normal_(0, 0.05)
    y0 = torch.rand(2, 3, 16, 16) * 2 - 1
    same = module.losses({"image": y0, "condition": y0}, torch.Generator().manual_seed(0))
    assert torch.equal(same["corr"], torch.zeros(2))
    rainy = module.losses({"image": y0, "condition": (y0 + 0.5).clamp(-1, 1)}, torch.Generator().manual_seed(0))
    assert (rainy["corr"] > 0).all() and torch.allclose(rainy["total"], rainy["simple"] + 0.001 * rainy["corr"])
    assert correction_loss(torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)).item() == 1.0


def test_nonparametric_prior_is_the_null_condition_pass() -> None:
    module = _module(nonparametric=True, sampler="cfg", guidance_scale=2.0)
    cond = torch.rand(2, 3, 16, 16)
    f, prior = module.denoisers(cond)
    x, t = torch.randn(2, 3, 16, 16), torch.full((2,), 0.5)
    assert torch.equal(prior(x, t), module.network(x, module.path.network_time(t), torch.zeros_like(cond)))
    out = module.restore(cond, generator=torch.Generator().manual_seed(0))
    assert module.last_network_calls == 2 * 3 == module.nfe()
    assert out.shape == (2, 3, 16, 16)
    assert module.sampling_parameters() == sum(p.numel() for p in module.network.parameters())


def test_module_counts_calls_and_params_per_sampler() -> None:
    module = _module()
    cond = torch.rand(1, 3, 16, 16) * 2 - 1
    module.restore(cond, sampler="bi_noising")
    assert module.last_network_calls == 6 == module.nfe(sampler="bi_noising")
    module.restore(cond, sampler="sr3")
    assert module.last_network_calls == 3 == module.nfe(sampler="sr3")
    both = sum(p.numel() for p in module.network.parameters()) + sum(p.numel() for p in module.prior.parameters())
    assert module.sampling_parameters("bi_noising") == both > module.sampling_parameters("sr3")


def test_bad_inputs_fail_clearly() -> None:
    module = _module()
    with pytest.raises(ValueError, match=r"condition must be \[B, 3, 16, 16\]"):
        module.restore(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="model.prior is required"):
        BiNoisingRestoration(ConditionalADMUNet(**TINY), image_size=16)
    with pytest.raises(ValueError, match="nonparametric"):
        BiNoisingRestoration(ConditionalADMUNet(**TINY), prior=ADMUNet(**TINY), nonparametric=True, image_size=16)
    with pytest.raises(ValueError, match="corr_coefficient"):
        _module(corr_coefficient="beta")
    with pytest.raises(ValueError, match="input channels"):
        BiNoisingRestoration(ConditionalADMUNet(**TINY), prior=ADMUNet(**{**TINY, "in_channels": 1}), image_size=16)


def test_task_conditions_check_their_size() -> None:
    from datamodules.bi_noising.tasks import condition, degrade

    clean = torch.rand(3, 16, 16) * 2 - 1
    assert degrade("sr", clean).shape == (3, 4, 4) and condition("sr", degrade("sr", clean), 16).shape == (3, 16, 16)
    with pytest.raises(ValueError, match="low-resolution input must be 4x4 for a 16x16 model"):
        condition("sr", torch.zeros(3, 8, 8), 16)
    with pytest.raises(ValueError, match="derain: the degraded image must be 16x16"):
        condition("derain", torch.zeros(3, 8, 8), 16)

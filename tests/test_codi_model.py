"""CoDi's adapter, boundary parametrisation and consistency target (thesis 001, Ch. 5, Eqs. 5.2-5.6).

Random-weight tiny models: these test the code's defining properties, not the thesis's numbers.
"""
from __future__ import annotations

import pytest
import torch

from codi_helpers import TINY_UNET, meta_unet, sr_batch, tiny_codi


def _inputs(channels: int = 4):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, 4, 8, 8, generator=g)
    k = torch.tensor([700.0, 120.0])
    ctx = torch.randn(2, 8, 32, generator=g)
    cond = torch.randn(2, channels, 8, 8, generator=g)
    return z, k, ctx, cond


@pytest.mark.parametrize("granularity", ["global", "per_level"])
def test_mu_gate_at_zero_leaves_the_backbone_output_unchanged(granularity: str) -> None:
    model = tiny_codi(mu_granularity=granularity)
    net = model.network
    assert torch.count_nonzero(net.mu) == 0
    z, k, ctx, cond = _inputs()
    with torch.no_grad():
        backbone = net.backbone(z, k, encoder_hidden_states=ctx).sample
        adapted = net(z, k, encoder_hidden_states=ctx, condition=cond)
        assert torch.allclose(adapted, backbone, atol=1e-6)
        net.mu.fill_(0.5)
        assert not torch.allclose(net(z, k, encoder_hidden_states=ctx, condition=cond), backbone, atol=1e-3)
        net.mu.fill_(1.0)  # mu = 1: the encoder features are entirely the copy's (Eq. 5.3)
        assert not torch.allclose(net(z, k, encoder_hidden_states=ctx, condition=cond), backbone, atol=1e-3)


def test_controlnet_zero_convs_leave_the_backbone_output_unchanged() -> None:
    model = tiny_codi(adapter="controlnet", task="inpaint")
    net = model.network
    z, k, ctx, cond = _inputs(channels=5)
    with torch.no_grad():
        backbone = net.backbone(z, k, encoder_hidden_states=ctx).sample
        assert torch.allclose(net(z, k, encoder_hidden_states=ctx, condition=cond), backbone, atol=1e-6)
        net.zero_convs[1].weight.normal_()
        net.hint.weight.normal_()
        assert not torch.allclose(net(z, k, encoder_hidden_states=ctx, condition=cond), backbone, atol=1e-4)


def test_pe_codi_trains_only_the_copy_and_mu() -> None:
    model = tiny_codi(train_backbone=False)
    net = model.network
    trainable = {id(p) for p in model.trainable_parameters()}
    assert trainable == {id(p) for p in net.adapter_parameters()}
    assert id(net.mu) in trainable
    assert not any(id(p) in trainable for p in net.backbone.parameters())
    assert not any(id(p) in trainable for p in model.vae.parameters())
    before_backbone = [p.detach().clone() for p in net.backbone.parameters()]
    before_copy = [p.detach().clone() for p in net.encoder.parameters()]
    opt = torch.optim.SGD(model.trainable_parameters(), lr=0.1)
    batch = sr_batch()
    x, cond, ctx = model.encode(batch["image"]), model.condition(batch), model.context(batch, 2)
    for step in range(2):
        opt.zero_grad()
        model.codi_loss(x, cond, ctx, generator=torch.Generator().manual_seed(step))["loss"].mean().backward()
        opt.step()
        if step == 0:  # with mu = 0 only mu receives a gradient (d h' / d h_eta = mu)
            assert float(net.mu.abs().sum()) > 0
            assert all(torch.equal(a, b) for a, b in zip(before_copy, net.encoder.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(before_backbone, net.backbone.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_copy, net.encoder.parameters()))

    full = tiny_codi(train_backbone=True)
    assert {id(p) for p in full.network.backbone.parameters()} <= {id(p) for p in full.trainable_parameters()}


def test_boundary_parametrisation_is_the_identity_at_the_boundary() -> None:
    model = tiny_codi()
    b = model.boundary
    # the authors' convention: identity at DDPM step 0 (and, by the clamp, at the data end of the path)
    t0 = model.path.t_from_timestep(torch.tensor([0.0, -1.0])).float()
    c_skip, c_out = b.coefficients(t0)
    assert torch.allclose(c_skip, torch.ones(2)) and torch.allclose(c_out, torch.zeros(2))
    z, _, ctx, cond = _inputs()
    with torch.no_grad():
        assert torch.allclose(model.consistency(z, t0, cond, ctx), z, atol=1e-6)
    # away from the boundary the network's estimate is the whole output: c_skip ~ 0, c_out ~ 1
    t_noisy = model.path.t_from_timestep(torch.tensor([999.0])).float()
    c_skip, c_out = b.coefficients(t_noisy)
    assert float(c_skip) < 1e-6 and abs(float(c_out) - 1.0) < 1e-6
    # the eps-form is the one implied by F (Remark 5.1): z = a F + s eps_F
    f = torch.randn_like(z)
    t = model.path.t_from_timestep(torch.tensor([500.0, 500.0])).float()
    eps = b.noise(z, f, t)
    a, s = model.path.data_coef(t).view(-1, 1, 1, 1), model.path.noise_coef(t).view(-1, 1, 1, 1)
    assert torch.allclose(a * f + s * eps, z, atol=1e-5)


@pytest.mark.parametrize("scaling", [10.0, 1.0])
def test_boundary_with_an_oracle_denoiser_returns_the_data_on_the_sampling_schedule(scaling: float) -> None:
    """Eq. 5.2 with a perfect ``x_hat``: ``F(z_t) = x`` (1e-3) on the 4-step grid and at every training grid point."""
    from diffusion.paths import DiscreteDDPMPath
    from lightning_modules.codi.boundary import ConsistencyBoundary

    path = DiscreteDDPMPath("scaled_linear", 0.00085, 0.012, 1000)
    b = ConsistencyBoundary(path, timestep_scaling=scaling)
    model = tiny_codi(num_sampling_steps=4)
    grid = model.sampling_grid(4, torch.device("cpu"))
    steps = path.t_from_timestep(torch.arange(19.0, 1000.0, 20.0))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=g)
    eps = torch.randn(1, 4, 8, 8, generator=g)
    times = [float(t) for t in grid if float(path.network_time(torch.tensor([float(t)]))[0]) >= 0]
    assert len(times) >= 4
    for t_val in times + [float(t) for t in steps]:
        t = torch.tensor([t_val], dtype=torch.float64)
        z = path.data_coef(t).view(-1, 1, 1, 1).float() * x + path.noise_coef(t).view(-1, 1, 1, 1).float() * eps
        f = b.apply(z, x, t.float())  # the oracle denoiser predicts x exactly
        tol = 1e-3 if scaling == 10.0 else 1e-2
        assert float((f - x).abs().max()) < tol, (t_val, float((f - x).abs().max()))
    data_t = torch.tensor([1.0])  # t = 0 in noise-level terms: z = x, F must be x exactly
    assert torch.equal(b.apply(x, torch.zeros_like(x), data_t), x)
    # the earlier sigma form does not return the data (c_out ~ 0.5 at k = 999): why the default changed
    old = ConsistencyBoundary(path, float(path.t_from_timestep(torch.tensor([19.0]))[0]), timestep_scaling=None)
    _, c_out = old.coefficients(path.t_from_timestep(torch.tensor([999.0])))
    assert float(c_out) < 0.6


def test_consistency_target_uses_the_ema_network_and_the_same_noise() -> None:
    model = tiny_codi()
    batch = sr_batch()
    x, cond, ctx = model.encode(batch["image"]), model.condition(batch), model.context(batch, 2)
    # an "EMA" set of weights that differs from the online weights
    ema = {n[len("network."):]: p.detach() + 0.05 * torch.randn_like(p) for n, p in model.named_parameters()
           if n.startswith("network.") and p.requires_grad}
    terms = model.codi_loss(x, cond, ctx, generator=torch.Generator().manual_seed(3), params=ema)

    # recompute Eqs. 5.5-5.6 by hand with the same random draws
    g = torch.Generator().manual_seed(3)
    t, s = model.step_times(2, x.device, g)
    assert torch.equal(t, t[:1].expand(2)), "one timestep shared by the whole batch (Fig. 5.6)"
    assert bool((s > t).all()), "s is one grid point closer to the data"
    eps = torch.randn(x.shape, generator=g)
    a = lambda tt: model.path.data_coef(tt).view(-1, 1, 1, 1)  # noqa: E731
    sg = lambda tt: model.path.noise_coef(tt).view(-1, 1, 1, 1)  # noqa: E731
    z_t = a(t) * x + sg(t) * eps
    with torch.no_grad():
        f_t = model.consistency(z_t, t, cond, ctx)
        z_s = a(s) * f_t + sg(s) * eps  # the adapted model's own estimate, the same noise
        f_s_ema = model.consistency(z_s, s, cond, ctx, params=ema)
        f_s_online = model.consistency(z_s, s, cond, ctx)
    eps_t = model.boundary.noise(z_t, f_t, t)
    expected = (eps_t - model.boundary.noise(z_s, f_s_ema, s)).pow(2).flatten(1).mean(1)
    online = (eps_t - model.boundary.noise(z_s, f_s_online, s)).pow(2).flatten(1).mean(1)
    assert torch.allclose(terms["eps"], expected, atol=1e-5)
    assert not torch.allclose(terms["eps"], online, atol=1e-5), "the target is not the online network"
    assert torch.allclose(terms["x"], (x - f_t).pow(2).flatten(1).mean(1), atol=1e-5)


def test_target_weights_come_from_the_ema_callback() -> None:
    from callbacks.ema import EMACallback
    from lightning_modules.codi.module import ema_parameters

    model = tiny_codi()
    cb = EMACallback(decay=0.95, warmup=False)
    cb.update(model)  # first update copies the weights
    with torch.no_grad():
        model.network.mu.fill_(0.3)
    fake_trainer = type("T", (), {"callbacks": [cb]})()
    params = ema_parameters(fake_trainer)
    assert params is not None and "mu" in params and float(params["mu"]) == 0.0
    assert set(params) == {n[len("network."):] for n, p in model.named_parameters()
                           if n.startswith("network.") and p.requires_grad}
    assert ema_parameters(type("T", (), {"callbacks": []})()) is None


def test_per_sample_timesteps_option() -> None:
    model = tiny_codi(shared_timestep=False)
    t, s = model.step_times(64, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert len(torch.unique(t)) > 1


def test_sampling_in_1_2_4_8_steps() -> None:
    model = tiny_codi()
    calls = []
    original = model.consistency

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    model.consistency = counting  # type: ignore[method-assign]
    for steps in (1, 2, 4, 8):
        calls.clear()
        images = model.sample_for_batch(sr_batch(1), num_steps=steps, generator=torch.Generator().manual_seed(0))
        assert images.shape == (1, 3, 16, 16)
        assert float(images.min()) >= -1 and float(images.max()) <= 1
        assert len(calls) == steps


@pytest.mark.parametrize("task, keys", [
    ("inpaint", {"masked_image": (3, 16, 16), "mask": (1, 16, 16)}),
    ("depth", {"depth": (1, 16, 16)}),
    ("edit", {"source": (3, 16, 16)}),
])
def test_task_conditions(task: str, keys: dict) -> None:
    model = tiny_codi(task=task)
    batch = {k: torch.rand(2, *shape) * 2 - 1 for k, shape in keys.items()}
    cond = model.condition(batch)
    assert cond.shape == (2, 5 if task == "inpaint" else 4, 8, 8)
    assert model.network.condition_channels == cond.shape[1]


def test_full_size_parameter_counts_on_meta() -> None:
    from lightning_modules.codi.adapter import ConditionalAdapterUNet

    unet = meta_unet(320)
    gate = ConditionalAdapterUNet(unet, 4, mode="mu_gate").parameter_counts()
    control = ConditionalAdapterUNet(unet, 4, mode="controlnet").parameter_counts()
    assert round(gate["backbone"] / 1e6, 1) == 865.9  # Table 5.3: 865M backbone
    # Table 5.3: the copied branch of PE-CoDi is 364M (diffusers' ControlNetModel: 364.2M); ours without the
    # pixel-space hint network is 363.2M; the mu-gated copy has no zero-convs: 351.7M.
    assert abs(control["adapter"] / 1e6 - 364.2) < 2.0
    assert abs(gate["adapter"] / 1e6 - 351.7) < 0.1
    assert abs((control["backbone"] + control["adapter"]) / 1e9 - 1.22) < 0.02  # "1.22B" total


class _FeatureDistance(torch.nn.Module):
    """A stand-in perceptual distance ``(a, b) -> [B, ...]`` (the interface of the LPIPS network)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (self.conv(a) - self.conv(b)).pow(2).mean(dim=(1, 2, 3))


@pytest.mark.parametrize("distance_x", ["pixel_l2", "enc_dec_l2", "lpips"])
def test_fig_5_1_data_term_alternatives(distance_x: str) -> None:
    lpips = _FeatureDistance() if distance_x == "lpips" else None  # stand-in for metrics.LPIPSNetwork
    model = tiny_codi(distance_x=distance_x, lpips=lpips, distance_eps="huber")
    batch = sr_batch()
    x, cond, ctx = model.encode(batch["image"]), model.condition(batch), model.context(batch, 2)
    terms = model.codi_loss(x, cond, ctx, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(terms["loss"]).all() and float(terms["x"].min()) > 0
    terms["loss"].mean().backward()
    assert model.network.mu.grad is not None


def test_lpips_distance_needs_a_network() -> None:
    with pytest.raises(ValueError, match="lpips"):
        tiny_codi(distance_x="lpips")

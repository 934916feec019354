"""Bi-Noising restoration samplers (thesis 001 Ch. 8, §8.3.3-§8.3.4): defining properties and special cases."""
from __future__ import annotations

import math

import pytest
import torch

from diffusion.bi_noising import (
    BiNoisingSampler,
    CFGSampler,
    CountingDenoiser,
    ILVRSampler,
    ReplacementSampler,
    SR3Sampler,
    binoise_schedule,
    build_restoration_sampler,
    low_pass,
)
from diffusion.grids import discrete_grid
from diffusion.paths import DiscreteDDPMPath
from diffusion.samplers import DDPMSampler

PATH = DiscreteDDPMPath("linear", 1e-4, 0.02, 1000)


class PointMassDenoiser:
    """The exact epsilon of data that is a point mass at ``c``: ``(x_t - a_t c) / b_t`` (an oracle, not a network)."""

    prediction_type = "epsilon"

    def __init__(self, c: torch.Tensor) -> None:
        self.c = c

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, b = PATH.data_coef(t.double()).to(x.dtype), PATH.noise_coef(t.double()).to(x.dtype)
        return (x - a.view(-1, 1, 1, 1) * self.c) / b.view(-1, 1, 1, 1)


class LinearDenoiser(torch.nn.Module):
    """A tiny random stand-in network ``eps = W * x + u * t`` (per-channel), deterministic given its seed."""

    prediction_type = "epsilon"

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(3, generator=g) * 0.3
        self.u = torch.randn(3, generator=g) * 0.1

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x * self.w.view(1, 3, 1, 1) + self.u.view(1, 3, 1, 1) * t.view(-1, 1, 1, 1).to(x.dtype)


def _grid(n: int) -> torch.Tensor:
    return discrete_grid(PATH, n, spacing="linspace")


def test_one_bi_noising_step_with_f_equal_eps_is_distributed_as_one_ancestral_step() -> None:
    """With f_phi == eps_theta (the same exact denoiser), re-noising puts y'_t on the prior's marginal, so one
    bi-noising step from *any* state has the law of one ancestral step from the marginal: mean and variance agree
    with each other and with the exact q(y_s) (fixed_small posterior) over 40,000 draws per pixel."""
    c = torch.tensor([0.5, -0.3, 0.1]).view(1, 3, 1, 1)
    eps = PointMassDenoiser(c)
    ts = torch.tensor([0.55, 0.6], dtype=torch.float64)  # one reverse step t -> s
    n = 40_000
    start = torch.full((n, 3, 1, 1), 3.0)  # far off the manifold: the conditional chain's error
    a_t, b_t = float(PATH.data_coef(ts[:1])), float(PATH.noise_coef(ts[:1]))
    a_s, b_s = float(PATH.data_coef(ts[1:])), float(PATH.noise_coef(ts[1:]))
    g = torch.Generator().manual_seed(0)
    marginal = a_t * c + b_t * torch.randn((n, 3, 1, 1), generator=g)
    ancestral = DDPMSampler("fixed_small").sample(eps, PATH, marginal, ts, generator=g)
    binoise = BiNoisingSampler("all", variance_type="fixed_small").sample(eps, eps, PATH, start, ts, generator=g)
    for samples in (ancestral, binoise):
        assert torch.allclose(samples.mean(0).flatten(), (a_s * c).flatten(), atol=4 * b_s / math.sqrt(n))
        assert torch.allclose(samples.var(0).flatten(), torch.full((3,), b_s ** 2), rtol=0.03)
    assert torch.allclose(binoise.mean(0), ancestral.mean(0), atol=6 * b_s / math.sqrt(n))
    assert torch.allclose(binoise.var(0), ancestral.var(0), rtol=0.04)
    plain = SR3Sampler(variance_type="fixed_small").sample(LinearDenoiser(), None, PATH, start, ts, generator=g)
    assert (plain.mean(0) - a_s * c).abs().max() > 0.1, "the check can fail: a wrong conditional step is off the mean"


@pytest.mark.parametrize("binoise_steps, prior_calls", [("all", 10), ("alternate", 5), (0.3, 3), ("none", 0)])
def test_network_calls_are_two_per_bi_noising_step(binoise_steps, prior_calls: int) -> None:
    cond, prior = CountingDenoiser(LinearDenoiser(0)), CountingDenoiser(LinearDenoiser(1))
    sampler = BiNoisingSampler(binoise_steps)
    grid = _grid(10)
    sampler.sample(cond, prior, PATH, torch.randn(2, 3, 4, 4), grid, generator=torch.Generator().manual_seed(0))
    assert cond.calls == 10 and prior.calls == prior_calls
    assert sampler.num_evaluations(grid) == cond.calls + prior.calls
    assert sampler.evaluations_per_step(10).count(2) == prior_calls


def test_binoise_schedule_readings() -> None:
    assert binoise_schedule("alternate", 5) == [True, False, True, False, True]
    assert binoise_schedule(0.5, 4) == [True, True, False, False], "a fraction covers the noisiest steps first"
    with pytest.raises(ValueError, match="binoise_steps"):
        binoise_schedule("most", 4)
    with pytest.raises(ValueError, match="fraction"):
        BiNoisingSampler(1.5)


def test_bi_noising_step_is_implicit_prediction_renoise_then_prior_step() -> None:
    """§8.3.4 literally: Eq. 8.9 (clipped), Eq. 8.10 with fresh noise, Eq. 8.11 with eps_theta."""
    cond, prior = LinearDenoiser(0), LinearDenoiser(1)
    k = 500  # one DDPM timestep k -> k - 1, so Eq. 8.11's alpha_t, beta_t are the table's own
    ts = PATH.t_from_timestep(torch.tensor([k, k - 1], dtype=torch.float64))
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(3)) * 2
    t = torch.full((2,), float(ts[0]))
    beta, abar, abar_prev = float(PATH.betas[k]), float(PATH.alphas_cumprod[k]), float(PATH.alphas_cumprod[k - 1])
    for clip in (False, True):
        out = BiNoisingSampler(clip_denoised=clip).sample(cond, prior, PATH, x, ts, generator=torch.Generator().manual_seed(7))
        g = torch.Generator().manual_seed(7)
        y0 = (x - math.sqrt(1 - abar) * cond(x, t)) / math.sqrt(abar)  # Eq. 8.9
        y0 = y0.clamp(-1, 1) if clip else y0
        renoised = math.sqrt(abar) * y0 + math.sqrt(1 - abar) * torch.randn(x.shape, generator=g)  # Eq. 8.10
        eps = prior(renoised, t)
        z = torch.randn(x.shape, generator=g)
        if not clip:  # Eq. 8.11 with sigma_t^2 = beta_t (fixed_large, Eq. 8.6)
            expected = (renoised - beta / math.sqrt(1 - abar) * eps) / math.sqrt(1 - beta) + math.sqrt(beta) * z
        else:  # the posterior mean (DDPM Eq. 7) at the clipped data prediction
            x0 = ((renoised - math.sqrt(1 - abar) * eps) / math.sqrt(abar)).clamp(-1, 1)
            expected = (math.sqrt(abar_prev) * beta / (1 - abar)) * x0 \
                + (math.sqrt(1 - beta) * (1 - abar_prev) / (1 - abar)) * renoised + math.sqrt(beta) * z
            assert (y0.abs() == 1).any(), "the check can fail: clipping is active on this input"
        assert torch.allclose(out, expected, atol=1e-4)


def test_special_cases_equal_the_plain_conditional_sampler() -> None:
    cond, prior = LinearDenoiser(0), LinearDenoiser(1)
    grid, x = _grid(6), torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    run = lambda s: s.sample(cond, prior, PATH, x, grid, generator=torch.Generator().manual_seed(5))  # noqa: E731
    sr3 = run(SR3Sampler(clip_denoised=False))
    assert torch.equal(run(BiNoisingSampler("none", clip_denoised=False)), sr3)
    assert torch.equal(run(BiNoisingSampler("none")), run(SR3Sampler()))
    assert torch.allclose(run(CFGSampler(1.0, clip_denoised=False)), sr3, atol=1e-6), "guidance scale 1 is the conditional model"
    core = DDPMSampler("fixed_large").sample(cond, PATH, x, grid, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(sr3, core, atol=1e-5), "SR3 is the core's DDPM ancestral sampler"
    assert not torch.allclose(run(BiNoisingSampler("all")), sr3, atol=1e-3)


def test_ilvr_with_factor_one_replaces_the_state_by_the_noised_condition() -> None:
    prior = LinearDenoiser(1)
    ref = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    ts = torch.tensor([0.3, 0.45], dtype=torch.float64)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    out = ILVRSampler(1).sample(None, prior, PATH, x, ts, reference=ref, generator=torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    torch.randn(x.shape, generator=g)  # the ancestral step's noise, overwritten by the replacement
    a_s, b_s = float(PATH.data_coef(ts[1:])), float(PATH.noise_coef(ts[1:]))
    assert torch.allclose(out, a_s * ref + b_s * torch.randn(x.shape, generator=g), atol=1e-5)
    full = ILVRSampler(1).sample(None, prior, PATH, x, _grid(5), reference=ref, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(full, ref, atol=1e-5), "landing on data: the state is the condition itself"
    low = ILVRSampler(4).sample(None, prior, PATH, x, _grid(5), reference=ref, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(low, ref, atol=1e-2), "N = 4 keeps only the low band of the condition"


def test_replacement_keeps_the_known_part() -> None:
    prior = LinearDenoiser(1)
    ref = (torch.rand(1, 1, 8, 8) * 2 - 1).expand(1, 3, 8, 8)
    x = torch.randn(1, 3, 8, 8)
    out = ReplacementSampler("gray").sample(None, prior, PATH, x, _grid(4), reference=ref, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out.mean(1), ref[:, 0], atol=1e-5)
    mask = (torch.rand(1, 1, 8, 8) > 0.5).float()
    out = ReplacementSampler("mask").sample(None, prior, PATH, x, _grid(4), reference=ref, mask=mask,
                                            generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out * mask, ref * mask, atol=1e-5)


def test_seeded_determinism() -> None:
    cond, prior = LinearDenoiser(0), LinearDenoiser(1)
    x = torch.randn(2, 3, 4, 4)
    run = lambda seed: BiNoisingSampler().sample(cond, prior, PATH, x, _grid(5), generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(run(11), run(11))
    assert not torch.equal(run(11), run(12))


def test_bad_sampler_inputs() -> None:
    with pytest.raises(ValueError, match="unknown restoration sampler 'palette'"):
        build_restoration_sampler("palette")
    with pytest.raises(ValueError, match="needs the unconditional prior"):
        BiNoisingSampler().sample(LinearDenoiser(), None, PATH, torch.randn(1, 3, 4, 4), _grid(3))
    with pytest.raises(ValueError, match="reference shape"):
        ILVRSampler(2).sample(None, LinearDenoiser(), PATH, torch.randn(1, 3, 8, 8), _grid(3), reference=torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="must divide"):
        low_pass(torch.zeros(1, 3, 6, 6), 4)


def test_sr3_with_clipping_matches_diffusers_ddpm_scheduler() -> None:
    """Peer check: SR3 (clipped, sigma^2 = beta) equals diffusers' DDPMScheduler(clip_sample, fixed_large) step by step."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                              clip_sample=True, clip_sample_range=1.0, variance_type="fixed_large", timestep_spacing="leading")
    scheduler.set_timesteps(10)
    cond = LinearDenoiser(0)
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 1.5
    ours = SR3Sampler().sample(cond, None, PATH, x, discrete_grid(PATH, 10, spacing="leading"),
                               generator=torch.Generator().manual_seed(1))
    g, y = torch.Generator().manual_seed(1), x.clone()
    for k in scheduler.timesteps:
        t = PATH.t_from_timestep(torch.full((2,), float(k), dtype=torch.float64)).float()
        y = scheduler.step(cond(y, t), int(k), y, generator=g).prev_sample
    assert torch.allclose(ours, y, atol=1e-4)

"""Timestep grids and the cosine table against diffusers on a sweep of settings (issue 14).

* ``discrete_grid`` places exactly the timesteps of every diffusers scheduler the suite's
  samplers mirror (DDPM, DDIM, Euler, Euler-ancestral, Heun, DPM-Solver multistep; UniPC and DEIS
  share DPM-Solver's placement), for a grid
  of ``(T, N, spacing, steps_offset)``: not a few chosen points. The sweep includes the ``(T, N)``
  pairs where a ``torch.linspace`` grid rounds a ``.5`` tie the other way (asserted, so the test
  keeps covering the defect it guards).
* ``final='first'`` with a grid that already ends at ``k = 0`` drops the repeated point and
  samples what diffusers samples (``set_alpha_to_one=False`` / ``final_sigmas_type='sigma_min'``).
* ``DiscreteDDPMPath('squaredcos_cap_v2')`` and ``CosinePath`` drive a diffusers ``UNet2DModel``
  trained with diffusers' cosine table (tiny, random init + 8 steps on random images: a stand-in
  for a cosine-trained model) to the same sample as diffusers' DDIM / DDPM schedulers from the
  same noise.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from diffusion.denoisers import NetworkDenoiser
from diffusion.grids import discrete_grid
from diffusion.paths import CosinePath, DiscreteDDPMPath
from diffusion.samplers import DDIMSampler, DDPMSampler, EDMSampler

# scheduler -> (round_timesteps, extra_point): how the suite reproduces that scheduler's placement
SCHEDULERS = {
    "DDPMScheduler": (True, False),
    "DDIMScheduler": (True, False),
    "EulerDiscreteScheduler": (False, False),
    "EulerAncestralDiscreteScheduler": (False, False),
    "HeunDiscreteScheduler": (False, False),
    "DPMSolverMultistepScheduler": (True, True),
    "UniPCMultistepScheduler": (True, True),  # the same placement as DPM-Solver (docstring of discrete_grid)
    "DEISMultistepScheduler": (True, True),
}
TRAIN_STEPS = (1000, 999, 500, 251, 100)
SPACINGS = ("leading", "trailing", "linspace")
OFFSETS = (0, 1)
TOL = 1e-4


def _step_counts(T: int) -> list[int]:
    """Every N up to 63, then a stride through the rest (and the ends), for one ``T``."""
    return sorted(set(range(1, 64)) | set(range(64, T, 41)) | {T // 2, T - 1, T})


def _reference_timesteps(sched) -> torch.Tensor:
    ks = sched.timesteps.to(torch.float64)
    if type(sched).__name__ == "HeunDiscreteScheduler":  # [k0, k1, k1, k2, k2, ...]: one per Heun step
        ks = torch.unique_consecutive(ks)
    return ks


def test_discrete_grid_matches_every_scheduler_on_a_sweep() -> None:
    import diffusers

    mismatches: list[tuple] = []
    compared = refused = torch_linspace_ties = 0
    for T in TRAIN_STEPS:
        path = DiscreteDDPMPath("linear", 1e-4, 0.02, T)
        for n in _step_counts(T):
            old = torch.linspace(0.0, T - 1.0, n, dtype=torch.float64).round().numpy()
            torch_linspace_ties += int(not np.array_equal(old, np.linspace(0, T - 1, n).round()))
        for name, (round_ts, extra) in SCHEDULERS.items():
            for spacing in SPACINGS:
                for offset in OFFSETS:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        sched = getattr(diffusers, name)(
                            num_train_timesteps=T, beta_schedule="linear", timestep_spacing=spacing,
                            steps_offset=offset,
                        )
                    for n in _step_counts(T):
                        sched.set_timesteps(n)
                        ref = _reference_timesteps(sched)
                        in_range = bool((ref >= 0).all() and (ref <= T - 1).all())
                        kwargs = dict(steps_offset=offset, round_timesteps=round_ts, extra_point=extra)
                        if not in_range:
                            # diffusers itself leaves [0, T - 1] here (a float arange overshoot gives
                            # k = -1, or the offset pushes k to T): the suite refuses instead
                            with pytest.raises(ValueError, match="out of range"):
                                discrete_grid(path, n, spacing, **kwargs)
                            refused += 1
                            continue
                        ours = path.timestep_from_t(discrete_grid(path, n, spacing, **kwargs)[:-1])
                        compared += 1
                        if ours.shape != ref.shape or not torch.allclose(ours, ref, atol=1e-6, rtol=0):
                            mismatches.append((name, T, n, spacing, offset))
    assert not mismatches, f"{len(mismatches)} of {compared} grids differ from diffusers, e.g. {mismatches[:5]}"
    assert compared > 5000 and torch_linspace_ties > 0, (compared, torch_linspace_ties)
    assert refused < compared // 20


@pytest.fixture(scope="module")
def unet():
    """A tiny random UNet2DModel: the stand-in for a trained diffusers network (random weights)."""
    from diffusers import UNet2DModel

    torch.manual_seed(14)
    return UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    ).eval()


@pytest.fixture(scope="module")
def cosine_unet(unet):
    """The tiny UNet after 8 diffusers-style training steps on the ``squaredcos_cap_v2`` table.

    diffusers' recipe (``DDPMScheduler.add_noise`` at integer timesteps, epsilon MSE) on random
    8x8 images: a stand-in for a cosine-trained model, whose timestep input is diffusers' ``k``.
    """
    import copy

    from diffusers import DDPMScheduler

    net = copy.deepcopy(unet).train()
    sched = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(8)
    for _ in range(8):
        x0 = torch.rand(4, 1, 8, 8, generator=gen) * 2 - 1
        eps = torch.randn(x0.shape, generator=gen)
        k = torch.randint(0, 1000, (4,), generator=gen)
        loss = (net(sched.add_noise(x0, eps, k), k).sample - eps).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def noise() -> torch.Tensor:
    return torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(21))


def _run_diffusers(sched, unet, x, seed: int, scale_input: bool = False, **step_kwargs) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k in sched.timesteps:
            inp = sched.scale_model_input(x, k) if scale_input else x
            x = sched.step(unet(inp, k).sample, k, x, generator=gen, **step_kwargs).prev_sample
    return x


def test_final_first_drops_the_repeated_end_point() -> None:
    path = DiscreteDDPMPath()
    for spacing, offset in (("leading", 0), ("linspace", 0)):
        grid = discrete_grid(path, 10, spacing, steps_offset=offset, final="first")
        assert grid.numel() == 10 and bool((grid[1:] > grid[:-1]).all())
        assert float(path.timestep_from_t(grid[-1])) == pytest.approx(0.0, abs=1e-9)
    # the end point stays where the last timestep is not k = 0
    assert discrete_grid(path, 10, "leading", steps_offset=1, final="first").numel() == 11
    with pytest.raises(ValueError, match="moves nothing"):
        discrete_grid(path, 1, "leading", final="first")


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_final_first_ddim_matches_diffusers_without_alpha_to_one(unet, noise, eta: float) -> None:
    from diffusers import DDIMScheduler

    path = DiscreteDDPMPath("scaled_linear", 0.00085, 0.012)
    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                          set_alpha_to_one=False, steps_offset=0, timestep_spacing="leading")
    sched.set_timesteps(8)
    ref = _run_diffusers(sched, unet, noise.clone(), 3, eta=eta)
    grid = discrete_grid(path, 8, "leading", final="first")
    ours = DDIMSampler(eta=eta).sample(
        NetworkDenoiser(unet, path, "epsilon"), path, noise.clone(), grid, torch.Generator().manual_seed(3)
    )
    assert (ours - ref).abs().max() <= TOL


def test_final_first_euler_matches_diffusers_sigma_min(unet, noise) -> None:
    from diffusers import EulerDiscreteScheduler

    path = DiscreteDDPMPath("scaled_linear", 0.00085, 0.012)
    sched = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                   timestep_spacing="linspace", final_sigmas_type="sigma_min")
    sched.set_timesteps(8)
    ref = _run_diffusers(sched, unet, noise * sched.init_noise_sigma, 0, scale_input=True)
    grid = discrete_grid(path, 8, "linspace", final="first", round_timesteps=False)
    ours = EDMSampler(second_order=False, init_noise="noise_coef").sample(
        NetworkDenoiser(unet, path, "epsilon"), path, noise.clone(), grid
    )
    # diffusers returns x in its VE scale (x / sqrt(alpha_bar)); at k = 0 the suite's x is VP
    ours_ve = ours / path.data_coef(grid[-1:]).float()
    assert (ours_ve - ref).abs().max() <= TOL * float(ref.abs().max())


def test_cosine_table_matches_diffusers_and_the_continuous_path() -> None:
    from diffusers import DDPMScheduler

    for T in (1000, 100):
        ref = DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2")
        path = DiscreteDDPMPath("squaredcos_cap_v2", num_train_timesteps=T)
        assert torch.equal(path.alphas_cumprod, ref.alphas_cumprod.to(torch.float64))
    k = torch.arange(999, dtype=torch.float64)  # the last step is where the 0.999 cap bites
    t = DiscreteDDPMPath("squaredcos_cap_v2").t_from_timestep(k)
    cosine = CosinePath()
    alpha_bar = DDPMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod.to(torch.float64)[:999]
    assert torch.allclose(cosine.data_coef(t) ** 2, alpha_bar, atol=1e-6, rtol=0)
    assert torch.allclose(cosine.network_time(t), k, atol=1e-9)


@pytest.mark.parametrize("which", ["ddim", "ddpm"])
def test_cosine_diffusers_unet_samples_like_diffusers(cosine_unet, noise, which: str) -> None:
    unet = cosine_unet
    from diffusers import DDIMScheduler, DDPMScheduler

    path = DiscreteDDPMPath("squaredcos_cap_v2")
    steps = 10
    if which == "ddim":
        sched = DDIMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=False, timestep_spacing="leading",
                              steps_offset=1)
        sampler, spacing, offset = DDIMSampler(eta=0.0), "leading", 1
    else:  # trailing starts at k = 999, the capped step: only the exact table gets it right
        sched = DDPMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=False, timestep_spacing="trailing")
        sampler, spacing, offset = DDPMSampler("fixed_small"), "trailing", 0
    sched.set_timesteps(steps)
    ref = _run_diffusers(sched, unet, noise.clone(), 5)
    grid = discrete_grid(path, steps, spacing, steps_offset=offset)
    ours = sampler.sample(NetworkDenoiser(unet, path, "epsilon"), path, noise.clone(), grid,
                          torch.Generator().manual_seed(5))
    # relative: from k = 999 (alpha_bar ~ 6e-9) the random UNet's x0 estimate is ~6e4 in size
    assert (ours - ref).abs().max() <= TOL * max(1.0, float(ref.abs().max()))
    if which == "ddim":
        # the continuous CosinePath reaches the same sample through the same grid (leading
        # spacing stays below k = 999, the capped step) ...
        cont = sampler.sample(NetworkDenoiser(unet, CosinePath(), "epsilon"), CosinePath(), noise.clone(), grid)
        assert (cont - ref).abs().max() <= 1e-3
        # ... and the pre-issue-14 network time (k + 1) is measurably different
        shifted = CosinePath(network_time_offset=0.0)
        off = sampler.sample(NetworkDenoiser(unet, shifted, "epsilon"), shifted, noise.clone(), grid)
        assert (off - ref).abs().max() > 10 * (cont - ref).abs().max()

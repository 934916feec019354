"""DDPM baseline (lecture seed 002 "diffusion models", after Ho, Jain & Abbeel 2020).

The lecture's forward process x_t = a x_{t-1} + eps is concretised as in DDPM (digest
002-003 B2 [X]): betas linear from 1e-4 to 0.02 over T = 1000 steps, alpha_bar_t the running
product of (1 - beta), x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, the simple
loss ||eps - eps_theta(x_t, t)||^2 at integer t ~ U{0..999}, and ancestral sampling with the
'fixed small' posterior variance. In the suite's time convention this is the discrete DDPM
path of thesis 000 Ch. 2 Eq. 2.9 (t = 0 noise, t = 1 data). The lecture suggests 50-100
sampling steps; the default is 100 with diffusers' "leading" spacing so that results match
diffusers' DDPMScheduler step for step.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from torch import Tensor, nn

from diffusion.paths import AffinePath, DiscreteDDPMPath
from diffusion.time_samplers import DiscreteTimeSampler
from lightning_modules.diffusion_module import DiffusionModule


class DDPM(DiffusionModule):
    """``DiffusionModule`` with the DDPM defaults; every other argument passes through.

    ``path=None`` means the lecture's linear schedule (betas 1e-4..0.02, T = 1000);
    ``time_sampler=None`` means integer steps uniform in {0..T-1} of that path.
    """

    def __init__(
        self,
        network: nn.Module,
        path: Optional[AffinePath] = None,
        prediction_type: str = "epsilon",
        time_sampler: Optional[Callable[..., Tensor]] = None,
        sampler: str = "ddpm",
        num_sampling_steps: int = 100,
        grid: str = "leading",
        **kwargs: Any,
    ) -> None:
        if path is None:
            path = DiscreteDDPMPath(beta_schedule="linear", beta_start=1e-4, beta_end=0.02, num_train_timesteps=1000)
        super().__init__(
            network,
            path=path,
            prediction_type=prediction_type,
            time_sampler=time_sampler,
            sampler=sampler,
            num_sampling_steps=num_sampling_steps,
            grid=grid,
            **kwargs,
        )
        if time_sampler is None:  # DDPM trains on the integer steps of its own path
            self.time_sampler = DiscreteTimeSampler(path)

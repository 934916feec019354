"""A diffusers scheduler driving a suite denoiser (generic component; first user: thesis 000, Ch. 5).

The core (``diffusion/``) has no UniPC (Zhao et al. 2023, the MCDM's sampler, Ch. 5 §5.5.3). Rather
than a second, unverified implementation, :class:`DiffusersSchedulerSampler` runs diffusers'
own ``UniPCMultistepScheduler`` (or any scheduler with the standard ``set_timesteps`` /
``step`` API) over a suite denoiser ``denoiser(x_t, t)`` on a
:class:`~diffusion.paths.DiscreteDDPMPath`: each integer timestep ``k`` of the scheduler is given
to the denoiser as path time ``t = path.t_from_timestep(k)`` (so its network sees ``k`` again
through ``path.network_time``). The scheduler is built from the path's beta table, so the two
agree on ``alpha_bar``. It lives in ``components/`` because ``diffusion/`` imports torch only.

Beyond ``sample`` it exposes ``timesteps(num_steps)``, ``add_noise`` and ``run(..., start, stop)``,
which the DiffEdit-style edit mask (noise to the middle of the schedule, one step) and SDEdit
(start part-way) need. A fresh scheduler is built for every ``run`` (multistep schedulers keep
state). Steps report to ``diffusion.samplers.STEP_LISTENERS`` like the core samplers.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import torch
from torch import Tensor

from diffusion.paths import DiscreteDDPMPath
from diffusion.samplers import STEP_LISTENERS

#: diffusers scheduler classes this wrapper was checked with (tests/test_portrait_editing_samplers.py).
SCHEDULERS = ("UniPCMultistepScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler")


class DiffusersSchedulerSampler:
    """Sampler-like object: ``sample(denoiser, path, noise, grid_or_steps, generator=None)``.

    Args:
        scheduler: the diffusers class name (one of :data:`SCHEDULERS`).
        config: extra scheduler config (e.g. ``{solver_order: 2}``); the beta table always comes from the path.
        name: the name shown in manifests and progress bars.
    """

    def __init__(self, scheduler: str = "UniPCMultistepScheduler", config: Optional[Mapping[str, Any]] = None,
                 name: str = "unipc") -> None:
        if scheduler not in SCHEDULERS:
            raise ValueError(f"unknown diffusers scheduler {scheduler!r}; valid names: {', '.join(SCHEDULERS)}")
        self.scheduler_name = scheduler
        self.config = dict(config or {})
        self.name = name

    def build(self, path: DiscreteDDPMPath, num_steps: int, device: Any = None) -> Any:
        """A fresh scheduler with ``num_steps`` timesteps set, on ``path``'s beta table."""
        import diffusers

        if not isinstance(path, DiscreteDDPMPath):
            raise TypeError(f"{type(self).__name__} needs a DiscreteDDPMPath, got {type(path).__name__}")
        cls = getattr(diffusers, self.scheduler_name)
        sched = cls(num_train_timesteps=path.num_train_timesteps, beta_start=path.beta_start, beta_end=path.beta_end,
                    beta_schedule=path.beta_schedule, **self.config)
        sched.set_timesteps(int(num_steps), device=device)
        return sched

    def timesteps(self, path: DiscreteDDPMPath, num_steps: int) -> Tensor:
        return self.build(path, num_steps).timesteps.clone()

    @staticmethod
    def add_noise(path: DiscreteDDPMPath, x0: Tensor, noise: Tensor, timestep: int | Tensor) -> Tensor:
        """``x_k = sqrt(alpha_bar_k) x0 + sqrt(1 - alpha_bar_k) noise`` (the path at ``t_from_timestep(k)``)."""
        t = path.t_from_timestep(torch.as_tensor(float(timestep), dtype=torch.float64)).reshape(1)
        return path.add_noise(x0, noise, t.to(device=x0.device, dtype=x0.dtype).expand(x0.shape[0]))

    def num_evaluations(self, num_steps: int) -> int:
        return int(num_steps)

    @torch.no_grad()
    def run(self, denoiser: Callable[[Tensor, Tensor], Tensor], path: DiscreteDDPMPath, x: Tensor, num_steps: int,
            start: int = 0, stop: Optional[int] = None, generator: Optional[torch.Generator] = None) -> Tensor:
        """Steps ``start .. stop - 1`` of the ``num_steps`` schedule from state ``x`` (at timestep ``start``)."""
        if getattr(denoiser, "prediction_type", None) != "epsilon":
            raise ValueError(f"{type(self).__name__} drives epsilon denoisers, got {getattr(denoiser, 'prediction_type', None)!r}")
        sched = self.build(path, num_steps, device=x.device)
        timesteps = sched.timesteps
        stop = len(timesteps) if stop is None else int(stop)
        if not 0 <= start < stop <= len(timesteps):
            raise ValueError(f"steps [{start}, {stop}) outside the {len(timesteps)}-step schedule")
        if start > 0 and hasattr(sched, "set_begin_index"):
            sched.set_begin_index(start)
        total = stop - start
        for i in range(start, stop):
            k = timesteps[i]
            t = path.t_from_timestep(k.double().cpu()).to(device=x.device, dtype=torch.float32).reshape(1).expand(x.shape[0])
            eps = denoiser(sched.scale_model_input(x, k), t)
            x = sched.step(eps, k, x, generator=generator).prev_sample if _takes_generator(sched) else sched.step(eps, k, x).prev_sample
            for listener in list(STEP_LISTENERS):
                listener(self.name, i - start, total)
        return x

    def sample(self, denoiser: Callable[[Tensor, Tensor], Tensor], path: DiscreteDDPMPath, noise: Tensor,
               grid: Tensor | int, generator: Optional[torch.Generator] = None, progress: bool = False) -> Tensor:
        """The whole schedule from ``noise`` (``grid``: a step count, or a core grid whose length - 1 is used)."""
        num_steps = int(grid) if isinstance(grid, int) else len(grid) - 1
        sched = self.build(path, num_steps)
        return self.run(denoiser, path, noise * float(sched.init_noise_sigma), num_steps, generator=generator)

    def __repr__(self) -> str:
        return f"DiffusersSchedulerSampler({self.scheduler_name!r}, {self.config})"


def _takes_generator(sched: Any) -> bool:
    import inspect

    return "generator" in inspect.signature(sched.step).parameters


__all__ = ["DiffusersSchedulerSampler", "SCHEDULERS"]

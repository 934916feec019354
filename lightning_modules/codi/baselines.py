"""The Table 5.1 baselines CoDi is compared with (thesis 001, Ch. 5, Sec. 5.4), on the same network.

All use :class:`~lightning_modules.codi.base.CoDiBase` (SD-style backbone + conditional adapter) and,
where they distil, the frozen teacher of ``callbacks.teacher.TeacherCallback`` (``checkpoint_path``:
the earlier stage's checkpoint; the teacher is the same ``network`` architecture):

* :class:`ConditionalFinetune`: conditional diffusion fine-tuning (v-prediction MSE, uniform DDPM
  times), the first stage of CM-II and GD-II and the second stage of GD-I; sampled with DDIM.
* :class:`ConsistencyDistillation` (CM-II's second stage, Song et al. 2023): ``z_s`` is one DDIM step
  of the frozen (fine-tuned) teacher from ``z_t``; the loss is ``||F_theta(z_t, t) - F_theta-(z_s, s)||^2``
  in data space against the EMA target; no data term. "CM is implemented as ControlNet without
  freezing the UNet" (Sec. 5.4): ``adapter='controlnet'``, ``train_backbone=True`` by default.
  ``train_backbone=False`` is the "CM-II (frozen)" row of Table 5.2.
* :class:`GuidedDistillation` (GD, Meng et al. 2023 = progressive distillation with a guided teacher):
  one round halves the steps: the student's single DDIM step ``t -> t''`` matches two teacher DDIM
  steps ``t -> t' -> t''`` (Salimans & Ho's target ``x~``, truncated-SNR weight ``max(SNR, 1)``). The
  teacher is guided over the image condition with ``teacher_guidance`` (``v_null + w (v_c - v_null)``,
  null = the plain backbone; 1 = unguided). ``conditional=False`` distils the unconditional backbone
  (GD-I's first stage; its second stage is :class:`ConditionalFinetune` from that checkpoint, sampled
  with the distilled number of steps); GD-II is :class:`ConditionalFinetune` then this with
  ``conditional=True``. Rounds are chained by pointing ``TeacherCallback.checkpoint_path`` and
  ``init_checkpoint`` at the previous round and halving ``student_steps`` (e.g. 64 -> 32 -> ... -> 4).

[GAP] Teacher guidance scales, number of rounds and iterations per round are not given in the thesis;
the defaults here are 1 (SR has no meaningful null condition in the thesis) and configurable.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from torch import Tensor

from lightning_modules.codi.base import CoDiBase
from lightning_modules.codi.module import CoDi


def _teacher(trainer: Any):
    from callbacks.teacher import TeacherCallback

    return TeacherCallback.find(trainer)


class ConditionalFinetune(CoDiBase):
    """Conditional diffusion fine-tuning of the adapted LDM (v-prediction MSE); DDIM 50 steps by default."""

    method_name = "conditional fine-tune"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("sampler", "ddim")
        kwargs.setdefault("num_sampling_steps", 50)
        kwargs.setdefault("grid", "leading")
        super().__init__(*args, **kwargs)

    def finetune_loss(self, x: Tensor, cond: Optional[Tensor], ctx: Tensor,
                      generator: Optional[torch.Generator] = None) -> Tensor:
        t = self.time_sampler(x.shape[0], x.device, generator=generator).to(x.dtype)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        v = self.network_output(self.path.add_noise(x, noise, t), t, cond, ctx)
        view = (-1,) + (1,) * (x.ndim - 1)
        target = self.path.data_coef(t).view(view).to(x) * noise - self.path.noise_coef(t).view(view).to(x) * x
        return (v.float() - target.float()).pow(2).flatten(1).mean(1)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        x = self.encode(batch["image"])
        loss = self.finetune_loss(x, self.condition(batch), self.context(batch, x.shape[0])).mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        return loss


class ConsistencyDistillation(CoDi):
    """CM-II's distillation stage (module docstring); constructor arguments of :class:`CoDi`."""

    method_name = "CM-II"

    def method_label(self) -> str:
        return "CM-II" if self.train_backbone else "CM-II (frozen)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("intermediate", "teacher")
        kwargs.setdefault("adapter", "controlnet")
        kwargs.setdefault("lambda_x", 0.0)
        super().__init__(*args, **kwargs)

    def codi_loss(self, x: Tensor, cond: Tensor, ctx: Tensor, generator: Optional[torch.Generator] = None,
                  params: Optional[Mapping[str, Tensor]] = None) -> dict[str, Tensor]:
        t, s = self.step_times(x.shape[0], x.device, generator)
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        view = (-1,) + (1,) * (x.ndim - 1)
        z_t = self.path.data_coef(t).view(view).to(x) * x + self.path.noise_coef(t).view(view).to(x) * eps
        f_t = self.consistency(z_t, t, cond, ctx)
        with torch.no_grad():
            z_s = self._teacher_ddim_step(z_t, t, s, cond, ctx)
            f_s = self.consistency(z_s, s, cond, ctx, params=params if params is not None else self.target_parameters())
        loss = (f_t - f_s).pow(2).flatten(1).mean(1)
        data = (x - f_t).pow(2).flatten(1).mean(1) if self.lambda_x else torch.zeros_like(loss)
        return {"loss": loss + self.lambda_x * data, "eps": loss, "x": data}


class GuidedDistillation(CoDiBase):
    """One round of guided progressive distillation (module docstring).

    Args:
        student_steps: the student's number of DDIM steps this round (the teacher takes twice as many).
        teacher_guidance: guidance scale of the teacher over the image condition.
        conditional: distil the conditional model (GD-II) or the plain backbone (GD-I's first stage).
    """

    method_name = "GD"

    def method_label(self) -> str:
        return "GD-II" if self.conditional else "GD-I"

    def __init__(self, *args: Any, student_steps: int = 4, teacher_guidance: float = 1.0, conditional: bool = True,
                 **kwargs: Any) -> None:
        kwargs.setdefault("sampler", "ddim")
        kwargs.setdefault("num_sampling_steps", student_steps)
        super().__init__(*args, **kwargs)
        if student_steps < 1:
            raise ValueError(f"student_steps must be >= 1, got {student_steps}")
        self.student_steps, self.teacher_guidance, self.conditional = int(student_steps), float(teacher_guidance), conditional

    def step_time(self, position: Tensor) -> Tensor:
        """Path time of a fractional student-step position (0 = noisiest step, ``student_steps`` = data)."""
        T = self.path.num_train_timesteps
        k = (T - 1) - position.to(torch.float64) * T / self.student_steps
        return self.path.t_from_timestep(k.clamp(min=-1.0))

    def sampling_grid(self, num_steps: int, device: torch.device) -> Tensor:
        T = self.path.num_train_timesteps
        k = (T - 1) - torch.arange(num_steps, dtype=torch.float64) * T / num_steps
        return torch.cat([self.path.t_from_timestep(k), torch.ones(1, dtype=torch.float64)]).to(device)

    def _teacher_v(self, z: Tensor, t: Tensor, cond: Optional[Tensor], ctx: Tensor) -> Tensor:
        teacher = _teacher(self.trainer)
        k = self.path.network_time(t).to(z.dtype)
        if not self.conditional:
            return teacher(z, k, encoder_hidden_states=ctx, condition=None)
        v = teacher(z, k, encoder_hidden_states=ctx, condition=cond)
        if self.teacher_guidance == 1.0:
            return v
        v_null = teacher(z, k, encoder_hidden_states=ctx, condition=None)
        return v_null + self.teacher_guidance * (v - v_null)

    def _ddim(self, z: Tensor, v: Tensor, t: Tensor, s: Tensor) -> Tensor:
        x_hat, eps_hat = self.data_and_noise(v, z, t)
        view = (-1,) + (1,) * (z.ndim - 1)
        return self.path.data_coef(s).view(view).to(z) * x_hat + self.path.noise_coef(s).view(view).to(z) * eps_hat

    def distillation_loss(self, x: Tensor, cond: Optional[Tensor], ctx: Tensor,
                          generator: Optional[torch.Generator] = None) -> Tensor:
        b = x.shape[0]
        i = torch.randint(0, self.student_steps, (b,), generator=generator).to(torch.float64)
        t, t_mid, t_end = (self.step_time(i + d).to(device=x.device, dtype=torch.float32) for d in (0.0, 0.5, 1.0))
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        view = (-1,) + (1,) * (x.ndim - 1)
        a_t, s_t = self.path.data_coef(t).view(view).to(x), self.path.noise_coef(t).view(view).to(x)
        z_t = a_t * x + s_t * eps
        with torch.no_grad():
            z_mid = self._ddim(z_t, self._teacher_v(z_t, t, cond, ctx), t, t_mid)
            z_end = self._ddim(z_mid, self._teacher_v(z_mid, t_mid, cond, ctx), t_mid, t_end)
            a_e, s_e = self.path.data_coef(t_end).view(view).to(x), self.path.noise_coef(t_end).view(view).to(x)
            ratio = s_e / s_t
            x_target = (z_end - ratio * z_t) / (a_e - ratio * a_t)  # one student DDIM step lands on z_end
        v = self.network_output(z_t, t, cond if self.conditional else None, ctx)
        x_hat, _ = self.data_and_noise(v, z_t, t)
        weight = torch.clamp(a_t * a_t / (s_t * s_t), min=1.0).flatten()
        return weight * (x_hat - x_target).pow(2).flatten(1).mean(1)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        x = self.encode(batch["image"])
        cond = self.condition(batch) if self.conditional else None
        loss = self.distillation_loss(x, cond, self.context(batch, x.shape[0])).mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        return loss


__all__ = ["ConditionalFinetune", "ConsistencyDistillation", "GuidedDistillation"]

"""The Table 5.1 baselines CoDi is compared with (thesis 001, Ch. 5, Sec. 5.4), on the same network.

All use :class:`~lightning_modules.codi.base.CoDiBase` (SD-style backbone + conditional adapter) and,
where they distil, the frozen teacher of ``callbacks.teacher.TeacherCallback`` (``checkpoint_path``:
the earlier stage's checkpoint; the teacher is the same ``network`` architecture):

* :class:`ConditionalFinetune`: conditional diffusion fine-tuning (v-prediction MSE, uniform DDPM
  times), the first stage of CM-II and GD-II and the second stage of GD-I; sampled with DDIM (or
  ``dpm_solver`` / ``dpm_solver++``: the "+ DPM Solver(++)" rows). Its rows are the table's
  fine-tuned baselines: ``adapter='concat'`` -> "LDMs, N steps" (865M), ``'controlnet'`` with a frozen
  backbone -> "ControlNet, N steps", with a trained one -> "LDMs + ControlNet" (Table 5.3, 1.22B).
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
  Meng et al.'s first stage is the **w-conditioned** student: with ``guidance_range: [w_min, w_max]``
  and ``stage: guidance`` one network taking ``w`` as input (zero-initialised ``w`` embedding,
  :meth:`~lightning_modules.codi.adapter.ConditionalAdapterUNet.enable_guidance_embedding`) matches
  the teacher guided with ``w ~ U[w_min, w_max]`` at the same time (no halving); the progressive
  rounds (``stage: progressive``) then distil that w-conditioned model with ``w`` as input of teacher
  and student (no CFG). Sampling feeds ``guidance_scale`` as ``w``.

[GAP] Teacher guidance scales, number of rounds and iterations per round are not given in the thesis.
``configs/codi/gd*.yaml`` use Meng et al.'s ``w`` range [0, 14] for the guided stage ([GAP]: for SR the
null condition is the plain text-to-image backbone); the unguided default ``teacher_guidance: 1`` stays
for plain progressive rounds.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from torch import Tensor

from lightning_modules.codi.base import CoDiBase, load_network_weights
from lightning_modules.codi.module import CoDi

SOLVER_LABELS = {"dpm_solver": " + DPM Solver", "dpm_solver++": " + DPM Solver++"}
GD_STAGES = ("guidance", "progressive")


def _teacher(trainer: Any):
    from callbacks.teacher import TeacherCallback

    return TeacherCallback.find(trainer)


class ConditionalFinetune(CoDiBase):
    """Conditional diffusion fine-tuning of the adapted LDM (v-prediction MSE); DDIM 50 steps by default."""

    method_name = "LDMs"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("sampler", "ddim")
        kwargs.setdefault("num_sampling_steps", 50)
        kwargs.setdefault("grid", "leading")
        super().__init__(*args, **kwargs)
        self.check_teacher_use()

    def derived_label(self) -> str:
        """"LDMs" / "ControlNet" / "LDMs + ControlNet", the solver ("+ DPM Solver++") and ", N steps" (module docstring)."""
        mode = self.network.mode
        if mode == "controlnet":
            label = "LDMs + ControlNet" if self.train_backbone else "ControlNet"
        elif mode == "concat":
            label = "LDMs"
        else:
            label = "LDMs + CoDi adapter"  # not a row of the thesis
        label += SOLVER_LABELS.get(getattr(self.sampler, "name", ""), "")
        return label + self.steps_suffix()

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

    def derived_label(self) -> str:
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
    """One stage of guided (progressive) distillation (module docstring).

    Args:
        student_steps: the student's number of DDIM steps this round (the teacher takes twice as many).
        teacher_guidance: guidance scale of the teacher over the image condition (without ``guidance_range``).
        conditional: distil the conditional model (GD-II) or the plain backbone (GD-I's first stage).
        guidance_range: ``[w_min, w_max]``: a w-conditioned student (``w`` drawn uniformly per sample);
            ``None``: a plain student of the fixed ``teacher_guidance``.
        stage: ``'guidance'`` (Meng et al.'s stage one: match the ``w``-guided teacher at the same time;
            the teacher is the starting network, leave ``teacher_checkpoint`` unset) or ``'progressive'``
            (halve the steps; with ``guidance_range`` the teacher is the previous w-conditioned round).
    """

    method_name = "GD"

    def derived_label(self) -> str:
        return "GD-II" if self.conditional else "GD-I"

    def uses_teacher(self) -> bool:
        return True

    def __init__(self, *args: Any, student_steps: int = 4, teacher_guidance: float = 1.0, conditional: bool = True,
                 guidance_range: Optional[list[float]] = None, stage: str = "progressive", **kwargs: Any) -> None:
        kwargs.setdefault("sampler", "ddim")
        kwargs.setdefault("num_sampling_steps", student_steps)
        init_checkpoint = kwargs.pop("init_checkpoint", None)
        super().__init__(*args, **kwargs)
        if student_steps < 1:
            raise ValueError(f"student_steps must be >= 1, got {student_steps}")
        if stage not in GD_STAGES:
            raise ValueError(f"stage={stage!r} is not one of {list(GD_STAGES)}")
        if stage == "guidance" and guidance_range is None:
            raise ValueError("stage: guidance trains the w-conditioned student; set guidance_range: [w_min, w_max]")
        if guidance_range is not None:
            if len(guidance_range) != 2 or not float(guidance_range[0]) <= float(guidance_range[1]):
                raise ValueError(f"guidance_range must be [w_min, w_max] with w_min <= w_max, got {guidance_range}")
            self.network.enable_guidance_embedding()
        if init_checkpoint is not None:  # after the w embedding exists: a w-conditioned round loads into it
            load_network_weights(self.network, init_checkpoint)
            self.network.set_backbone_trainable(self.train_backbone)
        self.student_steps, self.teacher_guidance, self.conditional = int(student_steps), float(teacher_guidance), conditional
        self.guidance_range = None if guidance_range is None else (float(guidance_range[0]), float(guidance_range[1]))
        self.stage = stage
        self.check_teacher_use()

    @property
    def w_conditioned(self) -> bool:
        return self.guidance_range is not None

    def sample_w(self, batch: int, device: torch.device, generator: Optional[torch.Generator] = None) -> Tensor:
        lo, hi = self.guidance_range
        return (lo + (hi - lo) * torch.rand(batch, generator=generator)).to(device)

    def text_guidance(self, guidance_scale: Optional[float] = None) -> float:
        """A w-conditioned student takes ``guidance_scale`` as its ``w`` input: no second (text CFG) pass."""
        return 1.0 if self.w_conditioned else super().text_guidance(guidance_scale)

    def sampling_denoiser(self, cond: Optional[Tensor], ctx: Tensor, null_ctx: Optional[Tensor] = None, w: float = 1.0):
        if not self.w_conditioned:
            return super().sampling_denoiser(cond, ctx, null_ctx, w)
        from lightning_modules.codi.base import ConditionalDenoiser

        w = torch.tensor([float(self.guidance_scale)])
        return ConditionalDenoiser(lambda z, t: self.network_output(z, t, cond, ctx, guidance=w.to(z.device)),
                                   self.prediction_type)

    def step_time(self, position: Tensor) -> Tensor:
        """Path time of a fractional student-step position (0 = noisiest step, ``student_steps`` = data)."""
        T = self.path.num_train_timesteps
        k = (T - 1) - position.to(torch.float64) * T / self.student_steps
        return self.path.t_from_timestep(k.clamp(min=-1.0))

    def sampling_grid(self, num_steps: int, device: torch.device) -> Tensor:
        T = self.path.num_train_timesteps
        k = (T - 1) - torch.arange(num_steps, dtype=torch.float64) * T / num_steps
        return torch.cat([self.path.t_from_timestep(k), torch.ones(1, dtype=torch.float64)]).to(device)

    def _teacher_v(self, z: Tensor, t: Tensor, cond: Optional[Tensor], ctx: Tensor, w: Optional[Tensor] = None) -> Tensor:
        """The teacher's output: guided with ``w`` (CFG over the image condition), or fed ``w`` when it is itself
        w-conditioned (the progressive rounds after the guidance stage)."""
        teacher = _teacher(self.trainer)
        k = self.path.network_time(t).to(z.dtype)
        if not self.conditional:
            cond = None
        if self.w_conditioned and self.stage == "progressive":
            return teacher(z, k, encoder_hidden_states=ctx, condition=cond, guidance=w)
        scale = w.view(-1, *([1] * (z.ndim - 1))).to(z) if w is not None else self.teacher_guidance
        if cond is None or (w is None and self.teacher_guidance == 1.0):
            return teacher(z, k, encoder_hidden_states=ctx, condition=cond)
        v = teacher(z, k, encoder_hidden_states=ctx, condition=cond)
        v_null = teacher(z, k, encoder_hidden_states=ctx, condition=None)
        return v_null + scale * (v - v_null)

    def guidance_loss(self, x: Tensor, cond: Optional[Tensor], ctx: Tensor,
                      generator: Optional[torch.Generator] = None) -> Tensor:
        """Stage one of Meng et al.: the w-conditioned student's ``x_hat`` matches the w-guided teacher's."""
        b = x.shape[0]
        t = self.time_sampler(b, x.device, generator=generator).to(x.dtype)
        w = self.sample_w(b, x.device, generator)
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        z_t = self.path.add_noise(x, eps, t)
        with torch.no_grad():
            x_teacher, _ = self.data_and_noise(self._teacher_v(z_t, t, cond, ctx, w), z_t, t)
        v = self.network_output(z_t, t, cond if self.conditional else None, ctx, guidance=w)
        x_hat, _ = self.data_and_noise(v, z_t, t)
        view = (-1,) + (1,) * (x.ndim - 1)
        a_t, s_t = self.path.data_coef(t).view(view).to(x), self.path.noise_coef(t).view(view).to(x)
        weight = torch.clamp(a_t * a_t / (s_t * s_t), min=1.0).flatten()
        return weight * (x_hat - x_teacher).pow(2).flatten(1).mean(1)

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
        w = self.sample_w(b, x.device, generator) if self.w_conditioned else None
        with torch.no_grad():
            z_mid = self._ddim(z_t, self._teacher_v(z_t, t, cond, ctx, w), t, t_mid)
            z_end = self._ddim(z_mid, self._teacher_v(z_mid, t_mid, cond, ctx, w), t_mid, t_end)
            a_e, s_e = self.path.data_coef(t_end).view(view).to(x), self.path.noise_coef(t_end).view(view).to(x)
            ratio = s_e / s_t
            x_target = (z_end - ratio * z_t) / (a_e - ratio * a_t)  # one student DDIM step lands on z_end
        v = self.network_output(z_t, t, cond if self.conditional else None, ctx, guidance=w)
        x_hat, _ = self.data_and_noise(v, z_t, t)
        weight = torch.clamp(a_t * a_t / (s_t * s_t), min=1.0).flatten()
        return weight * (x_hat - x_target).pow(2).flatten(1).mean(1)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        x = self.encode(batch["image"])
        cond = self.condition(batch) if self.conditional else None
        terms = self.guidance_loss if self.stage == "guidance" else self.distillation_loss
        loss = terms(x, cond, self.context(batch, x.shape[0])).mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        return loss


__all__ = ["ConditionalFinetune", "ConsistencyDistillation", "GD_STAGES", "GuidedDistillation", "SOLVER_LABELS"]

"""CoDi: conditional diffusion distillation (thesis 001, Ch. 5, Sec. 5.3, Eqs. 5.2-5.6) and PE-CoDi.

One stage turns a pretrained text-to-image LDM into a conditional model that samples in 1-8 steps
(4 is the main setting), without the original text-to-image data. Per training batch:

1. ``x`` = VAE latent of the target image, ``c`` = the task condition (:class:`CoDiBase`).
2. ``eps ~ N(0, I)``; **one step index shared by the whole batch** (Fig. 5.6: better than per-sample
   for 1-4 steps; ``shared_timestep=False`` gives per-sample indices).
3. ``z_t = alpha_t x + sigma_t eps``.
4. Eq. 5.5: ``z_s = alpha_s x_hat_theta(z_t, c, t) + sigma_s eps`` with the **adapted model's own**
   clean estimate and the **same noise** (``intermediate='teacher'`` uses a DDIM step of the frozen
   teacher from ``TeacherCallback`` instead: the "- distilling PF-ODE" ablation of Table 5.3).
5. Eq. 5.6: ``d_eps(eps_theta-(z_s, s, c), eps_theta(z_t, t, c)) + lambda_x d_x(x, x_theta(z_t, t, c))``,
   where ``theta-`` is the EMA target network (the weights averaged by ``EMACallback``; before its
   first update, a stop-gradient copy of the online weights), ``eps`` and ``x`` predictions come from
   the v-prediction (Eq. 1.9) through the consistency boundary parametrisation of Eq. 5.2
   (:class:`~lightning_modules.codi.boundary.ConsistencyBoundary`: identity at the boundary).
   ``d_x`` is latent L2 by default; ``pixel_l2``, ``enc_dec_l2`` and ``lpips`` are the Fig. 5.1
   alternatives; ``lambda_x = 0`` is the "no conditional guidance" ablation, ``lambda_eps = 0`` the
   "- noise-consistency" one.

PE-CoDi (``train_backbone=False``) trains only the encoder copy and ``mu``.

Choices where the thesis is silent ([GAP], also in ``docs/codi.md``):

* step grid: DDPM timesteps ``k_j = (T - 1) - skip * (N - 1 - j)``, ``j = 0..N-1`` with ``skip = 20``
  (``N = 50``: ``19, 39, ..., 999``, the LCM-style skipping step); ``t = k_j``, ``s = k_{j-1}``,
  ``j >= 1``; the boundary is ``k_0 = 19``;
* boundary functions: the authors' released code (LCM convention): the DDPM step times
  ``timestep_scaling = 10`` into the EDM ``c_skip``/``c_out``, ``sigma_data = 0.5``
  (:mod:`lightning_modules.codi.boundary`);
* ``z_s`` uses a stop-gradient clean estimate (the target side of a consistency loss carries no gradient);
* EMA rate of the target: 0.95 without warm-up (CM's consistency-distillation target rate),
  set on the ``EMACallback`` in the config;
* ``d_eps``: L2 (mean over elements); ``lambda_x = 1`` (the thesis's implicit 1:1);
* sampling: the consistency multistep sampler on diffusers' ``trailing`` DDPM timesteps
  (4 steps: 999, 749, 499, 249), 1 / 2 / 4 / 8 steps by ``num_sampling_steps``.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.codi.base import CoDiBase, ConditionalDenoiser, shared_or_per_sample
from lightning_modules.codi.boundary import ConsistencyBoundary

log = logging.getLogger(__name__)

DX_CHOICES = ("latent_l2", "pixel_l2", "enc_dec_l2", "lpips")
DEPS_CHOICES = ("l2", "huber")
INTERMEDIATE_CHOICES = ("self", "teacher")


def ema_parameters(trainer: Any, prefix: str = "network.") -> Optional[dict[str, Tensor]]:
    """The EMA callback's averaged tensors under ``prefix`` (names without it), or ``None``.

    ``None`` when there is no EMA callback or no average yet.
    """
    if trainer is None:
        return None
    from callbacks.ema import EMACallback

    for cb in trainer.callbacks:
        if isinstance(cb, EMACallback) and cb.initialized:
            averaged = cb.averaged_parameters()
            return {n[len(prefix):]: t for n, t in averaged.items() if n.startswith(prefix)}
    return None


class CoDi(CoDiBase):
    """CoDi / PE-CoDi training (module docstring); constructor arguments of :class:`CoDiBase` plus:

    Args:
        skip: DDPM timesteps between consecutive points of the step grid (20 -> N = 50).
        shared_timestep: one step index for the whole batch (thesis) or one per sample.
        intermediate: ``'self'`` (Eq. 5.5) or ``'teacher'`` (frozen teacher DDIM step, ablation).
        distance_x: ``d_x``: ``latent_l2`` (default), ``pixel_l2``, ``enc_dec_l2``, ``lpips`` (needs ``lpips``).
        distance_eps: ``d_eps``: ``l2`` or ``huber`` (pseudo-Huber, c = 0.001 per element scale).
        lambda_x / lambda_eps: weights of the two terms of Eq. 5.6.
        sigma_data: ``sigma_data`` of the boundary functions.
        timestep_scaling: multiplier of the DDPM step in the boundary functions (10, the authors'
            code; 1: unscaled LCM form; null: Consistency Models' sigma form, identity at the
            lowest grid point, an ablation).
        lpips: LPIPS network for ``distance_x='lpips'`` (e.g. ``metrics.LPIPSNetwork``).
    """

    method_name = "CoDi (Ours)"

    def derived_label(self) -> str:
        """``CoDi (Ours)`` / ``PE-CoDi (Ours)`` (+ ``, 4 steps`` in Table 5.2) and the Table 5.3 ablations."""
        if not self.train_backbone:
            return "PE-CoDi (Ours)" + self.steps_suffix()
        label = self.method_name
        if self.intermediate == "teacher":
            label += " - distilling PF-ODE"
        if self.lambda_eps == 0.0:
            label += " - noise-consistency"
        return label

    def uses_teacher(self) -> bool:
        return self.intermediate == "teacher"

    def __init__(
        self,
        *args: Any,
        skip: int = 20,
        shared_timestep: bool = True,
        intermediate: str = "self",
        distance_x: str = "latent_l2",
        distance_eps: str = "l2",
        lambda_x: float = 1.0,
        lambda_eps: float = 1.0,
        sigma_data: float = 0.5,
        timestep_scaling: Optional[float] = 10.0,
        lpips: Optional[nn.Module] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        for name, value, choices in (("distance_x", distance_x, DX_CHOICES), ("distance_eps", distance_eps, DEPS_CHOICES),
                                     ("intermediate", intermediate, INTERMEDIATE_CHOICES)):
            if value not in choices:
                raise ValueError(f"{name}={value!r} is not one of {list(choices)}")
        if distance_x == "lpips" and lpips is None:
            raise ValueError("distance_x='lpips' needs model.init_args.lpips (an LPIPS network, e.g. metrics.LPIPSNetwork)")
        T = self.path.num_train_timesteps
        if not 1 <= skip < T:
            raise ValueError(f"skip must be in [1, {T - 1}], got {skip}")
        self.skip = int(skip)
        self.grid_timesteps = torch.arange(T - 1, -1, -self.skip, dtype=torch.float64).flip(0)  # 19, 39, ..., 999
        if len(self.grid_timesteps) < 2:
            raise ValueError(f"skip={skip} leaves fewer than 2 grid points")
        # the authors' convention is the identity at DDPM step 0; the sigma form keeps the lowest grid point
        t_boundary = None if timestep_scaling is not None else float(self.path.t_from_timestep(self.grid_timesteps[:1])[0])
        self.boundary = ConsistencyBoundary(self.path, t_boundary, sigma_data, timestep_scaling)
        self.shared_timestep, self.intermediate = bool(shared_timestep), intermediate
        self.distance_x, self.distance_eps = distance_x, distance_eps
        self.lambda_x, self.lambda_eps = float(lambda_x), float(lambda_eps)
        if lpips is not None:
            self.register_frozen("lpips", lpips)
        self._warned_no_ema = False
        self.check_teacher_use()

    # ------------------------------------------------------------------ the consistency function
    def consistency(self, z: Tensor, t: Tensor, cond: Optional[Tensor], ctx: Tensor,
                    params: Optional[Mapping[str, Tensor]] = None, null_ctx: Optional[Tensor] = None,
                    w: float = 1.0) -> Tensor:
        """``F(z_t, t, c)``: the boundary-parametrised clean latent (Eq. 5.2); ``null_ctx``/``w``: text CFG at sampling."""
        v = self.guided_output(z, t, cond, ctx, null_ctx, w, params=params)
        x_hat, _ = self.data_and_noise(v, z, t)
        return self.boundary.apply(z, x_hat, t)

    def sampling_denoiser(self, cond: Optional[Tensor], ctx: Tensor, null_ctx: Optional[Tensor] = None,
                          w: float = 1.0) -> ConditionalDenoiser:
        return ConditionalDenoiser(lambda z, t: self.consistency(z, t, cond, ctx, null_ctx=null_ctx, w=w), "sample")

    # ------------------------------------------------------------------ the loss of Eqs. 5.4-5.6
    def target_parameters(self) -> Optional[dict[str, Tensor]]:
        params = ema_parameters(self._trainer if self._trainer is not None else None)
        if params is None and not self._warned_no_ema and self._trainer is not None:
            log.warning("CoDi: no EMACallback average yet; the target network is the online network (stop-grad)")
            self._warned_no_ema = True
        return params

    def step_times(self, batch: int, device: torch.device, generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
        """Path times ``(t, s)`` of a training pair (``s`` one grid point closer to the data)."""
        j = shared_or_per_sample(len(self.grid_timesteps), batch, self.shared_timestep, torch.device("cpu"),
                                 low=1, generator=generator)
        k_t, k_s = self.grid_timesteps[j], self.grid_timesteps[j - 1]
        t = self.path.t_from_timestep(k_t).to(device=device, dtype=torch.float32)
        s = self.path.t_from_timestep(k_s).to(device=device, dtype=torch.float32)
        return t, s

    def _distance_eps(self, a: Tensor, b: Tensor) -> Tensor:
        if self.distance_eps == "l2":
            return (a - b).pow(2).flatten(1).mean(1)
        c = 0.001
        return (torch.sqrt((a - b).pow(2) + c * c) - c).flatten(1).mean(1)

    def _distance_x(self, x: Tensor, x_hat: Tensor) -> Tensor:
        if self.distance_x == "latent_l2":
            return (x - x_hat).pow(2).flatten(1).mean(1)
        if self.distance_x == "enc_dec_l2":
            round_trip = self._encode_grad(self.decode_latents(x_hat).clamp(-1, 1))
            return (x - round_trip).pow(2).flatten(1).mean(1)
        pixels_hat = self.decode_latents(x_hat)
        with torch.no_grad():
            pixels = self.decode_latents(x)
        if self.distance_x == "pixel_l2":
            return (pixels - pixels_hat).pow(2).flatten(1).mean(1)
        distance = self.lpips(pixels_hat.clamp(-1, 1), pixels.clamp(-1, 1))
        return distance.reshape(distance.shape[0], -1).mean(1)

    def _encode_grad(self, images: Tensor) -> Tensor:
        if not hasattr(self, "vae"):
            return images
        return self.vae.encode(images.to(self.vae.dtype)).latent_dist.mean.float() * self.vae_scale

    def codi_loss(self, x: Tensor, cond: Tensor, ctx: Tensor, generator: Optional[torch.Generator] = None,
                  params: Optional[Mapping[str, Tensor]] = None) -> dict[str, Tensor]:
        """Per-sample terms of Eq. 5.6 (``params``: the target weights; default from the EMA callback)."""
        b = x.shape[0]
        t, s = self.step_times(b, x.device, generator)
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        view = (-1,) + (1,) * (x.ndim - 1)
        a_t, b_t = self.path.data_coef(t).view(view).to(x), self.path.noise_coef(t).view(view).to(x)
        a_s, b_s = self.path.data_coef(s).view(view).to(x), self.path.noise_coef(s).view(view).to(x)
        z_t = a_t * x + b_t * eps
        f_t = self.consistency(z_t, t, cond, ctx)
        eps_t = self.boundary.noise(z_t, f_t, t)
        with torch.no_grad():
            if self.intermediate == "self":
                z_s = a_s * f_t.detach() + b_s * eps  # Eq. 5.5: own estimate, same noise
            else:
                z_s = self._teacher_ddim_step(z_t, t, s, cond, ctx)
            if params is None:
                params = self.target_parameters()
            f_s = self.consistency(z_s, s, cond, ctx, params=params)
            eps_s = self.boundary.noise(z_s, f_s, s)
        loss_eps = self._distance_eps(eps_t, eps_s)
        loss_x = self._distance_x(x, f_t) if self.lambda_x else torch.zeros_like(loss_eps)
        return {"loss": self.lambda_eps * loss_eps + self.lambda_x * loss_x, "eps": loss_eps, "x": loss_x}

    def _teacher_ddim_step(self, z_t: Tensor, t: Tensor, s: Tensor, cond: Tensor, ctx: Tensor) -> Tensor:
        from callbacks.teacher import TeacherCallback

        teacher = TeacherCallback.find(self.trainer)
        k = self.path.network_time(t).to(z_t.dtype)
        v = teacher(z_t, k, encoder_hidden_states=ctx, condition=cond)
        x_hat, eps_hat = self.data_and_noise(v, z_t, t)
        view = (-1,) + (1,) * (z_t.ndim - 1)
        return self.path.data_coef(s).view(view).to(z_t) * x_hat + self.path.noise_coef(s).view(view).to(z_t) * eps_hat

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        x = self.encode(batch["image"])
        cond = self.condition(batch)
        ctx = self.context(batch, x.shape[0])
        terms = self.codi_loss(x, cond, ctx)
        loss = terms["loss"].mean()
        size = x.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/loss_eps", terms["eps"].mean(), batch_size=size)
        self.log("train/loss_x", terms["x"].mean(), batch_size=size)
        return loss


__all__ = ["CoDi", "DEPS_CHOICES", "DX_CHOICES", "ema_parameters"]

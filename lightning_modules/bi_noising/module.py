"""``BiNoisingRestoration``: conditional diffusion through re-noising (thesis 001 Ch. 8, §8.3, Eqs. 8.5-8.14).

Diffusion from the suite core (no second implementation): the DDPM linear schedule
``1e-4 -> 0.02`` over ``T = 1000`` ("the pre-defined variance schedule", §8.3.1; [ext] ADM's
``noise_schedule=linear``) as :class:`diffusion.paths.DiscreteDDPMPath`, integer training steps
(:class:`diffusion.time_samplers.DiscreteTimeSampler`), epsilon prediction.

Training (the conditional model f_phi only; the prior is frozen):

* ``L_simple = E ||eps - f_phi(x0, y_t, t)||^2`` (Eqs. 8.5 / 8.12), ``y_t = sqrt(abar_t) y0 + sqrt(1 - abar_t) eps``;
* the deraining correction prior ``L_corr = c_t ||f_phi(x_t, x0, t) - f_phi(y_t, x0, t)||^2`` (Eq. 8.13)
  with ``L_final = L_simple + lambda_corr L_corr`` (Eq. 8.14, ``corr_weight``; 0.001 in the thesis,
  set in ``configs/bi_noising_derain.yaml``). [GAP] ``x_t`` is not defined: we noise the degraded
  condition image with the *same* ``eps`` and ``t`` (``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``).
  The weight written ``alpha_t`` is taken literally, ``1 - beta_t`` (``corr_coefficient='alpha'``;
  ``'alpha_bar'`` and ``'one'`` are the other readings). No stop-gradient by default
  (``corr_stop_gradient``: ``none`` / ``clean`` / ``degraded`` detaches that side).
* the nonparametric variant (§8.4.5, "w/o parametric"): ``nonparametric: true`` has no separate prior;
  the condition is replaced by the null token (zeros, :mod:`.networks`) with probability
  ``null_cond_prob`` ([GAP] 0.1, Ho & Salimans' usual value) and the null pass is the prior.

Sampling: the samplers of :mod:`diffusion.bi_noising` (``bi_noising`` with ``binoise_steps``,
``sr3``, ``ilvr`` with ``ilvr_factor``, ``replacement``, ``cfg`` with ``guidance_scale``), chosen by
``model.sampler`` (or the evaluation callback's ``sampler``). DDPM ancestral steps with
``variance_type='fixed_large'`` (``sigma_t^2 = beta_t``, Eq. 8.6's ``sqrt(1 - alpha_t) z``). [GAP] The
number of steps is not given; 100 respaced steps (``linspace``, guided-diffusion's respacing
placement) by default. Every sampling call counts its network calls (``last_network_calls``) and
times itself (``last_sampling_seconds``) for the running-time rows.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Mapping, Optional, Union

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from diffusion.bi_noising import CountingDenoiser, RestorationSampler, build_restoration_sampler
from diffusion.denoisers import NetworkDenoiser
from diffusion.paths import DiscreteDDPMPath
from diffusion.time_samplers import DiscreteTimeSampler
from lightning_modules.bi_noising.networks import ConditionalADMUNet, EpsilonOnly, load_prior_weights
from lightning_modules.components.adm_unet import ADMUNet
from lightning_modules.components.loss_term_steps import LossTermSteps
from lightning_modules.diffusion_module import DiffusionModule

log = logging.getLogger(__name__)

CORR_COEFFICIENTS = ("alpha", "alpha_bar", "one")
STOP_GRADIENTS = ("none", "clean", "degraded")


class BiNoisingRestoration(LossTermSteps, DiffusionModule):
    """Bi-Noising (module docstring).

    Args:
        network: f_phi, a :class:`ConditionalADMUNet`.
        prior: the unconditional eps_theta (:class:`ADMUNet`; ``learn_sigma`` networks give their
            epsilon half); ``None`` with ``nonparametric``. Frozen. Loaded from ``prior_checkpoint`` it
            stays out of the Lightning checkpoint (reloaded from its file); a random stand-in is kept in it.
        prior_checkpoint: guided-diffusion ``.pt`` (e.g. ILVR/P2's ``ffhq_10m.pt`` for faces,
            ``256x256_diffusion_uncond.pt`` for ImageNet) or the ``bi_noising_prior`` EMA export;
            ``None`` keeps the prior's random initialisation (a stand-in, seeded by ``prior_seed``).
        nonparametric, null_cond_prob: the single-network variant and its condition dropout.
        task: the data task (recorded in predict manifests; SR maps outputs to 4x the input).
        corr_weight, corr_coefficient, corr_stop_gradient: ``lambda_corr`` and the reading of Eq. 8.13.
        image_size: model resolution S (256).
        num_train_timesteps, beta_start, beta_end: the linear DDPM schedule.
        sampler, num_sampling_steps, grid: restoration sampler name, steps, step placement.
        binoise_steps, ilvr_factor, replacement_known, guidance_scale, variance_type, clip_denoised:
            sampler options (:mod:`diffusion.bi_noising`).
        optimizer, lr_scheduler, val_seed, predict_seed: as :class:`DiffusionModule`.
    """

    logged_loss_terms = ("simple", "corr")

    def __init__(
        self,
        network: ConditionalADMUNet,
        prior: Optional[ADMUNet] = None,
        prior_checkpoint: Optional[str] = None,
        nonparametric: bool = False,
        null_cond_prob: float = 0.1,
        task: str = "colorization",
        corr_weight: float = 0.0,
        corr_coefficient: str = "alpha",
        corr_stop_gradient: str = "none",
        image_size: int = 256,
        num_train_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        sampler: str = "bi_noising",
        num_sampling_steps: int = 100,
        grid: str = "linspace",
        binoise_steps: Union[str, float] = "all",
        ilvr_factor: int = 4,
        replacement_known: str = "gray",
        guidance_scale: float = 1.0,
        variance_type: str = "fixed_large",
        clip_denoised: bool = True,
        prior_seed: int = 0,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: Optional[LRSchedulerCallable] = None,
        val_seed: int = 1234,
        predict_seed: int = 0,
    ) -> None:
        if nonparametric and (prior is not None or prior_checkpoint):
            raise ValueError("model.nonparametric=true uses f_phi with the null condition as its prior: "
                             "leave model.prior and model.prior_checkpoint unset")
        if not nonparametric and prior is None:
            raise ValueError("model.prior is required (an ADMUNet; set model.prior_checkpoint to load guided-diffusion "
                             "weights) unless model.nonparametric=true")
        if corr_coefficient not in CORR_COEFFICIENTS:
            raise ValueError(f"model.corr_coefficient={corr_coefficient!r} is not one of {list(CORR_COEFFICIENTS)}")
        if corr_stop_gradient not in STOP_GRADIENTS:
            raise ValueError(f"model.corr_stop_gradient={corr_stop_gradient!r} is not one of {list(STOP_GRADIENTS)}")
        if not 0.0 <= null_cond_prob < 1.0:
            raise ValueError(f"model.null_cond_prob must be in [0, 1), got {null_cond_prob}")
        if image_size % network.downsample_factor:
            raise ValueError(f"model.image_size={image_size} must be divisible by {network.downsample_factor} (the UNet depth)")
        path = DiscreteDDPMPath("linear", beta_start, beta_end, num_train_timesteps)
        super().__init__(network=network, path=path, prediction_type="epsilon", time_sampler=DiscreteTimeSampler(path),
                         sampler="ddpm", num_sampling_steps=num_sampling_steps, grid=grid,
                         guidance_scale=guidance_scale, sample_shape=(network.image_channels, image_size, image_size),
                         optimizer=optimizer, lr_scheduler=lr_scheduler, val_seed=val_seed, predict_seed=predict_seed)
        self.save_hyperparameters(ignore=["network", "prior"])
        self.sampler_options = dict(binoise_steps=binoise_steps, ilvr_factor=int(ilvr_factor),
                                    replacement_known=replacement_known, guidance_scale=float(guidance_scale),
                                    variance_type=variance_type, clip_denoised=bool(clip_denoised))
        self.sampler = self.resolve_sampler(sampler)
        self.nonparametric, self.null_cond_prob, self.task = bool(nonparametric), float(null_cond_prob), task
        self.corr_weight, self.corr_coefficient, self.corr_stop_gradient = float(corr_weight), corr_coefficient, corr_stop_gradient
        self.image_size = int(image_size)
        self.prior = prior
        self.uses_random_weights = False
        if prior is not None:
            if prior.in_channels != network.image_channels:
                raise ValueError(f"model.prior has {prior.in_channels} input channels; the images have {network.image_channels}")
            if prior_checkpoint:
                load_prior_weights(prior, prior_checkpoint)
                log.info("BiNoisingRestoration: prior eps_theta loaded from %s", prior_checkpoint)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(prior_seed)
                    for m in prior.modules():
                        if hasattr(m, "reset_parameters") and m is not prior:
                            m.reset_parameters()
                log.warning("BiNoisingRestoration: model.prior_checkpoint is null -> the prior is a random stand-in "
                            "(seed %d); results are not the paper's", prior_seed)
                self.uses_random_weights = True
            prior.requires_grad_(False)
            prior.eval()
            if prior_checkpoint:  # a pretrained frozen part: outside the checkpoint, reloaded from its file
                self.register_frozen("prior", prior)
        self.last_network_calls = 0
        self.last_sampling_seconds = 0.0

    def train(self, mode: bool = True) -> "BiNoisingRestoration":
        super().train(mode)
        if self.prior is not None:
            self.prior.eval()  # frozen eps_theta never trains (dropout off)
        return self

    # ------------------------------------------------------------------ samplers
    def resolve_sampler(self, sampler: Any) -> RestorationSampler:
        if sampler is None:
            return self.sampler
        if isinstance(sampler, RestorationSampler):
            return sampler
        return build_restoration_sampler(str(sampler), **self.sampler_options)

    def sampling_parameters(self, sampler: Any = None) -> int:
        """Parameters a sampler runs: f_phi, plus eps_theta when it calls the separate prior (Table 8.4)."""
        chosen = self.resolve_sampler(sampler)
        count = sum(p.numel() for p in self.network.parameters())
        uses_prior = chosen.name in ("ilvr", "replacement") or (
            chosen.name == "bi_noising" and str(self.sampler_options["binoise_steps"]) != "none")
        if uses_prior and self.prior is not None:
            count += sum(p.numel() for p in self.prior.parameters())
        return count

    def nfe(self, num_steps: Optional[int] = None, sampler: Any = None, guidance_scale: Optional[float] = None) -> int:
        steps = int(num_steps or self.num_sampling_steps)
        return self.resolve_sampler(sampler).num_evaluations(self.sampling_grid(steps, torch.device("cpu")))

    # ------------------------------------------------------------------ losses
    def _drop_conditions(self, condition: Tensor) -> Tensor:
        if not (self.nonparametric and self.training and self.null_cond_prob > 0):
            return condition
        keep = (torch.rand(condition.shape[0], device=condition.device) >= self.null_cond_prob).to(condition.dtype)
        return condition * keep[:, None, None, None]  # the null token is the zero image

    def _corr_coefficient(self, t: Tensor) -> Tensor:
        if self.corr_coefficient == "one":
            return torch.ones_like(t)
        if self.corr_coefficient == "alpha_bar":
            return self.path.data_coef(t) ** 2
        k = self.path.timestep_from_t(t).round().long().clamp(0, self.path.num_train_timesteps - 1)
        return (1.0 - self.path.betas.to(t.device)[k]).to(t.dtype)

    def losses(self, batch: Mapping[str, Tensor], generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        """Per-sample ``{"simple", "corr", "total"}`` (Eqs. 8.12-8.14)."""
        y0, cond = batch["image"], self.check_condition(batch["condition"], batch["image"].shape[0])
        cond = self._drop_conditions(cond)
        t = self.time_sampler(y0.shape[0], y0.device, generator=generator).to(y0.dtype)
        noise = torch.randn(y0.shape, generator=generator, device=y0.device, dtype=y0.dtype)
        y_t = self.path.add_noise(y0, noise, t)
        net_t = self.path.network_time(t)
        eps_y = self.network(y_t, net_t, cond)
        terms = {"simple": (eps_y.float() - noise.float()).pow(2).flatten(1).mean(1)}
        total = terms["simple"]
        if self.corr_weight:
            x_t = self.path.add_noise(batch["condition"], noise, t)
            eps_x = self.network(x_t, net_t, cond)
            if self.corr_stop_gradient == "clean":
                eps_y = eps_y.detach()
            elif self.corr_stop_gradient == "degraded":
                eps_x = eps_x.detach()
            terms["corr"] = self._corr_coefficient(t).float() * correction_loss(eps_x, eps_y)
            total = total + self.corr_weight * terms["corr"]
        terms["total"] = total
        return terms

    # ------------------------------------------------------------------ sampling
    def check_condition(self, condition: Tensor, batch: Optional[int] = None) -> Tensor:
        want = (self.network.condition_channels, self.image_size, self.image_size)
        if condition.ndim != 4 or tuple(condition.shape[1:]) != want or (batch is not None and condition.shape[0] != batch):
            raise ValueError(f"task {self.task!r}: the condition must be [B, {want[0]}, {want[1]}, {want[2]}] (model.image_size="
                             f"{self.image_size}; SR inputs are the LR image bicubic-upsampled to it), got {tuple(condition.shape)}")
        return condition

    def denoisers(self, condition: Tensor) -> tuple[CountingDenoiser, Optional[CountingDenoiser]]:
        """``(f_phi(x0, ., t), eps_theta(., t))`` as counted epsilon denoisers."""
        cond = CountingDenoiser(NetworkDenoiser(self.network, self.path, "epsilon", condition=condition))
        if self.nonparametric:
            prior = CountingDenoiser(NetworkDenoiser(self.network, self.path, "epsilon", condition=None))
        else:
            prior = CountingDenoiser(NetworkDenoiser(EpsilonOnly(self.prior, self.network.image_channels), self.path, "epsilon"))
        return cond, prior

    @torch.no_grad()
    def restore(self, condition: Tensor, *, num_steps: Optional[int] = None, sampler: Any = None,
                generator: Optional[torch.Generator] = None, mask: Optional[Tensor] = None) -> Tensor:
        """Restored images ``[B, 3, S, S]`` in [-1, 1] from conditions at model size."""
        condition = self.check_condition(condition.to(self.device))
        chosen = self.resolve_sampler(sampler)
        if chosen.name == "cfg" and not self.nonparametric:
            raise ValueError("the cfg sampler guides f_phi with its own null condition: it needs model.nonparametric=true")
        cond, prior = self.denoisers(condition)
        noise = torch.randn(condition.shape, generator=generator, device=self.device, dtype=condition.dtype)
        grid = self.sampling_grid(int(num_steps or self.num_sampling_steps), self.device)
        start = time.perf_counter()
        out = chosen.sample(cond, prior, self.path, noise, grid, reference=condition, mask=mask, generator=generator)
        self.last_sampling_seconds = time.perf_counter() - start
        self.last_network_calls = cond.calls + prior.calls
        return out.clamp(-1, 1)

    def sample_for_batch(self, batch: Mapping[str, Any], *, num_steps: Optional[int] = None, sampler: Any = None,
                         guidance_scale: Optional[float] = None, generator: Optional[torch.Generator] = None) -> Tensor:
        """One restored image per batch item (the EvaluationCallback's paired-metric contract)."""
        return self.restore(batch["condition"], num_steps=num_steps, sampler=sampler, generator=generator,
                            mask=batch.get("mask"))

    def sample(self, num_samples: int, **kwargs: Any) -> Tensor:  # type: ignore[override]
        raise TypeError("BiNoisingRestoration is conditional: use sample_for_batch(batch) or restore(condition)")

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        from lightning_modules.bi_noising.predict import predict_batch

        predict_batch(self, batch, batch_idx)


def correction_loss(eps_degraded: Tensor, eps_clean: Tensor) -> Tensor:
    """Per-sample ``||f(x_t, x0, t) - f(y_t, x0, t)||^2`` (mean over pixels) of Eq. 8.13, before ``c_t``."""
    return (eps_degraded.float() - eps_clean.float()).pow(2).flatten(1).mean(1)


__all__ = ["BiNoisingRestoration", "CORR_COEFFICIENTS", "STOP_GRADIENTS", "correction_loss"]

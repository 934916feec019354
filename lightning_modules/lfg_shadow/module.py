"""``LFGShadowRemoval``: LFG-Diffusion training stages, sampling and predict (thesis 001 Ch. 7 §7.3, §7.4).

Diffusion (from the suite core, no second implementation): the linear beta schedule
``1e-4 -> 0.02`` over ``T = 1000`` steps (§7.3.1 "linear increases"; [code] guided-diffusion
``noise_schedule='linear'``) as :class:`diffusion.paths.DiscreteDDPMPath`, integer training steps
(:class:`diffusion.time_samplers.DiscreteTimeSampler`), epsilon prediction with ``L_simple``
(Eq. 7.7). Options from the public re-implementation ([code]): the learned-sigma hybrid loss
``L_simple + L_vlb`` (:mod:`diffusion.learned_variance`, ``hybrid_loss``) and P2 weighting
(:class:`diffusion.weighting.P2Weighting`, ``p2_gamma``/``p2_k``; [code] gamma = k = 1).

Stages (§7.3.2), each its own config and chained by ``init_weights``:

* ``pretrain`` (Eq. 7.12): ``E||eps - eps_theta(y_t, E(y_0, 0), y_0, m, t)||^2``: the clean image
  is the condition and the encoder sees it with an empty mask; epsilon_theta and E_theta train.
* ``finetune`` (Eq. 7.11): ``E||eps - eps_theta(y_t, E(x, m), x, m, t)||^2 +
  invariant_weight ||E(y_0, 0) - E(x, m)||^2`` (weight 1 in the thesis). ``guidance='latent_no_inv'``
  drops the invariant term (Table 7.4's E-bar); ``guidance='none'`` is the Eq. 7.8 baseline.
  ``lagged_encoder_steps`` freezes the encoder for the first steps ("lagged posterior",
  Table 7.3: the diffusion network is optimised aggressively before the encoder).

Sampling: any core sampler on the path (``ddim`` 50 steps by default, [code] test script; 20 in
training-time evaluation; ``ddpm`` 1000 steps is the ancestral Eq. 7.3-7.4; ``dpm_solver++``
Table 7.5's accelerated solver). The encoder has no timestep, so ``E(x, m)`` is computed once
per image and reused at every step. With learned sigma the samplers use the epsilon half and
their own (fixed) variances ([GAP]: DDIM does not use the variance; DDPM uses ``fixed_small``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from diffusion.denoisers import NetworkDenoiser
from diffusion.dpm_solver import build_any_sampler
from diffusion.learned_variance import integer_steps, vlb_terms
from diffusion.paths import DiscreteDDPMPath
from diffusion.time_samplers import DiscreteTimeSampler
from diffusion.weighting import P2Weighting
from lightning_modules.components.loss_term_steps import LossTermSteps
from lightning_modules.diffusion_module import DiffusionModule
from lightning_modules.lfg_shadow.networks import LFGNetwork

log = logging.getLogger(__name__)

STAGES = ("pretrain", "finetune")


def resolve_sampler(sampler: Any) -> Any:
    """A sampler object from a name: the core samplers or the DPM-Solvers (``dpm_solver++`` 2M for Table 7.5;
    the shared :func:`diffusion.dpm_solver.build_any_sampler`); objects and ``None`` pass through."""
    return build_any_sampler(sampler) if isinstance(sampler, str) else sampler


class LFGShadowRemoval(LossTermSteps, DiffusionModule):
    """LFG-Diffusion (module docstring).

    Args:
        network: the :class:`LFGNetwork` (epsilon_theta, E_theta, DLVF).
        stage: ``pretrain`` (Eq. 7.12) or ``finetune`` (Eq. 7.11).
        invariant_weight: weight of ``||E(y_0, 0) - E(x, m)||^2`` in fine-tuning (1).
        hybrid_loss: add ``L_vlb`` for the learned variance (needs ``learn_sigma``).
        p2_gamma, p2_k: P2 weighting of the epsilon loss (``p2_gamma = 0``: none).
        lagged_encoder_steps: steps at the start of fit during which the encoder does not train.
        init_weights: a ``.safetensors`` file of this module's weights (e.g. the pretraining
            stage's EMA export) loaded strictly before fit: the two-stage chain.
        image_size: model resolution (256); ``sample_shape`` is ``(3, image_size, image_size)``.
        num_train_timesteps, beta_start, beta_end: the linear DDPM schedule.
        sampler, num_sampling_steps, grid: the core sampler used by validation/test/predict.
        mask_dilation: ``k`` applied to user masks in ``predict`` (21).
        optimizer, lr_scheduler, val_seed, predict_seed: as :class:`DiffusionModule`.
    """

    logged_loss_terms = ("eps", "vlb", "invariant")

    def __init__(
        self,
        network: LFGNetwork,
        stage: str = "finetune",
        invariant_weight: float = 1.0,
        hybrid_loss: bool = False,
        p2_gamma: float = 0.0,
        p2_k: float = 1.0,
        lagged_encoder_steps: int = 0,
        init_weights: Optional[str] = None,
        image_size: int = 256,
        num_train_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        sampler: str = "ddim",
        num_sampling_steps: int = 50,
        grid: str = "leading",
        mask_dilation: int = 21,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: Optional[LRSchedulerCallable] = None,
        val_seed: int = 1234,
        predict_seed: int = 0,
    ) -> None:
        if stage not in STAGES:
            raise ValueError(f"model.stage={stage!r} is not one of {list(STAGES)}")
        if hybrid_loss and not network.learn_sigma:
            raise ValueError("model.hybrid_loss=true needs a network with learn_sigma: true (6 output channels)")
        if image_size % network.downsample_factor:
            raise ValueError(f"model.image_size={image_size} must be divisible by {network.downsample_factor} (the UNet depth)")
        path = DiscreteDDPMPath("linear", beta_start, beta_end, num_train_timesteps)
        super().__init__(
            network=network, path=path, prediction_type="epsilon", time_sampler=DiscreteTimeSampler(path),
            loss_weighting=P2Weighting(p2_gamma, p2_k) if p2_gamma else None, sampler=resolve_sampler(sampler),
            num_sampling_steps=num_sampling_steps, grid=grid, sample_shape=(network.image_channels, image_size, image_size),
            optimizer=optimizer, lr_scheduler=lr_scheduler, val_seed=val_seed, predict_seed=predict_seed,
        )
        self.save_hyperparameters(ignore=["network"])
        self.stage, self.invariant_weight = stage, float(invariant_weight)
        self.hybrid_loss, self.lagged_encoder_steps = bool(hybrid_loss), int(lagged_encoder_steps)
        self.image_size, self.mask_dilation = int(image_size), int(mask_dilation)
        self.init_weights = init_weights
        self._initialised = False

    # ------------------------------------------------------------------ chain
    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and self.init_weights and not self._initialised:
            self.load_weights(self.init_weights)
            self._initialised = True

    def load_weights(self, path: str) -> None:
        """Load a safetensors export of this module's parameters (names as ``named_parameters()``), strictly."""
        from safetensors.torch import load_file

        file = Path(path).expanduser()
        if not file.is_file():
            raise FileNotFoundError(
                f"model.init_weights={path!r} does not exist; run configs/lfg_shadow_pretrain.yaml first "
                f"(its EMA callback exports the weights as a .safetensors file in the run folder)")
        state = load_file(str(file))
        own = dict(self.named_parameters())
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"{file}: weights do not match this network: missing {missing[:6]}, unexpected {unexpected[:6]}")
        with torch.no_grad():
            for name, value in state.items():
                if own[name].shape != value.shape:
                    raise ValueError(f"{file}: {name} has shape {tuple(value.shape)}, the network {tuple(own[name].shape)}")
                own[name].copy_(value)
        log.info("loaded %d tensors from %s", len(state), file)

    # ------------------------------------------------------------------ losses
    def _encoder_trains(self) -> bool:
        """The encoder trains unless absent or still lagged (Table 7.3's lagged posterior)."""
        if self.network.encoder is None:
            return False
        return self._trainer is None or self.global_step >= self.lagged_encoder_steps

    def losses(self, batch: Mapping[str, Tensor], generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        """Per-sample terms ``{"eps", "vlb", "invariant", "total"}`` of the stage's objective."""
        y0, mask = batch["image"], batch["mask"]
        empty = torch.zeros_like(mask)
        net = self.network
        train_encoder = self._encoder_trains()
        with torch.set_grad_enabled(torch.is_grad_enabled() and train_encoder):
            if self.stage == "pretrain":
                condition, latent, invariant = y0, net.encode(y0, empty), None
            else:
                condition = batch["shadow"]
                latent = net.encode(condition, mask)
                invariant = None
                if net.encoder is not None and net.guidance == "latent" and self.invariant_weight:
                    invariant = (net.encode(y0, empty) - latent).pow(2).flatten(1).mean(1)
        t = self.time_sampler(y0.shape[0], y0.device, generator=generator).to(y0.dtype)
        noise = torch.randn(y0.shape, generator=generator, device=y0.device, dtype=y0.dtype)
        y_t = self.path.add_noise(y0, noise, t)
        out = net(y_t, self.path.network_time(t), condition, mask, latent, return_variance=True)
        eps = out[:, : net.image_channels]
        terms = {"eps": (eps.float() - noise.float()).pow(2).flatten(1).mean(1)}
        if self.loss_weighting is not None:
            terms["eps"] = terms["eps"] * self.loss_weighting(t, self.path).to(terms["eps"].dtype)
        total = terms["eps"]
        if self.hybrid_loss:
            v = out[:, net.image_channels:].float()
            terms["vlb"] = vlb_terms(self.path, y0.float(), y_t.float(), integer_steps(self.path, t), eps.detach().float(), v)
            total = total + terms["vlb"]
        if invariant is not None:
            terms["invariant"] = invariant.float()
            total = total + self.invariant_weight * terms["invariant"]
        terms["total"] = total
        return terms

    # ------------------------------------------------------------------ sampling
    def nfe(self, num_steps: Optional[int] = None, sampler: Any = None, guidance_scale: Optional[float] = None) -> int:
        """Network evaluations per image (the encoder runs once more, outside the count)."""
        steps = int(num_steps or self.num_sampling_steps)
        chosen = resolve_sampler(sampler) or self.sampler
        return chosen.num_evaluations(self.sampling_grid(steps, torch.device("cpu")))

    @torch.no_grad()
    def remove_shadows(self, shadow: Tensor, mask: Tensor, *, num_steps: Optional[int] = None, sampler: Any = None,
                       generator: Optional[torch.Generator] = None, progress: bool = False) -> Tensor:
        """Shadow-free images ``[B, 3, S, S]`` in [-1, 1] from shadow images and (dilated) masks at model size."""
        shadow, mask = shadow.to(self.device), mask.to(self.device)
        latent = self.network.encode(shadow, mask)
        denoiser = NetworkDenoiser(self.network, self.path, "epsilon", condition=shadow, mask=mask, latent=latent)
        chosen = resolve_sampler(sampler) or self.sampler
        noise = torch.randn(shadow.shape, generator=generator, device=self.device, dtype=shadow.dtype)
        grid = self.sampling_grid(int(num_steps or self.num_sampling_steps), self.device)
        return chosen.sample(denoiser, self.path, noise, grid, generator=generator, progress=progress).clamp(-1, 1)

    def sample_for_batch(self, batch: Mapping[str, Any], *, num_steps: Optional[int] = None, sampler: Any = None,
                         guidance_scale: Optional[float] = None, generator: Optional[torch.Generator] = None) -> Tensor:
        """One shadow-free output per batch item (the EvaluationCallback's paired-metric contract)."""
        return self.remove_shadows(batch["shadow"], batch["mask"], num_steps=num_steps, sampler=sampler, generator=generator)

    def sample(self, num_samples: int, **kwargs: Any) -> Tensor:  # type: ignore[override]
        raise TypeError("LFGShadowRemoval is conditional: use sample_for_batch(batch) or remove_shadows(shadow, mask)")

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """The user's shadow images and masks -> shadow-free images at the input size (see ``predict.py``)."""
        from lightning_modules.lfg_shadow.predict import predict_batch

        predict_batch(self, batch, batch_idx)


__all__ = ["LFGShadowRemoval", "STAGES"]

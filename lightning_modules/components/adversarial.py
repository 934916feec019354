"""``AdversarialModule``: the two-player training loop every GAN of the suite shares.

The lecture (seed 002, lines 620-632) trains a GAN by "iterating between training D and G with
backprop" on "a minibatch of real data and a minibatch of samples". This base implements that
loop once, with Lightning's manual optimisation, so that the lecture's GANs (toy GAN, DCGAN,
conditional GAN, pix2pix, CycleGAN) and later papers (thesis 001 Ch. 6 LTT-GAN) only write
their networks and loss terms.

What a subclass writes (three methods and two parameter lists):

* ``generator_parameters()`` / ``discriminator_parameters()``: what each optimiser trains;
* ``generate(batch) -> dict``: the generator's forward (fakes, reconstructions, ...). It runs
  once per training step, under ``no_grad`` on steps without a G update;
* ``discriminator_terms(batch, generated) -> dict``: must hold ``"loss"``; use
  :meth:`d_adversarial` (the configured loss on real/fake outputs, fakes detached by the caller)
  and :meth:`penalties` (lazy R1 / WGAN-GP);
* ``generator_terms(batch, generated) -> dict``: must hold ``"loss"``; use :meth:`g_adversarial`.

Every other tensor in the returned dicts is logged as ``train/<d_|g_><key>``; the generator's
total is also logged as ``train/loss`` (the model's objective, as for every module of the suite).

One training step (one batch):

1. ``generate(batch)`` (with gradients only if G updates on this step);
2. D step: ``discriminator_terms``, backward, optional clipping, ``d_optimizer.step()``;
3. every ``d_steps_per_g_step``-th step, G step: D's parameters are switched to
   ``requires_grad=False`` (``toggle_optimizer``), ``generator_terms``, backward, ``g_optimizer.step()``.

So ``k = d_steps_per_g_step`` D steps, each on a fresh real minibatch, precede each G step
(Goodfellow et al. 2014, Alg. 1; WGAN's n_critic = 5). Lightning counts every optimiser step in
``trainer.global_step``: with k = 1 one batch advances it by 2 (``max_steps`` in the configs is
set accordingly and said so).

Schedulers: ``g_lr_scheduler`` / ``d_lr_scheduler`` are stepped after their own optimiser's steps
(``lr_scheduler_interval="step"``) or at the end of each epoch (``"epoch"``).

EMA of the generator: :meth:`trainable_parameters` returns the generator's parameters, so the
suite's ``callbacks.ema.EMACallback`` averages G (and swaps the average in for validation, test and
predict) and never the discriminator, a training-only part.

DDP: the discriminator step's graph does not reach G (fakes are detached) and the generator
step's graph does not produce D gradients, so each backward leaves one player's parameters
unused. DDP must then be told (``find_unused_parameters=True``) or its reducer waits for gradients
that never come; :meth:`setup` switches it on for a ``DDPStrategy`` and logs that it did. Lightning
calls the reducer's ``prepare_for_backward`` before every ``manual_backward``, so both players'
gradients are averaged over ranks on their own steps (tests/test_lecture_adversarial_ddp.py checks
the weights stay identical across two ranks fed different data).
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from lightning_modules.components.frozen_parts import FrozenPartsModule
from lightning_modules.components.gan_losses import (
    check_loss,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    r1_penalty,
)

log = logging.getLogger(__name__)


def _adam(params):  # the lecture's DCGAN setting (seed 002 line 764): lr 2e-4, beta1 0.5
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))


class AdversarialModule(FrozenPartsModule):
    """Manual-optimisation base of the suite's GANs (see the module docstring).

    Args:
        loss: ``"minimax"``, ``"lsgan"``, ``"hinge"`` or ``"wgan"`` (:mod:`gan_losses`).
        generator_form: for ``minimax``: ``"non_saturating"`` (the slides' J^(G)) or ``"saturating"``.
        d_steps_per_g_step: k discriminator steps (each on its own batch) per generator step.
        g_optimizer / d_optimizer: optimiser factories (default Adam 2e-4, betas (0.5, 0.999)).
        g_lr_scheduler / d_lr_scheduler: optional scheduler factories.
        lr_scheduler_interval: ``"step"`` or ``"epoch"``.
        r1_gamma: weight gamma of the R1 penalty on real data (0 = off).
        r1_every: lazy R1: apply every n-th D step, multiplied by n (StyleGAN2's lazy regularisation).
        gp_weight: WGAN-GP weight (0 = off); only meaningful with ``loss="wgan"``.
        gradient_clip_val: clip each player's gradient norm to this value (``None`` = off);
            the Trainer's own ``gradient_clip_val`` does not apply under manual optimisation.
    """

    def __init__(
        self,
        loss: str = "minimax",
        generator_form: str = "non_saturating",
        d_steps_per_g_step: int = 1,
        g_optimizer: OptimizerCallable = _adam,
        d_optimizer: OptimizerCallable = _adam,
        g_lr_scheduler: Optional[LRSchedulerCallable] = None,
        d_lr_scheduler: Optional[LRSchedulerCallable] = None,
        lr_scheduler_interval: str = "step",
        r1_gamma: float = 0.0,
        r1_every: int = 16,
        gp_weight: float = 0.0,
        gradient_clip_val: Optional[float] = None,
    ) -> None:
        super().__init__()
        check_loss(loss, generator_form)
        if int(d_steps_per_g_step) < 1:
            raise ValueError(f"model.d_steps_per_g_step must be >= 1, got {d_steps_per_g_step}")
        if lr_scheduler_interval not in ("step", "epoch"):
            raise ValueError(f"model.lr_scheduler_interval={lr_scheduler_interval!r} is not 'step' or 'epoch'")
        if r1_gamma < 0 or gp_weight < 0:
            raise ValueError(f"model.r1_gamma and model.gp_weight must be >= 0, got {r1_gamma}, {gp_weight}")
        if int(r1_every) < 1:
            raise ValueError(f"model.r1_every must be >= 1, got {r1_every}")
        self.automatic_optimization = False
        self.loss_kind = loss
        self.generator_form = generator_form
        self.d_steps_per_g_step = int(d_steps_per_g_step)
        self.g_optimizer_factory = g_optimizer
        self.d_optimizer_factory = d_optimizer
        self.g_lr_scheduler_factory = g_lr_scheduler
        self.d_lr_scheduler_factory = d_lr_scheduler
        self.lr_scheduler_interval = lr_scheduler_interval
        self.r1_gamma = float(r1_gamma)
        self.r1_every = int(r1_every)
        self.gp_weight = float(gp_weight)
        self.gradient_clip_val = gradient_clip_val
        self.d_step_count = 0  # D steps taken (drives k and lazy R1); checkpointed below

    # ------------------------------------------------------------------ to implement
    def generator_parameters(self) -> list[nn.Parameter]:  # pragma: no cover - abstract
        raise NotImplementedError

    def discriminator_parameters(self) -> list[nn.Parameter]:  # pragma: no cover - abstract
        raise NotImplementedError

    def generate(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def discriminator_terms(self, batch: Mapping[str, Any], generated: Mapping[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError  # pragma: no cover - abstract

    def generator_terms(self, batch: Mapping[str, Any], generated: Mapping[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError  # pragma: no cover - abstract

    # ------------------------------------------------------------------ loss helpers
    def d_adversarial(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        """The configured discriminator loss on D's outputs for real and (detached) fake inputs."""
        return discriminator_loss(self.loss_kind, real_out, fake_out)

    def g_adversarial(self, fake_out: Tensor) -> Tensor:
        """The configured generator loss on D's outputs for the generator's samples."""
        return generator_loss(self.loss_kind, fake_out, self.generator_form)

    def penalties(self, critic, real: Tensor, fake: Optional[Tensor] = None) -> dict[str, Tensor]:
        """Lazy R1 on ``real`` and WGAN-GP between ``real`` and ``fake``, as configured.

        ``critic`` maps D's input to its output (a bound method or a lambda adding a condition).
        Returns the active terms (``r1``, ``gp``); add their sum to the D loss.
        """
        terms: dict[str, Tensor] = {}
        if self.r1_gamma > 0 and self.d_step_count % self.r1_every == 0:
            x = real.detach().requires_grad_(True)
            terms["r1"] = r1_penalty(critic(x), x, self.r1_gamma) * self.r1_every
        if self.gp_weight > 0:
            if fake is None:
                raise ValueError("model.gp_weight > 0 needs the fake inputs in penalties(critic, real, fake)")
            terms["gp"] = gradient_penalty(critic, real, fake, self.gp_weight)
        return terms

    # ------------------------------------------------------------------ parameters
    def trainable_parameters(self) -> list[nn.Parameter]:
        """The generator: the weights EMA averages and the model is used by (see module docstring)."""
        return [p for p in self.generator_parameters() if p.requires_grad]

    def configure_optimizers(self) -> Any:
        g_params = [p for p in self.generator_parameters() if p.requires_grad]
        d_params = [p for p in self.discriminator_parameters() if p.requires_grad]
        if not g_params or not d_params:
            raise ValueError(f"{type(self).__name__}: the generator and the discriminator both need trainable parameters")
        shared = {id(p) for p in g_params} & {id(p) for p in d_params}
        if shared:
            raise ValueError(f"{type(self).__name__}: {len(shared)} parameters belong to both players")
        log.info("%s: generator %.3fM, discriminator %.3fM parameters", type(self).__name__,
                 sum(p.numel() for p in g_params) / 1e6, sum(p.numel() for p in d_params) / 1e6)
        g_opt, d_opt = self.g_optimizer_factory(g_params), self.d_optimizer_factory(d_params)
        schedulers = [f(o) for f, o in ((self.g_lr_scheduler_factory, g_opt), (self.d_lr_scheduler_factory, d_opt))
                      if f is not None]
        if not schedulers:
            return [g_opt, d_opt]
        self._scheduler_owner = [o for f, o in ((self.g_lr_scheduler_factory, "g"), (self.d_lr_scheduler_factory, "d"))
                                 if f is not None]
        return [g_opt, d_opt], [{"scheduler": s, "interval": self.lr_scheduler_interval} for s in schedulers]

    def _schedulers(self) -> dict[str, Any]:
        found = self.lr_schedulers()
        if found is None:
            return {}
        found = found if isinstance(found, list) else [found]
        return dict(zip(getattr(self, "_scheduler_owner", []), found))

    # ------------------------------------------------------------------ DDP
    def setup(self, stage: str) -> None:
        """Ask DDP to find unused parameters (each player's step leaves the other's unused)."""
        from lightning.pytorch.strategies import DDPStrategy

        strategy = getattr(self._trainer, "strategy", None) if self._trainer is not None else None
        kwargs = getattr(strategy, "_ddp_kwargs", None)
        if isinstance(strategy, DDPStrategy) and isinstance(kwargs, dict) and not kwargs.get("find_unused_parameters"):
            kwargs["find_unused_parameters"] = True
            log.info("%s: DDP set to find_unused_parameters=True (alternating G/D steps)", type(self).__name__)

    # ------------------------------------------------------------------ the loop
    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        g_opt, d_opt = self.optimizers()
        schedulers = self._schedulers()
        g_turn = (self.d_step_count + 1) % self.d_steps_per_g_step == 0
        batch_size = _batch_size(batch)
        with torch.set_grad_enabled(g_turn):
            generated = self.generate(batch)

        d_terms = self.discriminator_terms(batch, generated)
        d_opt.zero_grad(set_to_none=True)
        self.manual_backward(d_terms["loss"])
        self._clip(d_opt)
        d_opt.step()
        self.d_step_count += 1
        if "d" in schedulers and self.lr_scheduler_interval == "step":
            schedulers["d"].step()
        self._log_terms("d_", d_terms, batch_size)

        if not g_turn:
            return
        self.toggle_optimizer(g_opt)  # D's parameters stop requiring grad: no wasted D gradients
        try:
            g_terms = self.generator_terms(batch, generated)
            g_opt.zero_grad(set_to_none=True)
            self.manual_backward(g_terms["loss"])
            self._clip(g_opt)
            g_opt.step()
        finally:
            self.untoggle_optimizer(g_opt)
        if "g" in schedulers and self.lr_scheduler_interval == "step":
            schedulers["g"].step()
        self._log_terms("g_", g_terms, batch_size)
        self.log("train/loss", g_terms["loss"].detach(), prog_bar=True, batch_size=batch_size)

    def on_train_epoch_end(self) -> None:
        if self.lr_scheduler_interval == "epoch":
            for scheduler in self._schedulers().values():
                scheduler.step()

    def _clip(self, optimizer: Any) -> None:
        if self.gradient_clip_val is not None:
            self.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip_val, gradient_clip_algorithm="norm")

    def _log_terms(self, prefix: str, terms: Mapping[str, Tensor], batch_size: int) -> None:
        for key, value in terms.items():
            if isinstance(value, Tensor) and value.numel() == 1:
                self.log(f"train/{prefix}{key}", value.detach(), batch_size=batch_size)

    # ------------------------------------------------------------------ checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["adversarial_d_step_count"] = self.d_step_count

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.d_step_count = int(checkpoint.get("adversarial_d_step_count", 0))


def _batch_size(batch: Any) -> int:
    if isinstance(batch, Mapping):
        for value in batch.values():
            if isinstance(value, Tensor) and value.dim() > 0:
                return int(value.shape[0])
    return 1


class ImagePool:
    """CycleGAN's history of generated images (Shrivastava et al. 2017; Zhu et al. 2017, size 50).

    ``query(images)`` returns a batch of the same size where each item is, with probability 1/2
    once the pool is full, a stored older fake (and the new one takes its place), else the new one.
    ``size=0`` disables the pool. Random choices use torch's global generator.
    """

    def __init__(self, size: int = 50) -> None:
        if size < 0:
            raise ValueError(f"model.pool_size must be >= 0, got {size}")
        self.size = int(size)
        self.images: list[Tensor] = []

    def query(self, images: Tensor) -> Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand(()) < 0.5:
                index = int(torch.randint(len(self.images), ()))
                out.append(self.images[index].clone())
                self.images[index] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)


__all__ = ["AdversarialModule", "ImagePool"]

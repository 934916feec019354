"""Adversarial losses as the lecture writes them (seed 002, lines 630-663), plus LSGAN, hinge, WGAN-GP and R1.

Every function takes the discriminator's raw outputs (logits / critic values, any shape: a
PatchGAN gives one per patch) and returns a scalar mean over all of them.

* ``minimax`` (Goodfellow et al. 2014, seed 002 lines 632-641): D is the binary cross-entropy
  classifier ``J^(D) = -1/2 E_x log D(x) - 1/2 E_z log(1 - D(G(z)))`` with ``D = sigmoid(logit)``.
  The generator has two forms, chosen with ``generator_form``:

  - ``"non_saturating"`` (line 641): ``J^(G) = -1/2 E_z log D(G(z))``: "the generator maximizes
    the log-probability of the discriminator being mistaken"; its gradient w.r.t. the logit is
    ``-1/2 (1 - D(G(z)))``, strong when D confidently rejects the fakes (early training).
  - ``"saturating"`` (line 663, the zero-sum game ``J^(G) = -J^(D)``): ``J^(G) = 1/2 E_z log(1 -
    D(G(z)))`` (the G-independent real term dropped). The text extraction of line 663 shows a
    leading minus sign; the minimax objective two lines above (655) fixes the sign: G *minimises*
    ``E log(1 - D(G(z)))``. Its gradient ``-1/2 D(G(z))`` vanishes when D rejects the fakes: the
    saturation the lecture's two slides contrast.

* ``lsgan`` (Mao et al. 2017; CycleGAN's choice, digest B2 [X]): D ``1/2 E (D(x) - 1)^2 + 1/2 E
  D(G(z))^2``; G ``1/2 E (D(G(z)) - 1)^2`` (the 1/2 factors mirror the lecture's J's; CycleGAN's
  code halves the D loss the same way).
* ``hinge`` (Lim & Ye 2017, Miyato et al. 2018): D ``E relu(1 - D(x)) + E relu(1 + D(G(z)))``,
  G ``-E D(G(z))``.
* ``wgan`` (Arjovsky et al. 2017): critic ``E D(G(z)) - E D(x)``, G ``-E D(G(z))``; with
  :func:`gradient_penalty` (Gulrajani et al. 2017, weight 10) this is WGAN-GP.

:func:`r1_penalty` is Mescheder et al. (2018)'s ``gamma/2 E ||grad_x D(x)||^2`` on real data;
:class:`AdversarialModule` applies it lazily (every ``r1_every`` D steps, scaled by
``r1_every``, as StyleGAN2 does).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, autograd

LOSS_KINDS = ("minimax", "lsgan", "hinge", "wgan")
GENERATOR_FORMS = ("non_saturating", "saturating")


def check_loss(kind: str, generator_form: str = "non_saturating") -> None:
    """Raise a ``ValueError`` naming the bad key when a loss name is unknown."""
    if kind not in LOSS_KINDS:
        raise ValueError(f"model.loss={kind!r} is not one of {list(LOSS_KINDS)}")
    if generator_form not in GENERATOR_FORMS:
        raise ValueError(f"model.generator_form={generator_form!r} is not one of {list(GENERATOR_FORMS)}")


def discriminator_loss(kind: str, real: Tensor, fake: Tensor) -> Tensor:
    """The discriminator's (critic's) loss on its outputs for real and generated data."""
    check_loss(kind)
    real, fake = real.float(), fake.float()
    if kind == "minimax":
        # -1/2 log sigmoid(r) - 1/2 log(1 - sigmoid(f)), with the stable log-sigmoid forms
        return 0.5 * F.softplus(-real).mean() + 0.5 * F.softplus(fake).mean()
    if kind == "lsgan":
        return 0.5 * (real - 1).pow(2).mean() + 0.5 * fake.pow(2).mean()
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return fake.mean() - real.mean()  # wgan


def generator_loss(kind: str, fake: Tensor, generator_form: str = "non_saturating") -> Tensor:
    """The generator's loss on the discriminator's outputs for its samples."""
    check_loss(kind, generator_form)
    fake = fake.float()
    if kind == "minimax":
        if generator_form == "non_saturating":
            return 0.5 * F.softplus(-fake).mean()  # -1/2 log D(G(z))
        return -0.5 * F.softplus(fake).mean()  # 1/2 log(1 - D(G(z))) = -1/2 softplus(f)
    if kind == "lsgan":
        return 0.5 * (fake - 1).pow(2).mean()
    return -fake.mean()  # hinge and wgan


def _gradient_norms_squared(outputs: Tensor, inputs: Tensor) -> Tensor:
    (grad,) = autograd.grad(outputs.sum(), inputs, create_graph=True)
    return grad.flatten(1).pow(2).sum(dim=1)


def r1_penalty(discriminator_output: Tensor, real: Tensor, gamma: float) -> Tensor:
    """``gamma / 2 * E ||grad_x D(x)||^2``; ``real`` must have ``requires_grad`` set before D ran."""
    return 0.5 * gamma * _gradient_norms_squared(discriminator_output, real).mean()


def gradient_penalty(critic, real: Tensor, fake: Tensor, weight: float = 10.0,
                     generator: Optional[torch.Generator] = None) -> Tensor:
    """WGAN-GP: ``weight * E (||grad D(x_hat)|| - 1)^2`` on random interpolates of real and fake."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = torch.rand(shape, generator=generator, device=real.device, dtype=real.dtype)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    norms = _gradient_norms_squared(critic(mixed), mixed).add(1e-12).sqrt()
    return weight * (norms - 1).pow(2).mean()


__all__ = [
    "GENERATOR_FORMS",
    "LOSS_KINDS",
    "check_loss",
    "discriminator_loss",
    "generator_loss",
    "gradient_penalty",
    "r1_penalty",
]

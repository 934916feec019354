"""The adversarial losses against hand computations, peer losses and the slides' gradient claims."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightning_modules.components.gan_losses import (
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    r1_penalty,
)

REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def _sig(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_minimax_losses_equal_the_slides_formulas_by_hand() -> None:
    # J^(D) = -1/2 E log D(x) - 1/2 E log(1 - D(G(z)))  (seed 002 line 639)
    j_d = -0.5 * sum(math.log(_sig(r)) for r in REAL.tolist()) / 2 - 0.5 * sum(math.log(1 - _sig(f)) for f in FAKE.tolist()) / 2
    assert discriminator_loss("minimax", REAL, FAKE).item() == pytest.approx(j_d, rel=1e-6)
    # non-saturating J^(G) = -1/2 E log D(G(z))  (line 641); saturating = 1/2 E log(1 - D(G(z)))
    ns = -0.5 * sum(math.log(_sig(f)) for f in FAKE.tolist()) / 2
    sat = 0.5 * sum(math.log(1 - _sig(f)) for f in FAKE.tolist()) / 2
    assert generator_loss("minimax", FAKE, "non_saturating").item() == pytest.approx(ns, rel=1e-6)
    assert generator_loss("minimax", FAKE, "saturating").item() == pytest.approx(sat, rel=1e-6)


def test_minimax_discriminator_loss_is_halved_binary_cross_entropy() -> None:
    bce = nn.BCEWithLogitsLoss()  # peer implementation
    expected = 0.5 * (bce(REAL, torch.ones(2)) + bce(FAKE, torch.zeros(2)))
    torch.testing.assert_close(discriminator_loss("minimax", REAL, FAKE), expected)


def test_lsgan_hinge_wgan_by_hand() -> None:
    # LSGAN: D 1/2 mean (r-1)^2 + 1/2 mean f^2 = 1/2 * 2.5 + 1/2 * 4.625; G 1/2 mean (f-1)^2 = 1/2 * 8.125
    assert discriminator_loss("lsgan", REAL, FAKE).item() == pytest.approx(3.5625)
    assert generator_loss("lsgan", FAKE).item() == pytest.approx(4.0625)
    torch.testing.assert_close(generator_loss("lsgan", FAKE), 0.5 * nn.MSELoss()(FAKE, torch.ones(2)))
    # hinge: mean relu(1 - r) = (0 + 2)/2, mean relu(1 + f) = (1.5 + 0)/2; G: -mean f
    assert discriminator_loss("hinge", REAL, FAKE).item() == pytest.approx(1.75)
    assert generator_loss("hinge", FAKE).item() == pytest.approx(1.25)
    # WGAN critic: mean f - mean r
    assert discriminator_loss("wgan", REAL, FAKE).item() == pytest.approx(-1.25 - 0.5)


def test_saturating_generator_gradient_vanishes_where_non_saturating_is_strong() -> None:
    """The slides' contrast: when D confidently rejects fakes (logit << 0) the saturating loss's
    gradient ~ -1/2 D(G(z)) vanishes; the non-saturating one's ~ -1/2 (1 - D(G(z))) does not."""
    logits = torch.tensor([-6.0, 0.0, 6.0])
    grads = {}
    for form in ("saturating", "non_saturating"):
        a = logits.clone().requires_grad_(True)
        generator_loss("minimax", a, form).backward()
        grads[form] = a.grad
    d = torch.sigmoid(logits)
    torch.testing.assert_close(grads["saturating"], -0.5 * d / 3)
    torch.testing.assert_close(grads["non_saturating"], -0.5 * (1 - d) / 3)
    assert grads["saturating"][0].abs() < 0.01 * grads["non_saturating"][0].abs()
    assert grads["non_saturating"][2].abs() < 0.01 * grads["saturating"][2].abs()
    assert (grads["saturating"] < 0).all() and (grads["non_saturating"] < 0).all()  # both push logits up


def test_r1_and_gradient_penalty_of_a_linear_critic() -> None:
    w = torch.tensor([[1.5, -2.0, 0.0]])  # ||w|| = 2.5
    critic = lambda x: x @ w.t()  # noqa: E731 - gradient w.r.t. x is w everywhere
    x = torch.randn(4, 3).requires_grad_(True)
    assert r1_penalty(critic(x), x, gamma=10.0).item() == pytest.approx(0.5 * 10.0 * 6.25, rel=1e-6)
    gp = gradient_penalty(critic, torch.randn(4, 3), torch.randn(4, 3), weight=10.0)
    assert gp.item() == pytest.approx(10.0 * (2.5 - 1) ** 2, rel=1e-5)


@pytest.mark.parametrize("kind, form", [("bogus", "non_saturating"), ("minimax", "sideways")])
def test_unknown_loss_names_fail_naming_the_key(kind: str, form: str) -> None:
    with pytest.raises(ValueError, match="model.loss|model.generator_form"):
        generator_loss(kind, FAKE, form)

"""Losses of the AlignTok tokenizer (thesis 000, Ch. 7 §7.3, Eq. 7.1).

``L_rec = L1(x, x_hat) + w_p LPIPS(x, x_hat) + w_g * lambda * L_GAN(x_hat)`` where ``lambda``
rescales the GAN term so that its gradient norm at the decoder's last layer matches that of
``L1 + w_p LPIPS`` (VQGAN, Esser et al. 2021, Eq. 7 there); ``w_g = 0.5``. The semantic
preservation loss of stage 2 is rescaled the same way at the encoder's last layer.

The discriminator is not named by the thesis; the LDM ``NLayerDiscriminator`` (PatchGAN,
3 layers, 64 base channels, BatchNorm) with the hinge loss is used, as in VA-VAE, whose
``LPIPSWithDiscriminator`` the thesis follows [ext]. Its 2.766M parameters are the difference
between the stage-3 trainable count of Table 7.6 (44.18M) and the decoder (41.42M).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def adaptive_weight(
    numerator_loss: Tensor,
    denominator_loss: Tensor,
    layer: Tensor,
    eps: float = 1e-4,
    max_weight: float = 1e4,
) -> Tensor:
    """``||d num / d layer|| / (||d den / d layer|| + eps)``, clamped to ``[0, max_weight]`` and detached.

    Both graphs are kept (``retain_graph=True``) so the caller can still back-propagate the total.
    """
    num_grad = torch.autograd.grad(numerator_loss, layer, retain_graph=True)[0]
    den_grad = torch.autograd.grad(denominator_loss, layer, retain_graph=True)[0]
    weight = num_grad.norm() / (den_grad.norm() + eps)
    return weight.clamp(0.0, max_weight).detach()


SP_LOSSES = ("mse", "cosine")


def semantic_preservation_loss(current: Tensor, target: Tensor, kind: str = "mse") -> Tensor:
    """L_sp between the trainable and the frozen stage-1 maps ``[B, C, H, W]`` (Ch. 7 §7.3, Eq. 7.5; Table 7.1).

    ``mse``: the thesis's L2, the mean squared error. ``cosine`` (Table 7.1's "Cosine L_sp" row; the
    thesis gives no formula): ``1 - cos`` between the two C-dim vectors of each token, averaged over
    tokens and batch, our reading.
    """
    if kind == "mse":
        return F.mse_loss(current.float(), target.float())
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(current.float(), target.float(), dim=1, eps=1e-8)).mean()
    raise ValueError(f"model.init_args.sp_loss must be one of {list(SP_LOSSES)}, got {kind!r}")


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """Discriminator hinge loss ``(relu(1 - D(x)) + relu(1 + D(x_hat))) / 2``."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def generator_loss(logits_fake: Tensor) -> Tensor:
    """The generator's adversarial loss ``-D(x_hat)`` (hinge-GAN generator)."""
    return -logits_fake.mean()


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix ``NLayerDiscriminator``): ``n_layers`` stride-2 convs, then two stride-1 convs."""

    def __init__(self, in_channels: int = 3, base_channels: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, base_channels, 4, 2, 1),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(base_channels * prev, base_channels * mult, 4, stride, 1, bias=False),
                nn.BatchNorm2d(base_channels * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(base_channels * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)

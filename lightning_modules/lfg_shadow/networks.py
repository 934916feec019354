"""LFG-Diffusion networks (thesis 001 Ch. 7 §7.3.2-7.3.3, Fig. 7.5): epsilon_theta, the latent feature encoder, DLVF.

* :class:`LatentFeatureEncoder` ``E_theta(x, m)``: the ADM UNet *without* the timestep embedding,
  one output channel at full resolution (§7.3.2: "the same network architecture as the diffusion
  network with the exception of a timestep embedding and predicts a single-channel feature map").
* :class:`DenseLatentVariableFusion`: ``emb(y_t) = MLP(adaptive_avg_pool(y_t, p x p).flatten())``
  added to the timestep embedding (Eqs. 7.14-7.15). Added there, it reaches every ResBlock of the
  network through the scale-shift norm, which is how the public re-implementation realises the
  "dense" fusion of Eq. 7.14 ([code] ``DensePosteriorConditionalUNet``). The MLP is
  Linear(3 p^2 -> 4C), SiLU, Linear(4C -> 4C) as there; the thesis's "three-layer MLP" is read as
  these three layers. ``p = 64`` at 256 px ([code]).
* :class:`LFGNetwork`: ``epsilon_theta(y_t, E, x, m, t)`` on the channel concatenation
  ``[y_t, x, m, E]`` (Eq. 7.9; 3 + 3 + 1 + 1 = 8 channels; the re-implementation drops ``m`` from
  this input and feeds a 3-channel mask to the encoder: the thesis is followed here) and the
  encoder (input ``[x, m]``, 4 channels).

Guidance variants (Table 7.4 ablation): ``latent`` / ``latent_no_inv`` build the encoder,
``none`` (the Eq. 7.8 baseline) feeds a zero latent channel and has no encoder.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.components.adm_unet import ADMUNet

GUIDANCE_CHOICES = ("latent", "latent_no_inv", "none")

#: Thesis/[code] sizes: epsilon_theta (192 ch, 2 res blocks, attention at ds 8/16/32, head 64,
#: mult 1,1,2,2,2,4, learned sigma) and E_theta (96 ch, 1 res block, attention at ds 8/16, mult 1,1,2,2,4).
PAPER_DENOISER = dict(model_channels=192, num_res_blocks=2, attention_ds=(8, 16, 32), channel_mult=(1, 1, 2, 2, 2, 4),
                      num_head_channels=64, use_scale_shift_norm=True, resblock_updown=True,
                      use_new_attention_order=True, learn_sigma=True, dropout=0.0)
PAPER_ENCODER = dict(model_channels=96, num_res_blocks=1, attention_ds=(8, 16), channel_mult=(1, 1, 2, 2, 4),
                     num_heads=4, num_head_channels=-1, use_scale_shift_norm=True, resblock_updown=True,
                     use_new_attention_order=True, dropout=0.0)


class LatentFeatureEncoder(nn.Module):
    """``E_theta(x, m)``: ADM UNet without timestep embedding, ``[B, 4, H, W] -> [B, 1, H, W]``."""

    def __init__(self, image_channels: int = 3, **unet: Any) -> None:
        super().__init__()
        unet = {**unet, "use_timestep_embedding": False, "learn_sigma": False}
        self.unet = ADMUNet(in_channels=image_channels + 1, out_channels=1, **unet)

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        return self.unet(torch.cat([image, mask.to(image.dtype)], dim=1))


class DenseLatentVariableFusion(nn.Module):
    """``emb(y_t) = MLP(pool_{p x p}(y_t))`` in the timestep-embedding space (Eqs. 7.14-7.15)."""

    def __init__(self, embedding_dim: int, pool_size: int = 64, image_channels: int = 3, zero_init: bool = False) -> None:
        super().__init__()
        self.pool_size = int(pool_size)
        self.mlp = nn.Sequential(nn.Linear(image_channels * pool_size * pool_size, embedding_dim), nn.SiLU(),
                                 nn.Linear(embedding_dim, embedding_dim))
        if zero_init:
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, y_t: Tensor) -> Tensor:
        pooled = F.adaptive_avg_pool2d(y_t, self.pool_size)
        return self.mlp(pooled.flatten(1).to(self.mlp[0].weight.dtype))


class LFGNetwork(nn.Module):
    """epsilon_theta with its latent feature encoder and DLVF (module docstring).

    Args:
        denoiser: ``ADMUNet`` keyword arguments of epsilon_theta (in/out channels are set here).
        encoder: ``ADMUNet`` keyword arguments of E_theta (ignored for ``guidance='none'``).
        guidance: ``latent``, ``latent_no_inv`` (same network; the module drops the invariant loss)
            or ``none``.
        use_dlvf: add the dense latent variable fusion embedding (Table 7.3 ablation: ``False``).
        dlvf_pool_size: ``p`` of the adaptive pooling (64 at 256 px).
        dlvf_zero_init: zero the MLP's last layer (no effect at start).
        image_channels: 3 (RGB).
    """

    def __init__(
        self,
        denoiser: Optional[Mapping[str, Any]] = None,
        encoder: Optional[Mapping[str, Any]] = None,
        guidance: str = "latent",
        use_dlvf: bool = True,
        dlvf_pool_size: int = 64,
        dlvf_zero_init: bool = False,
        image_channels: int = 3,
    ) -> None:
        super().__init__()
        if guidance not in GUIDANCE_CHOICES:
            raise ValueError(f"guidance={guidance!r} is not one of {list(GUIDANCE_CHOICES)}")
        self.guidance = guidance
        self.image_channels = int(image_channels)
        den = {**PAPER_DENOISER, **dict(denoiser or {})}
        den.pop("in_channels", None)
        den.pop("out_channels", None)
        den["use_timestep_embedding"] = True
        self.denoiser = ADMUNet(in_channels=2 * image_channels + 2, out_channels=image_channels, **den)
        self.encoder = None
        if guidance != "none":
            enc = {**PAPER_ENCODER, **dict(encoder or {})}
            for key in ("in_channels", "out_channels", "use_timestep_embedding", "learn_sigma"):
                enc.pop(key, None)
            self.encoder = LatentFeatureEncoder(image_channels, **enc)
        self.dlvf = (DenseLatentVariableFusion(self.denoiser.embedding_dim, dlvf_pool_size, image_channels, dlvf_zero_init)
                     if use_dlvf else None)

    @property
    def learn_sigma(self) -> bool:
        return self.denoiser.learn_sigma

    @property
    def downsample_factor(self) -> int:
        factors = [self.denoiser.downsample_factor] + ([self.encoder.unet.downsample_factor] if self.encoder else [])
        return max(factors)

    def encode(self, image: Tensor, mask: Tensor) -> Tensor:
        """``E_theta(image, mask)``; a zero map for ``guidance='none'``."""
        if self.encoder is None:
            return image.new_zeros(image.shape[0], 1, *image.shape[-2:])
        return self.encoder(image, mask)

    def forward(
        self,
        y_t: Tensor,
        timesteps: Tensor,
        condition: Tensor,
        mask: Tensor,
        latent: Optional[Tensor] = None,
        return_variance: bool = False,
    ) -> Tensor:
        """Epsilon ``[B, 3, H, W]`` (``return_variance``: epsilon and ``v`` stacked, ``[B, 6, H, W]``).

        ``latent`` is the encoder's output; computed from ``(condition, mask)`` when ``None``.
        """
        if latent is None:
            latent = self.encode(condition, mask)
        inputs = torch.cat([y_t, condition.to(y_t.dtype), mask.to(y_t.dtype), latent.to(y_t.dtype)], dim=1)
        extra = self.dlvf(y_t) if self.dlvf is not None else None
        out = self.denoiser(inputs, timesteps, extra_embedding=extra)
        if return_variance or not self.learn_sigma:
            return out
        return out[:, : self.image_channels]


__all__ = ["DenseLatentVariableFusion", "GUIDANCE_CHOICES", "LFGNetwork", "LatentFeatureEncoder",
           "PAPER_DENOISER", "PAPER_ENCODER"]

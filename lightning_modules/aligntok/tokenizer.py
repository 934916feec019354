"""The AlignTok tokenizer: foundation encoder -> per-token MLP adapter -> conv decoder (Ch. 7 §7.2).

``z = A(E_p(x))`` is deterministic (no KL, no sampling). The decoder is the LDM / VA-VAE
convolutional decoder built from diffusers' ``Decoder`` class: z_channels 32, ch 128,
ch_mult (1, 1, 2, 2, 4), 2 res blocks, attention at the 16x16 level (``AttnUpDecoderBlock2D``
for the lowest-resolution up block) and in the mid block: 41.42M parameters, the number of
Tables 7.7/7.8.

Adapter hidden width (the thesis says only "2-layer MLP 1024 -> 32"): 64. Table 7.6 lists
44.25M trainable parameters in stage 1 = decoder 41.418M + PatchGAN 2.766M + adapter; the
remaining 67.7K is exactly ``1024*64 + 64 + 64*32 + 32`` (hidden 64, GELU between).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

from torch import Tensor, nn

from lightning_modules.aligntok.encoder import FoundationEncoder

#: The VA-VAE / LDM f16 decoder (see module docstring), as diffusers ``Decoder`` arguments.
FULL_DECODER: dict[str, Any] = {
    "block_out_channels": [128, 128, 256, 256, 512],
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "attention_levels": 1,
}


class TokenAdapter(nn.Module):
    """Per-token 2-layer MLP ``Linear(C_enc, hidden) -> GELU -> Linear(hidden, latent)`` as 1x1 convs."""

    def __init__(self, in_channels: int = 1024, hidden: int = 64, out_channels: int = 32) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(in_channels, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


def build_decoder(latent_channels: int, config: Optional[Mapping[str, Any]] = None) -> nn.Module:
    """diffusers' LDM ``Decoder``; ``attention_levels`` lowest-resolution up blocks get self-attention."""
    from diffusers.models.autoencoders.vae import Decoder

    cfg = {**FULL_DECODER, **dict(config or {})}
    channels = [int(c) for c in cfg["block_out_channels"]]
    levels = int(cfg.get("attention_levels", 0))
    up_types = tuple("AttnUpDecoderBlock2D" if i < levels else "UpDecoderBlock2D" for i in range(len(channels)))
    return Decoder(
        in_channels=latent_channels,
        out_channels=3,
        up_block_types=up_types,
        block_out_channels=tuple(channels),
        layers_per_block=int(cfg["layers_per_block"]),
        norm_num_groups=int(cfg["norm_num_groups"]),
        act_fn="silu",
        mid_block_add_attention=bool(cfg.get("mid_block_attention", True)),
    )


class AlignTokenizer(nn.Module):
    """``encode``: images in [-1, 1] -> latents ``[B, latent_channels, H/16, W/16]``; ``decode`` back.

    Args:
        encoder: :class:`FoundationEncoder` arguments (model name, weights path, sizes).
        adapter_hidden: hidden width of the adapter MLP (64, see module docstring).
        latent_channels: latent width d (32 for f16d32, 64 for f16d64).
        decoder: decoder arguments (``block_out_channels``, ``layers_per_block``,
            ``norm_num_groups``, ``attention_levels``); missing keys take the full-size values.
    """

    def __init__(
        self,
        encoder: Optional[Mapping[str, Any]] = None,
        adapter_hidden: int = 64,
        latent_channels: int = 32,
        decoder: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__()
        self.encoder = FoundationEncoder(**dict(encoder or {}))
        self.adapter = TokenAdapter(self.encoder.embed_dim, adapter_hidden, latent_channels)
        self.decoder = build_decoder(latent_channels, decoder)
        self.latent_channels = int(latent_channels)
        self.downsample = self.encoder.downsample

    def encode(self, images: Tensor) -> Tensor:
        return self.adapter(self.encoder(images))

    def decode(self, latents: Tensor) -> Tensor:
        return self.decoder(latents)

    def forward(self, images: Tensor) -> Tensor:
        return self.decode(self.encode(images))

    def decoder_last_layer(self) -> nn.Parameter:
        """The parameter at which the adaptive GAN weight compares gradient norms (VQGAN)."""
        return self.decoder.conv_out.weight

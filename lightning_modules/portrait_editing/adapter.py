"""MCDM's image embedding ``c_im = MLP([E(x_A), CLIP_im(x_A)])`` (thesis 000, Ch. 5, §5.2.3, §5.5.2).

§5.5.2: "we implement MLP(.) following the structure described in the adapter in [125]" (DreamPose).
The structure of DreamPose's ``Embedding_Adapter`` (digest 5.4, marked [code]; read from its public
code, written here anew): the VAE latent ``[B, C, h, w]`` is max-pooled by 2, each channel is
flattened and linearly projected to the text width (``Linear(h w / 4 -> D)``), giving ``C`` tokens
(4 for SD); these are concatenated after the CLIP image hidden tokens (``N`` = 50 for ViT-B/32)
and a linear layer over the *token* axis maps the ``N + C`` tokens back to ``N``. That
token-mixing layer starts as the identity on the CLIP tokens (weights ``[I_N | 0]``, bias 0), so at
initialisation ``c_im`` is exactly the CLIP tokens and the VAE path is switched off.
[?] The thesis does not name the CLIP variant; a 768-wide hidden state (ViT-B/32, as DreamPose)
matches SD-1.5's text width. When the widths differ a linear projection of the CLIP tokens is added
(not the paper's case; tiny configs keep the widths equal).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class ImageEmbedAdapter(nn.Module):
    """``(latent [B, C, h, w], clip_tokens [B, N, Dc]) -> [B, N, D]`` (module docstring).

    Args:
        latent_channels: ``C`` (4 for SD).
        latent_size: ``(h, w)`` or ``h`` of the VAE latent (64 at 512 px).
        clip_tokens: ``N`` CLIP hidden tokens (50 for ViT-B/32 at 224 px).
        clip_dim: width of the CLIP hidden tokens.
        dim: the text-token width ``D`` (SD-1.5: 768).
        pool: max-pool factor of the latent (2).
    """

    def __init__(self, latent_channels: int = 4, latent_size: int | tuple[int, int] = 64, clip_tokens: int = 50,
                 clip_dim: int = 768, dim: int = 768, pool: int = 2) -> None:
        super().__init__()
        h, w = (latent_size, latent_size) if isinstance(latent_size, int) else tuple(latent_size)
        if h % pool or w % pool:
            raise ValueError(f"latent size {h}x{w} is not divisible by the pool factor {pool}")
        self.latent_channels, self.clip_tokens, self.pool_size = int(latent_channels), int(clip_tokens), int(pool)
        self.latent_features = (h // pool) * (w // pool)
        self.pool = nn.MaxPool2d(pool)
        self.latent_proj = nn.Linear(self.latent_features, dim)
        self.clip_proj = nn.Identity() if clip_dim == dim else nn.Linear(clip_dim, dim)
        self.mix = nn.Linear(self.clip_tokens + self.latent_channels, self.clip_tokens)
        with torch.no_grad():
            self.mix.weight.zero_()
            self.mix.weight[:, : self.clip_tokens] = torch.eye(self.clip_tokens)
            self.mix.bias.zero_()

    def forward(self, latent: Tensor, clip_tokens: Tensor) -> Tensor:
        pooled = self.pool(latent.float()).flatten(2)  # [B, C, hw/4]
        if pooled.shape[1:] != (self.latent_channels, self.latent_features):
            raise ValueError(f"adapter expects a latent pooling to {self.latent_channels} x {self.latent_features}, "
                             f"got {tuple(pooled.shape[1:])} (set the adapter's latent_size to the VAE latent size)")
        if clip_tokens.shape[1] != self.clip_tokens:
            raise ValueError(f"adapter expects {self.clip_tokens} CLIP tokens, got {clip_tokens.shape[1]}")
        tokens = torch.cat([self.clip_proj(clip_tokens.float()), self.latent_proj(pooled)], dim=1)  # [B, N + C, D]
        return self.mix(tokens.transpose(1, 2)).transpose(1, 2)


__all__ = ["ImageEmbedAdapter"]

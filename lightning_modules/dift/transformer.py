"""DiFT's transformer: a DiT-XL-size decoder over the tokens of the sampled views (thesis 001 Ch. 4).

§4.4 "Experimental Details": DiT-XL size (28 blocks, hidden 1152, 16 heads; ~675M parameters,
checked on the meta device in the tests), the diffusion timestep as a 256-d frequency embedding
followed by a 2-layer SiLU MLP (reused: ``lightning_modules.aligntok.lightning_dit.TimestepEmbedder``).

Conditioning of every block (adaLN-Zero, :class:`lightning_modules.components.dit_block.DiTBlock`):
``c[token] = emb(t[view of token]) + text[token index within its view]``:

* each view has its own timestep (Fig. 4.2d), so context frames (clean, ``k = -1``) and the
  frame being generated carry different modulation;
* §4.3.2: the text embedding ``Z x D`` regresses per-token scale and shift; with several views
  ``(T x Z) x D`` the *same* ``Z x D`` modulation is broadcast to every view. ``Z`` must
  match the tokens per view (256 = 256 in the thesis); :class:`TextConditioner` pads (zeros) or
  truncates the precomputed embeddings to that length (our choice where they differ) and maps
  them with one linear layer (the "single-layer MLP") to the width. A learned null embedding
  (``Z x D``, DiT's null class analogue) replaces it under CFG dropout and for the
  unconditional pass. The thesis's adLN formula "Norm(F) beta + beta" is read as DiT's
  ``Norm(F)(1 + gamma) + beta`` (typo, digest §3.3).

Attention (digest §3.8): ``attention="sampled_views"`` (default, the consistent reading) is
full self-attention over the tokens of the n sampled views (not over the whole field);
``"per_view"`` is block-diagonal attention inside each view. The DPF-style baseline passes
``token_index`` (uniformly sampled tokens of the whole field) and attends over those.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from lightning_modules.aligntok.lightning_dit import TimestepEmbedder
from lightning_modules.components.dit_block import DiTBlock, DiTFinalLayer
from lightning_modules.dift.tokenizer import FieldTokenizer

__all__ = ["ATTENTION_MODES", "DiFTTransformer", "TextConditioner"]

ATTENTION_MODES = ("sampled_views", "per_view")


class TextConditioner(nn.Module):
    """Precomputed text (T5) or view (CLIP) embeddings ``[B, Z', D_t]`` -> modulation ``[B, Z, hidden]``."""

    def __init__(self, text_dim: int, hidden: int, num_tokens: int) -> None:
        super().__init__()
        self.text_dim, self.num_tokens = int(text_dim), int(num_tokens)
        self.proj = nn.Linear(self.text_dim, hidden)
        self.null_embedding = nn.Parameter(torch.randn(self.num_tokens, hidden) * 0.02)

    def fit_length(self, text: Tensor) -> Tensor:
        """Pad with zeros / truncate ``[B, Z', D_t]`` to ``[B, Z, D_t]``."""
        z = text.shape[1]
        if z >= self.num_tokens:
            return text[:, : self.num_tokens]
        return torch.cat([text, text.new_zeros(text.shape[0], self.num_tokens - z, text.shape[2])], dim=1)

    def forward(self, text: Optional[Tensor], drop: Optional[Tensor], batch: int) -> Tensor:
        null = self.null_embedding.unsqueeze(0).expand(batch, -1, -1)
        if text is None:
            return null
        if text.dim() != 3 or text.shape[-1] != self.text_dim:
            raise ValueError(f"text embeddings must be [B, tokens, {self.text_dim}], got {tuple(text.shape)}")
        emb = self.proj(self.fit_length(text.to(self.proj.weight.dtype)))
        if drop is None:
            return emb
        return torch.where(drop.reshape(-1, 1, 1).bool(), null, emb)


class DiFTTransformer(nn.Module):
    """``forward(latents [B, V, C, h, w], timesteps [B, V], coords, text=None, text_drop=None) -> eps``.

    Args:
        in_channels, patch_size: latent channels and patch side of :class:`FieldTokenizer`.
        latent_size: latent view side ``h = w`` (sets the tokens per view for the text length).
        hidden_size, depth, num_heads, mlp_ratio: 1152 / 28 / 16 / 4 (DiT-XL).
        coordinates, num_actions, fourier_bands, frame_scale: the tokenizer's coordinates.
        text_dim: width of the condition embeddings (4096 for T5-XXL, 768 for CLIP ViT-L/14's
            hidden states); ``None``: no text (CIFAR-10, "no text, for fairness").
        attention: ``"sampled_views"`` or ``"per_view"``.
    """

    def __init__(
        self,
        in_channels: int = 4,
        patch_size: int = 2,
        latent_size: int = 32,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        coordinates: Sequence[str] = ("hw",),
        num_actions: int = 0,
        fourier_bands: int = 8,
        frame_scale: float = 16.0,
        text_dim: Optional[int] = None,
        attention: str = "sampled_views",
    ) -> None:
        super().__init__()
        if attention not in ATTENTION_MODES:
            raise ValueError(f"attention={attention!r} is not one of {list(ATTENTION_MODES)}")
        if latent_size % patch_size:
            raise ValueError(f"latent_size {latent_size} is not divisible by patch_size {patch_size}")
        self.in_channels, self.patch_size, self.latent_size = int(in_channels), int(patch_size), int(latent_size)
        self.hidden_size, self.attention = int(hidden_size), attention
        self.tokens_per_view = (latent_size // patch_size) ** 2
        self.tokenizer = FieldTokenizer(in_channels, patch_size, hidden_size, coordinates, num_actions, fourier_bands, frame_scale)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.text = TextConditioner(text_dim, hidden_size, self.tokens_per_view) if text_dim else None
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.final = DiTFinalLayer(hidden_size, self.tokenizer.token_features)
        self._init_weights()

    def _init_weights(self) -> None:
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear) and "adaLN" not in name and not name.startswith("final"):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for layer in self.t_embedder.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=0.02)

    def conditioning(
        self, timesteps: Tensor, views: int, text: Optional[Tensor], text_drop: Optional[Tensor], batch: int
    ) -> Tensor:
        """Per-token conditioning ``[B, V * N, hidden]`` (timestep of the token's view + its text token)."""
        n = self.tokens_per_view
        if timesteps.dim() == 1:
            timesteps = timesteps.reshape(-1, 1).expand(batch, views)
        if timesteps.shape != (batch, views):
            raise ValueError(f"timesteps must be [B, V] = [{batch}, {views}], got {tuple(timesteps.shape)}")
        # TimestepEmbedder multiplies by 1000: pass the DDPM step k as k / 1000.
        t_emb = self.t_embedder(timesteps.reshape(-1).float() / 1000.0).reshape(batch, views, 1, -1)
        c = t_emb.expand(batch, views, n, self.hidden_size)
        if self.text is not None:
            c = c + self.text(text, text_drop, batch).unsqueeze(1)  # the same Z x D for every view
        return c.reshape(batch, views * n, self.hidden_size)

    def forward(
        self,
        latents: Tensor,
        timesteps: Tensor,
        coords: Optional[Mapping[str, Tensor]] = None,
        text: Optional[Tensor] = None,
        text_drop: Optional[Tensor] = None,
        token_index: Optional[Tensor] = None,
    ) -> Tensor:
        b, v, c, h, w = latents.shape
        if (h, w) != (self.latent_size, self.latent_size):
            raise ValueError(f"latent views must be {self.latent_size}x{self.latent_size}, got {h}x{w}")
        tokens = self.tokenizer(latents, coords or {})
        cond = self.conditioning(timesteps, v, text, text_drop, b)
        groups: Optional[int] = v if self.attention == "per_view" else None
        if token_index is not None:  # DPF-style baseline: a uniform subset of the field's tokens
            index = token_index.unsqueeze(-1).expand(-1, -1, self.hidden_size)
            tokens, cond, groups = tokens.gather(1, index), cond.gather(1, index), None
        for block in self.blocks:
            tokens = block(tokens, cond, groups)
        out = self.final(tokens, cond)
        if token_index is not None:
            return out
        return self.tokenizer.unpatchify(out, v, h, w)

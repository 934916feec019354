"""A DiT block with per-token adaLN-Zero conditioning and grouped (block-diagonal) attention.

DiT (Peebles & Xie 2023): ``x += gate_a * Attn(mod(LN(x)))``, ``x += gate_m * MLP(mod(LN(x)))``
with ``mod(h) = h * (1 + scale) + shift`` and the six modulation vectors regressed from the
conditioning ``c`` by ``SiLU -> Linear`` zero-initialised (adaLN-Zero: every residual branch
starts closed). Used by DiFT (thesis 001 Ch. 4 §4.3.2, §4.4 "Experimental Details").

Why not AlignTok's ``LightningDiTBlock`` (``lightning_modules/aligntok/lightning_dit.py``): that
block is LightningDiT's variant (RMSNorm, SwiGLU, 2-D RoPE over one image grid) and modulates
with one vector per sample. DiFT aligns with plain DiT-XL (LayerNorm, GELU-tanh MLP of ratio 4,
which gives DiT-XL's ~675M parameters) and needs (a) a modulation per *token* (the text
embedding regresses scale/shift per token, §4.3.2) and (b) attention restricted to groups of
tokens (one view). The timestep embedder *is* reused from that file.

``forward(x [B, L, D], c [B, L, D] or [B, D], groups=None)``: with ``groups`` (an int ``G``
dividing ``L``) attention runs inside each consecutive block of ``L / G`` tokens only, done
by folding the groups into the batch (exactly block-diagonal, no mask tensor); an optional
boolean ``attn_mask [B, L, L]`` (True = attend) allows arbitrary patterns.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DiTBlock", "DiTFinalLayer", "modulate_tokens"]


def modulate_tokens(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """``x * (1 + scale) + shift`` with per-token (``[B, L, D]``) or per-sample (``[B, D]``) vectors."""
    if shift.dim() == 2:
        shift, scale = shift.unsqueeze(1), scale.unsqueeze(1)
    return x * (1 + scale) + shift


class GroupedSelfAttention(nn.Module):
    """Multi-head self-attention over ``[B, L, D]``, optionally inside ``groups`` equal token blocks."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, groups: Optional[int] = None, attn_mask: Optional[Tensor] = None) -> Tensor:
        b, n, c = x.shape
        if groups is not None and groups > 1:
            if n % groups:
                raise ValueError(f"{n} tokens cannot be split into {groups} equal attention groups")
            x = x.reshape(b * groups, n // groups, c)
        bb, nn_, _ = x.shape
        q, k, v = self.qkv(x).reshape(bb, nn_, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        mask = attn_mask.unsqueeze(1) if attn_mask is not None else None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = self.proj(out.transpose(1, 2).reshape(bb, nn_, c))
        return out.reshape(b, n, c)


class DiTBlock(nn.Module):
    """DiT block (LayerNorm without affine, eps 1e-6; GELU-tanh MLP; adaLN-Zero)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = GroupedSelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.adaLN_modulation[1].weight)
        nn.init.zeros_(self.adaLN_modulation[1].bias)

    def forward(self, x: Tensor, c: Tensor, groups: Optional[int] = None, attn_mask: Optional[Tensor] = None) -> Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaLN_modulation(c).chunk(6, dim=-1)
        if gate_a.dim() == 2:
            gate_a, gate_m = gate_a.unsqueeze(1), gate_m.unsqueeze(1)
        x = x + gate_a * self.attn(modulate_tokens(self.norm1(x), shift_a, scale_a), groups, attn_mask)
        x = x + gate_m * self.mlp(modulate_tokens(self.norm2(x), shift_m, scale_m))
        return x


class DiTFinalLayer(nn.Module):
    """``Linear(mod(LN(x)))`` to the per-token output size; zero-initialised (DiT)."""

    def __init__(self, dim: int, out_features: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, out_features)
        for layer in (self.adaLN_modulation[1], self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate_tokens(self.norm(x), shift, scale))

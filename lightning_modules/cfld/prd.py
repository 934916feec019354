"""Perception-Refined Decoder H_D (seed 003, Sec. 3.2 "Perception-Refined Decoder"; digest 002-003 A3).

``Q = 16`` learnable queries of width ``C = 768`` (SD-1.5's text-embedding width, so the output
replaces the CLIP prompt in every UNet cross-attention) are refined by ``R = 8`` decoder blocks
that attend to the last Swin level ``f4`` (8x8 = 64 tokens of width 1024 for Swin-B at 256x256).
The paper says only "standard transformer decoders [47]" with cross-attention to ``f4``; the
block internals are a choice, and two layouts are offered (``layout``):

* ``"authors"`` (default: where the paper is silent the authors' code is the reference, and their
  released weights load into it exactly, :mod:`lightning_modules.cfld.released`): the authors'
  ``models/decoder.py``: diffusers ``BasicTransformerBlock`` s run cross-attention first. Per block
  ``h += pos; h += attn2(norm2(h), f4 + kv_pos); h += pos; h += attn1(norm1(h)); h += ff(norm3(h))``
  (the query positional embedding is added to the residual stream, twice per block); the f4
  tokens get a learned positional embedding and no LayerNorm; no final norm. Parameters
  ``query_feat [Q, C]``, ``pos_embed [Q, C]``, ``kv_pos_embed [1, N, C_f4]``, ``blocks.r.*``
  (97.71M at full size, paper Table 1: 97.7M).
* ``"pre_norm"`` (the suite's first reading, kept for runs trained with it): pre-LayerNorm,
  cross-attention first (queries -> f4 tokens, positional embeddings added to the attention
  inputs only), then self-attention, then a GEGLU feed-forward, each residual; one LayerNorm per
  block on the f4 tokens; ``nn.MultiheadAttention`` without biases; a final LayerNorm (97.7M).

Both: 24 heads (head width 32), queries and embeddings initialised N(0, 0.02^2).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from diffusers.models.attention import BasicTransformerBlock
from torch import Tensor, nn

PRD_LAYOUTS = ("authors", "pre_norm")


class GEGLUFeedForward(nn.Module):
    """``Linear(d, 2 m) -> a * gelu(g) -> Linear(m, d)`` with ``m = mult * d``."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.proj_in = nn.Linear(dim, 2 * mult * dim)
        self.proj_out = nn.Linear(mult * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        a, gate = self.proj_in(x).chunk(2, dim=-1)
        return self.proj_out(a * F.gelu(gate))


class DecoderBlock(nn.Module):
    """Pre-LN: cross-attention to the image tokens, self-attention, GEGLU feed-forward."""

    def __init__(self, dim: int, kv_dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm_cross = nn.LayerNorm(dim)
        self.norm_memory = nn.LayerNorm(kv_dim)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, bias=False, kdim=kv_dim, vdim=kv_dim, batch_first=True)
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, num_heads, bias=False, batch_first=True)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = GEGLUFeedForward(dim)

    def forward(self, x: Tensor, query_pos: Tensor, memory: Tensor, memory_pos: Tensor, need_weights: bool = False):
        q = self.norm_cross(x) + query_pos
        kv = self.norm_memory(memory) + memory_pos
        attended, weights = self.cross_attn(q, kv, kv, need_weights=need_weights, average_attn_weights=True)
        x = x + attended
        q = self.norm_self(x) + query_pos
        x = x + self.self_attn(q, q, self.norm_self(x), need_weights=False)[0]
        x = x + self.ff(self.norm_ff(x))
        return x, weights


class PerceptionRefinedDecoder(nn.Module):
    """``f4 [B, kv_dim, h, w] -> prompt [B, num_queries, dim]``.

    Args:
        dim: query / prompt width (768 = SD-1.5 ``cross_attention_dim``).
        kv_dim: channels of the last Swin level (1024 for Swin-B).
        num_tokens: number of f4 tokens (64 = 8x8 at a 256x256 source).
        num_queries: Q (16).
        depth: R (8).
        num_heads: attention heads (24).
        layout: ``"authors"`` (default) or ``"pre_norm"`` (see the module docstring).
    """

    def __init__(
        self, dim: int = 768, kv_dim: int = 1024, num_tokens: int = 64, num_queries: int = 16, depth: int = 8,
        num_heads: int = 24, layout: str = "authors",
    ) -> None:
        super().__init__()
        if layout not in PRD_LAYOUTS:
            raise ValueError(f"model.init_args.prd.layout={layout!r} is not one of {list(PRD_LAYOUTS)}")
        self.layout = layout
        self.num_tokens, self.num_queries = num_tokens, num_queries
        if layout == "authors":
            self.query_feat = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
            self.pos_embed = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
            self.kv_pos_embed = nn.Parameter(torch.randn(1, num_tokens, kv_dim) * 0.02)
            self.blocks = nn.ModuleList(
                BasicTransformerBlock(dim, num_heads, dim // num_heads, cross_attention_dim=kv_dim) for _ in range(depth)
            )
        else:
            self.queries = nn.Parameter(torch.randn(1, num_queries, dim) * 0.02)
            self.query_pos = nn.Parameter(torch.randn(1, num_queries, dim) * 0.02)
            self.memory_pos = nn.Parameter(torch.randn(1, num_tokens, kv_dim) * 0.02)
            self.blocks = nn.ModuleList(DecoderBlock(dim, kv_dim, num_heads) for _ in range(depth))
            self.norm_out = nn.LayerNorm(dim)
        self.last_attention: Optional[Tensor] = None

    def forward(self, f4: Tensor, keep_attention: bool = False) -> Tensor:
        memory = f4.flatten(2).transpose(1, 2)
        if memory.shape[1] != self.num_tokens:
            raise ValueError(f"PRD expects {self.num_tokens} f4 tokens (source size / 32 squared), got {memory.shape[1]}")
        if self.layout == "authors":
            return self._forward_authors(memory, keep_attention)
        x = self.queries.expand(f4.shape[0], -1, -1)
        weights = None
        for block in self.blocks:
            x, weights = block(x, self.query_pos, memory, self.memory_pos, need_weights=keep_attention)
        # Fig. 7: the last block's query-to-f4 attention (averaged over heads), for visualisation
        self.last_attention = weights.detach() if keep_attention and weights is not None else None
        return self.norm_out(x)

    def _forward_authors(self, memory: Tensor, keep_attention: bool) -> Tensor:
        kv = memory + self.kv_pos_embed
        pos = self.pos_embed.unsqueeze(0).to(kv.dtype)
        h = self.query_feat.unsqueeze(0).expand(memory.shape[0], -1, -1).to(kv.dtype)
        weights = None
        for index, block in enumerate(self.blocks):
            h = h + pos
            normed = block.norm2(h)
            if keep_attention and index == len(self.blocks) - 1:
                weights = _attention_weights(block.attn2, normed, kv)
            h = h + block.attn2(normed, encoder_hidden_states=kv)
            h = h + pos
            h = h + block.attn1(block.norm1(h))
            h = h + block.ff(block.norm3(h))
        self.last_attention = weights
        return h


def _attention_weights(attn: nn.Module, hidden: Tensor, context: Tensor) -> Tensor:
    """Head-averaged ``softmax(q k^T / sqrt(d))`` of a diffusers ``Attention`` (Fig. 7 maps)."""
    with torch.no_grad():
        q, k = attn.to_q(hidden), attn.to_k(context)
        heads = attn.heads
        d = q.shape[-1] // heads
        q = q.reshape(q.shape[0], -1, heads, d).transpose(1, 2)
        k = k.reshape(k.shape[0], -1, heads, d).transpose(1, 2)
        return torch.softmax(q @ k.transpose(-1, -2) / d**0.5, dim=-1).mean(1)


class SwinLinearPrompt(nn.Module):
    """Ablation B5 (Table 3, ``swin.yaml`` [R]): no PRD, the prompt is ``Linear(kv_dim -> dim)`` of the f4 tokens."""

    def __init__(self, dim: int = 768, kv_dim: int = 1024) -> None:
        super().__init__()
        self.proj = nn.Linear(kv_dim, dim)

    def forward(self, f4: Tensor, keep_attention: bool = False) -> Tensor:
        return self.proj(f4.flatten(2).transpose(1, 2))


class ZeroPrompt(nn.Module):
    """Ablation B1 (authors' ``ape.yaml``, decoder depth -1): no PRD, a constant all-zero prompt of ``num_tokens`` tokens."""

    def __init__(self, dim: int = 768, num_tokens: int = 64) -> None:
        super().__init__()
        self.dim, self.num_tokens = dim, num_tokens

    def forward(self, f4: Tensor, keep_attention: bool = False) -> Tensor:
        return f4.new_zeros(f4.shape[0], self.num_tokens, self.dim)

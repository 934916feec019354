"""Perception-Refined Decoder H_D (seed 003, Sec. 3.2 "Perception-Refined Decoder"; digest 002-003 A3).

``Q = 16`` learnable queries of width ``C = 768`` (SD-1.5's text-embedding width, so the output
replaces the CLIP prompt in every UNet cross-attention) are refined by ``R = 8`` decoder blocks
that attend to the last Swin level ``f4`` (8x8 = 64 tokens of width 1024 for Swin-B at 256x256).

Block layout ([R], digest A3): pre-LayerNorm, cross-attention first (queries -> f4 tokens),
then self-attention among the queries, then a GEGLU feed-forward (4x inner width), each with a
residual connection. 24 heads (head width 32). Learned positional embeddings: one per query
(added to the query input of both attentions) and one per f4 token (added to the f4 tokens
before they become keys and values); queries and embeddings are initialised N(0, 0.02^2).

Choices where paper and digest are silent ([GAP]): the f4 tokens pass through one LayerNorm per
block before the key/value projections; the positional embedding is added to both keys and
values (the digest: "added to f4"); the attention projections have no biases (as diffusers'
``Attention`` default in SD); a final LayerNorm closes the decoder. With these the parameter
count is 97.7M at full size, the paper's Table 1 figure (checked on the meta device in tests;
the learnable null prompt, 12K, is counted apart).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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
    """

    def __init__(
        self, dim: int = 768, kv_dim: int = 1024, num_tokens: int = 64, num_queries: int = 16, depth: int = 8, num_heads: int = 24
    ) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(1, num_queries, dim) * 0.02)
        self.query_pos = nn.Parameter(torch.randn(1, num_queries, dim) * 0.02)
        self.memory_pos = nn.Parameter(torch.randn(1, num_tokens, kv_dim) * 0.02)
        self.blocks = nn.ModuleList(DecoderBlock(dim, kv_dim, num_heads) for _ in range(depth))
        self.norm_out = nn.LayerNorm(dim)
        self.last_attention: Optional[Tensor] = None

    def forward(self, f4: Tensor, keep_attention: bool = False) -> Tensor:
        memory = f4.flatten(2).transpose(1, 2)
        if memory.shape[1] != self.memory_pos.shape[1]:
            raise ValueError(
                f"PRD expects {self.memory_pos.shape[1]} f4 tokens (source size / 32 squared), got {memory.shape[1]}"
            )
        x = self.queries.expand(f4.shape[0], -1, -1)
        weights = None
        for block in self.blocks:
            x, weights = block(x, self.query_pos, memory, self.memory_pos, need_weights=keep_attention)
        # Fig. 7: the last block's query-to-f4 attention (averaged over heads), for visualisation
        self.last_attention = weights.detach() if keep_attention and weights is not None else None
        return self.norm_out(x)


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

"""Hybrid-Granularity Attention H_A (seed 003, Sec. 3.2, Eq. 4; digest 002-003 A3 "HGA").

Eq. 4: ``Q = W_q F_h``, ``K = W_k F_d^out``, ``V = W_v F_d^out``, ``B = phi_A(f_l)`` and
``F_o = softmax((Q + B) K^T / sqrt(d)) V``: only the queries of the UNet's up-block
cross-attentions are biased by fine-grained appearance features of the source; keys and values
still come from the coarse prompt of the perception-refined decoder.

* :class:`AppearanceEncoder` is one ``phi_A``: a zero-initialised 1x1 conv (``c_l -> d``), ``K``
  diffusers ``BasicTransformerBlock`` with ``double_self_attention=True`` (two self-attentions
  and a GEGLU feed-forward), a zero-initialised 1x1 conv (``d -> c``). Its output is exactly 0
  at initialisation (the paper's coarse-to-fine curriculum). As in the authors' code there is
  one encoder per up-block transformer module (9 for SD-1.5), ``d = c_l / 2`` and
  ``d / 32`` heads ([R]; the paper writes "scales l in {1, 2, 3}", digest A11-4).
* :class:`QueryBiasAttnProcessor` is a diffusers attention processor for those
  cross-attentions that adds the bias right after ``to_q`` (on the already layer-normed hidden
  states, [R]). The biases of the current forward pass are read from a shared
  :class:`QueryBiasContext` by the processor's index; with no bias set it is plain attention.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from diffusers.models.attention import BasicTransformerBlock
from torch import Tensor, nn


class AppearanceEncoder(nn.Module):
    """``phi_A``: Swin level ``[B, c_in, h, w]`` -> query bias ``[B, h*w, c_out]`` (0 at init).

    Args:
        in_channels: channels of the Swin level (128/256/512 for Swin-B).
        out_channels: inner dim of the biased cross-attention (320/640/1280 for SD-1.5).
        num_layers: K transformer layers (4).
        dim: width of the transformer layers (default ``in_channels // 2``).
        head_dim: attention head width (32; ``dim / head_dim`` heads, at least 1).
    """

    def __init__(
        self, in_channels: int, out_channels: int, num_layers: int = 4, dim: Optional[int] = None, head_dim: int = 32
    ) -> None:
        super().__init__()
        dim = dim or max(in_channels // 2, 1)
        heads = max(dim // head_dim, 1)
        self.zero_in = nn.Conv2d(in_channels, dim, kernel_size=1)
        self.layers = nn.ModuleList(
            BasicTransformerBlock(dim, heads, dim // heads, double_self_attention=True) for _ in range(num_layers)
        )
        self.zero_out = nn.Conv2d(dim, out_channels, kernel_size=1)
        for conv in (self.zero_in, self.zero_out):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, features: Tensor) -> Tensor:
        x = self.zero_in(features)
        B, C, H, W = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        for layer in self.layers:
            tokens = layer(tokens)
        x = tokens.transpose(1, 2).reshape(B, C, H, W)
        return self.zero_out(x).flatten(2).transpose(1, 2)


class QueryBiasContext:
    """The query biases of the current UNet forward pass, by processor index (empty: no bias)."""

    def __init__(self) -> None:
        self.biases: dict[int, Tensor] = {}

    def set(self, biases: Optional[list[Optional[Tensor]]]) -> "QueryBiasContext":
        self.biases = {} if biases is None else {i: b for i, b in enumerate(biases) if b is not None}
        return self

    def __enter__(self) -> "QueryBiasContext":
        return self

    def __exit__(self, *exc: object) -> None:
        self.biases = {}


class QueryBiasAttnProcessor:
    """Cross-attention with a query bias: ``softmax((W_q h + B) (W_k c)^T / sqrt(d)) W_v c`` (Eq. 4).

    ``target='context'`` instead adds the bias to the cross-attention context before ``to_k`` /
    ``to_v`` (ablation B1 of Table 3: appearance features in the keys and values).
    Supports the attention layers of SD-1.x/2.x UNets (no spatial norm, no group norm before
    attention, no residual connection inside ``Attention``), which is what CFLD biases.
    """

    def __init__(self, context: QueryBiasContext, index: int, target: str = "query") -> None:
        if target not in ("query", "context"):
            raise ValueError(f"target must be 'query' or 'context', got {target!r}")
        self.context = context
        self.index = index
        self.target = target

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: Tensor,
        encoder_hidden_states: Optional[Tensor] = None,
        attention_mask: Optional[Tensor] = None,
        temb: Optional[Tensor] = None,
        *args: object,
        **kwargs: object,
    ) -> Tensor:
        if hidden_states.ndim != 3:
            raise ValueError("QueryBiasAttnProcessor expects [B, N, C] hidden states (SD transformer blocks)")
        B, N, _ = hidden_states.shape
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        query = attn.to_q(hidden_states)
        bias = self.context.biases.get(self.index)
        if bias is not None and self.target == "query":
            query = query + bias.to(query.dtype)
        elif bias is not None:
            context = context + bias.to(context.dtype)
        key, value = attn.to_k(context), attn.to_v(context)
        heads = attn.heads
        head_dim = query.shape[-1] // heads

        def split(x: Tensor) -> Tensor:
            return x.reshape(x.shape[0], -1, heads, head_dim).transpose(1, 2)

        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, context.shape[1], B)
            attention_mask = attention_mask.view(B, heads, -1, attention_mask.shape[-1])
        out = F.scaled_dot_product_attention(split(query), split(key), split(value), attn_mask=attention_mask)
        out = out.transpose(1, 2).reshape(B, N, heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        return out / attn.rescale_output_factor


def up_cross_attentions(unet: nn.Module) -> list[tuple[str, nn.Module, int, int]]:
    """The cross-attentions of the UNet's up blocks, in order: ``(name, attn, up_block_index, channels)``.

    Enumerated generically (digest C1: no hard-coded 3..11), so tiny and full UNets share one path.
    """
    found = []
    for i, block in enumerate(unet.up_blocks):
        for j, transformer in enumerate(getattr(block, "attentions", []) or []):
            for k, tblock in enumerate(getattr(transformer, "transformer_blocks", [])):
                attn = getattr(tblock, "attn2", None)
                if attn is None or not getattr(attn, "is_cross_attention", False):
                    continue
                found.append((f"up_blocks.{i}.attentions.{j}.transformer_blocks.{k}.attn2", attn, i, attn.inner_dim))
    return found


def install_query_bias(unet: nn.Module, context: QueryBiasContext, target: str = "query") -> list[tuple[str, nn.Module, int, int]]:
    """Give every up-block cross-attention a :class:`QueryBiasAttnProcessor`; return their list."""
    attentions = up_cross_attentions(unet)
    for index, (_, attn, _, _) in enumerate(attentions):
        attn.set_processor(QueryBiasAttnProcessor(context, index, target))
    return attentions


class StridedAppearanceEncoder(nn.Module):
    """Ablation B1 (Table 3, authors' ``ape.yaml``): Swin level -> strided conv to the f4 grid -> ``phi_A`` -> context bias.

    The strided conv (kernel = stride = 8/4/2 for f1/f2/f3 of Swin-B) brings every level to the 8x8
    f4 grid, so each up-block cross-attention gets a 64-token bias of the prompt width, added to
    the (zero) prompt before its key/value projections. Output is exactly 0 at initialisation.
    """

    def __init__(self, in_channels: int, context_dim: int, stride: int, num_layers: int = 4, head_dim: int = 32) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(in_channels, in_channels, kernel_size=stride, stride=stride) if stride > 1 else nn.Identity()
        self.encoder = AppearanceEncoder(in_channels, context_dim, num_layers=num_layers, head_dim=head_dim)

    def forward(self, features: Tensor) -> Tensor:
        return self.encoder(self.reduce(features))


def literal_biased_attention(attn: nn.Module, hidden: Tensor, context: Tensor, bias: Tensor) -> Tensor:
    """Eq. 4 written out with explicit softmax (for tests): per head ``softmax((Q+B)K^T/sqrt(d)) V``."""
    q = attn.to_q(hidden) + bias
    k, v = attn.to_k(context), attn.to_v(context)
    heads = attn.heads
    d = q.shape[-1] // heads
    q, k, v = (x.reshape(x.shape[0], -1, heads, d).transpose(1, 2) for x in (q, k, v))
    weights = torch.softmax(q @ k.transpose(-1, -2) / d**0.5, dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(hidden.shape[0], hidden.shape[1], heads * d)
    return attn.to_out[1](attn.to_out[0](out))

"""Parameter-free multi-reference attention as diffusers attention processors.

Thesis 000, Ch. 4, §4.3.2 "Multi-Reference Attention" (seed lines ~770-800; digest §3.2): for a
spatial self-attention layer whose input is ``x_{1:F}`` (``F`` frames of ``H x W`` tokens), frame
``i`` is concatenated along the width with two reference frames ``[x_i, x_a(i), x_b(i)]``
(``H x 3W``), the layer's own pretrained self-attention runs on the widened map and only the first
third along the width is kept. References: frame 1 is paired with ``[x_1, x_fr, x_fr]``, frame 2
with ``[x_2, x_bk, x_bk]``, every target frame with ``[x_i, x_fr, x_bk]``.

Two processors:

* :class:`MultiReferenceAttnProcessor`: the efficient, exactly equivalent form ([D], digest §3.2):
  queries from the frame's own ``H W`` tokens, keys / values from ``[own, ref_a, ref_b]``
  (``3 H W`` tokens). Keys and values are projected once per frame and gathered, so the extra
  cost is the 3x longer key axis of the attention product only.
* :class:`LiteralMultiReferenceAttnProcessor`: the paper's words, for tests: build the
  ``H x 3W`` map, run plain self-attention on all of it, crop the first ``W`` columns.

Both are parameter-free: they only read the wrapped ``Attention``'s ``to_q/to_k/to_v/to_out``.
Equivalence holds because SVD's spatial attention has no positional encoding and the block's
norm before ``attn1`` is token-wise (LayerNorm), so a width concatenation of normed inputs is
the normed width concatenation.

Frame bookkeeping lives in a shared :class:`ReferenceFrames` object the owner updates before each
network call (``num_frames``, reference indices, latent size for the literal form), because a
processor only sees ``[batch * frames, tokens, channels]``.

Generic (not Fit-Check specific): any video UNet whose spatial self-attention sees frames
flattened into the batch can use it (Animate-Anyone-style reference conditioning without a
ReferenceNet).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ReferenceFrames",
    "MultiReferenceAttnProcessor",
    "LiteralMultiReferenceAttnProcessor",
    "spatial_self_attention_names",
    "set_multi_reference_attention",
]

#: diffusers processor names of the spatial self-attention of ``UNetSpatioTemporalConditionModel``
#: (``...transformer_blocks.<i>.attn1.processor``; the temporal blocks are ``temporal_transformer_blocks``).
_SPATIAL_SELF = re.compile(r"(^|\.)transformer_blocks\.\d+\.attn1\.processor$")


@dataclass
class ReferenceFrames:
    """Which frames are references, shared by every processor of one network.

    Args:
        num_frames: frames per video in the current call (``batch * frames`` is split with it).
        references: ``(front, back)`` frame indices; ``(0, 1)`` with the frame-generation
            strategy, ``(0, 0)`` for the "Ours-FG" variant (first frame only).
        latent_size: ``(H, W)`` of the UNet input, for the literal processor's reshaping.
        enabled: ``False`` turns every processor into plain self-attention.
    """

    num_frames: int = 1
    references: tuple[int, int] = (0, 1)
    latent_size: Optional[tuple[int, int]] = None
    enabled: bool = True
    _index_cache: dict = field(default_factory=dict, repr=False)

    def pair_indices(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """``(a, b)`` with frame ``i`` attending to ``[i, a[i], b[i]]`` (the paper's self-pairings)."""
        key = (self.num_frames, tuple(self.references), device)
        cached = self._index_cache.get(key)
        if cached is not None:
            return cached
        front, back = self.references
        a = torch.full((self.num_frames,), front, dtype=torch.long)
        b = torch.full((self.num_frames,), back, dtype=torch.long)
        for ref in {front, back}:
            if ref < self.num_frames:
                a[ref] = ref  # a reference frame is paired with itself: [x_fr, x_fr, x_fr]
                b[ref] = ref
        pair = (a.to(device), b.to(device))
        self._index_cache[key] = pair
        return pair

    def token_grid(self, tokens: int) -> tuple[int, int]:
        """``(h, w)`` of a UNet level with ``tokens`` positions (stride-2 downsampling rounds up)."""
        if self.latent_size is None:
            raise ValueError("ReferenceFrames.latent_size is needed by the literal processor")
        h, w = self.latent_size
        while h * w > tokens:
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        if h * w != tokens:
            raise ValueError(f"cannot place {tokens} tokens on a level of a {self.latent_size} latent")
        return h, w


def _heads(x: Tensor, heads: int) -> Tensor:
    n, length, dim = x.shape
    return x.view(n, length, heads, dim // heads).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:
    n, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(n, length, heads * head_dim)


def _check_plain(attn: nn.Module) -> None:
    for name in ("spatial_norm", "group_norm", "norm_q", "norm_k"):
        if getattr(attn, name, None) is not None:
            raise NotImplementedError(f"multi-reference attention does not support Attention.{name}")


def _output(attn: nn.Module, hidden: Tensor, residual: Tensor) -> Tensor:
    hidden = attn.to_out[0](hidden)
    hidden = attn.to_out[1](hidden)
    if getattr(attn, "residual_connection", False):
        hidden = hidden + residual
    return hidden / getattr(attn, "rescale_output_factor", 1.0)


class MultiReferenceAttnProcessor:
    """Q from each frame's tokens, K/V from ``[frame, ref_a, ref_b]``: equal to the literal form."""

    def __init__(self, frames: ReferenceFrames) -> None:
        self.frames = frames

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: Tensor,
        encoder_hidden_states: Optional[Tensor] = None,
        attention_mask: Optional[Tensor] = None,
        temb: Optional[Tensor] = None,
        *args,
        **kwargs,
    ) -> Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("MultiReferenceAttnProcessor is for unmasked self-attention (attn1) only")
        _check_plain(attn)
        residual = hidden_states
        query = _heads(attn.to_q(hidden_states), attn.heads)
        key = _heads(attn.to_k(hidden_states), attn.heads)
        value = _heads(attn.to_v(hidden_states), attn.heads)
        if self.frames.enabled:
            frames = self.frames.num_frames
            nf, heads, tokens, head_dim = key.shape
            if nf % frames:
                raise ValueError(f"batch*frames={nf} is not a multiple of num_frames={frames}")
            a, b = self.frames.pair_indices(key.device)

            def widen(x: Tensor) -> Tensor:
                x = x.view(nf // frames, frames, heads, tokens, head_dim)
                return torch.cat([x, x[:, a], x[:, b]], dim=3).view(nf, heads, 3 * tokens, head_dim)

            key, value = widen(key), widen(value)
        hidden = F.scaled_dot_product_attention(query, key, value, scale=attn.scale)
        return _output(attn, _merge_heads(hidden).to(query.dtype), residual)


class LiteralMultiReferenceAttnProcessor:
    """The paper's wording: concatenate ``[x_i, x_a, x_b]`` in width, self-attend, keep the first third."""

    def __init__(self, frames: ReferenceFrames) -> None:
        self.frames = frames

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: Tensor,
        encoder_hidden_states: Optional[Tensor] = None,
        attention_mask: Optional[Tensor] = None,
        temb: Optional[Tensor] = None,
        *args,
        **kwargs,
    ) -> Tensor:
        _check_plain(attn)
        nf, tokens, channels = hidden_states.shape
        frames = self.frames.num_frames
        h, w = self.frames.token_grid(tokens)
        a, b = self.frames.pair_indices(hidden_states.device)
        grid = hidden_states.view(nf // frames, frames, h, w, channels)
        wide = torch.cat([grid, grid[:, a], grid[:, b]], dim=3)  # [B, F, h, 3w, C]: width concatenation
        wide = wide.reshape(nf, h * 3 * w, channels)
        query = _heads(attn.to_q(wide), attn.heads)
        key = _heads(attn.to_k(wide), attn.heads)
        value = _heads(attn.to_v(wide), attn.heads)
        out = _merge_heads(F.scaled_dot_product_attention(query, key, value, scale=attn.scale))
        out = _output(attn, out, wide)
        return out.view(nf, h, 3 * w, -1)[:, :, :w].reshape(nf, tokens, -1)  # the first third


def spatial_self_attention_names(network: nn.Module) -> list[str]:
    """Processor names of the spatial self-attention layers (``attn1`` outside temporal blocks)."""
    return [name for name in network.attn_processors if _SPATIAL_SELF.search(name)]


def set_multi_reference_attention(
    network: nn.Module, frames: ReferenceFrames, literal: bool = False, names: Optional[Sequence[str]] = None
) -> list[str]:
    """Install (literal or efficient) multi-reference processors on the spatial self-attention layers.

    Other layers keep their processors. Returns the names that were replaced.
    """
    names = list(names) if names is not None else spatial_self_attention_names(network)
    if not names:
        raise ValueError(f"{type(network).__name__} has no spatial self-attention layers to replace")
    cls = LiteralMultiReferenceAttnProcessor if literal else MultiReferenceAttnProcessor
    processors = dict(network.attn_processors)
    for name in names:
        processors[name] = cls(frames)
    network.set_attn_processor(processors)
    return names

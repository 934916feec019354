"""ReferenceNet attention (Animate Anyone style) as diffusers attention processors.

Thesis 000, Ch. 6, §6.2 (digest "One-stage renderer"): a ReferenceNet ``g_r`` (a copy of the SD
UNet) reads the reference image's latent and *writes* the input of every self-attention layer
(``attn1``); the denoiser's matching self-attention *reads* it and concatenates it along the token
axis with its own tokens as extra keys / values:

    Attn(x; r) = softmax(Q(x) [K(x), K(r)]^T / sqrt(d)) [V(x), V(r)]

Two reading processors:

* :class:`ReferenceReadAttnProcessor`: the efficient form above (queries only from ``x``).
* :class:`LiteralReferenceReadAttnProcessor`: the literal wording, for tests: concatenate ``[x, r]``
  along tokens, run plain self-attention on all ``N + M`` tokens, keep the first ``N`` outputs.
  Identical to the efficient form because self-attention is token-wise in its queries and
  SD's ``attn1`` has no positional encoding.

The two networks share a :class:`ReferenceBank` keyed by processor name (the ReferenceNet is a
copy of the denoiser, so names match). When the denoiser's batch is a multiple of the bank's batch
(classifier-free guidance stacks passes as ``cat([x] * P)``), the reference is tiled to match, so
one ReferenceNet pass serves every guidance pass.

Generic (written for Inverse Painting, usable by any ReferenceNet method: Animate Anyone,
MagicAnimate-like appearance encoders). Parameter-free: the processors only use the wrapped
``Attention``'s ``to_q/to_k/to_v/to_out``.
"""
from __future__ import annotations

import re
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ReferenceBank",
    "ReferenceWriteAttnProcessor",
    "ReferenceReadAttnProcessor",
    "LiteralReferenceReadAttnProcessor",
    "self_attention_names",
    "install_reference_attention",
]

_SELF_ATTENTION = re.compile(r"(^|\.)attn1\.processor$")


class ReferenceBank:
    """Reference features written by the ReferenceNet, read by the denoiser.

    ``mode`` is ``"write"`` while the ReferenceNet runs, ``"read"`` while the denoiser runs and
    ``"off"`` to make every processor plain self-attention (the "no ReferenceNet" ablation, or
    the ReferenceNet's own processors outside a write).
    """

    def __init__(self) -> None:
        self.features: dict[str, Tensor] = {}
        self.mode = "off"

    def clear(self) -> None:
        self.features.clear()
        self.mode = "off"

    def reference_for(self, name: str, batch: int) -> Optional[Tensor]:
        ref = self.features.get(name)
        if ref is None or self.mode != "read":
            return None
        if ref.shape[0] == batch:
            return ref
        if batch % ref.shape[0]:
            raise ValueError(f"reference batch {ref.shape[0]} does not divide the denoiser batch {batch} at {name}")
        return ref.repeat(batch // ref.shape[0], *([1] * (ref.ndim - 1)))


def _split_heads(x: Tensor, heads: int) -> Tensor:
    n, length, dim = x.shape
    return x.view(n, length, heads, dim // heads).transpose(1, 2)


def _join_heads(x: Tensor) -> Tensor:
    n, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(n, length, heads * head_dim)


def _project_out(attn: nn.Module, hidden: Tensor, residual: Tensor) -> Tensor:
    hidden = attn.to_out[1](attn.to_out[0](hidden))
    if getattr(attn, "residual_connection", False):
        hidden = hidden + residual
    return hidden / getattr(attn, "rescale_output_factor", 1.0)


def _check(attn: nn.Module, hidden_states: Tensor, encoder_hidden_states: Optional[Tensor], attention_mask: Optional[Tensor]) -> None:
    if encoder_hidden_states is not None or attention_mask is not None:
        raise ValueError("reference attention processors are for unmasked self-attention (attn1) only")
    if hidden_states.ndim != 3:
        raise ValueError(f"expected tokens [B, N, C], got {tuple(hidden_states.shape)}")
    for name in ("spatial_norm", "group_norm", "norm_q", "norm_k"):
        if getattr(attn, name, None) is not None:
            raise NotImplementedError(f"reference attention does not support Attention.{name}")


def _attend(attn: nn.Module, queries_from: Tensor, keys_from: Tensor) -> Tensor:
    query = _split_heads(attn.to_q(queries_from), attn.heads)
    key = _split_heads(attn.to_k(keys_from), attn.heads)
    value = _split_heads(attn.to_v(keys_from), attn.heads)
    out = F.scaled_dot_product_attention(query, key, value, scale=attn.scale)
    return _join_heads(out).to(queries_from.dtype)


class ReferenceWriteAttnProcessor:
    """ReferenceNet side: store the self-attention input under ``name``, then plain self-attention."""

    def __init__(self, bank: ReferenceBank, name: str) -> None:
        self.bank, self.name = bank, name

    def __call__(self, attn: nn.Module, hidden_states: Tensor, encoder_hidden_states: Optional[Tensor] = None,
                 attention_mask: Optional[Tensor] = None, temb: Optional[Tensor] = None, *args, **kwargs) -> Tensor:
        _check(attn, hidden_states, encoder_hidden_states, attention_mask)
        if self.bank.mode == "write":
            self.bank.features[self.name] = hidden_states
        return _project_out(attn, _attend(attn, hidden_states, hidden_states), hidden_states)


class ReferenceReadAttnProcessor:
    """Denoiser side: queries from ``x``, keys / values from ``[x, r]`` (token concatenation)."""

    def __init__(self, bank: ReferenceBank, name: str) -> None:
        self.bank, self.name = bank, name

    def __call__(self, attn: nn.Module, hidden_states: Tensor, encoder_hidden_states: Optional[Tensor] = None,
                 attention_mask: Optional[Tensor] = None, temb: Optional[Tensor] = None, *args, **kwargs) -> Tensor:
        _check(attn, hidden_states, encoder_hidden_states, attention_mask)
        ref = self.bank.reference_for(self.name, hidden_states.shape[0])
        keys_from = hidden_states if ref is None else torch.cat([hidden_states, ref.to(hidden_states.dtype)], dim=1)
        return _project_out(attn, _attend(attn, hidden_states, keys_from), hidden_states)


class LiteralReferenceReadAttnProcessor(ReferenceReadAttnProcessor):
    """The literal definition: self-attention over ``[x, r]`` (``N + M`` tokens), keep the first ``N``."""

    def __call__(self, attn: nn.Module, hidden_states: Tensor, encoder_hidden_states: Optional[Tensor] = None,
                 attention_mask: Optional[Tensor] = None, temb: Optional[Tensor] = None, *args, **kwargs) -> Tensor:
        _check(attn, hidden_states, encoder_hidden_states, attention_mask)
        ref = self.bank.reference_for(self.name, hidden_states.shape[0])
        tokens = hidden_states.shape[1]
        joint = hidden_states if ref is None else torch.cat([hidden_states, ref.to(hidden_states.dtype)], dim=1)
        out = _project_out(attn, _attend(attn, joint, joint), joint)
        return out[:, :tokens]


def self_attention_names(network: nn.Module) -> list[str]:
    """Processor names of every self-attention (``attn1``) of a diffusers UNet."""
    return [name for name in network.attn_processors if _SELF_ATTENTION.search(name)]


def install_reference_attention(
    reference_net: Optional[nn.Module],
    denoiser: nn.Module,
    bank: ReferenceBank,
    literal: bool = False,
    names: Optional[Sequence[str]] = None,
) -> list[str]:
    """Put write processors on ``reference_net`` and read processors on ``denoiser`` (same names).

    ``reference_net=None`` installs only the readers (e.g. features written by other means).
    Returns the names that were replaced; other processors are kept.
    """
    names = list(names) if names is not None else self_attention_names(denoiser)
    if not names:
        raise ValueError(f"{type(denoiser).__name__} has no self-attention layers (attn1)")
    reader = LiteralReferenceReadAttnProcessor if literal else ReferenceReadAttnProcessor
    processors = dict(denoiser.attn_processors)
    for name in names:
        processors[name] = reader(bank, name)
    denoiser.set_attn_processor(processors)
    if reference_net is not None:
        ref_processors = dict(reference_net.attn_processors)
        missing = [name for name in names if name not in ref_processors]
        if missing:
            raise ValueError(f"the reference network lacks self-attention layers {missing[:3]} of the denoiser")
        for name in names:
            ref_processors[name] = ReferenceWriteAttnProcessor(bank, name)
        reference_net.set_attn_processor(ref_processors)
    return names

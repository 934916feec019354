"""LightningDiT (Yao et al. 2025), the class-conditional diffusion transformer of thesis 000, Ch. 7 §7.4.

A DiT (Peebles & Xie 2023) with adaLN-Zero conditioning, where LightningDiT's changes are:
SwiGLU feed-forward, RMSNorm, 2-D rotary position embedding (RoPE) on queries and keys, and
optional QKNorm (RMSNorm on q and k; the thesis switches it on only for runs of 200K+ steps).
The thesis uses patch size 1 on the f16d32 latent (16x16x32 for 256 px) and XL size
(hidden 1152, depth 28, 16 heads: ~673M parameters, checked on the meta device).

Time input: the network is trained in the paper's (SD3) convention ``z_s = (1 - s) x + s eps``
(s = 1 noise) and predicts ``u = eps - x``; ``forward(x, s, class_labels)`` takes that ``s``.
The module wraps it for the Ch. 2 core with ``diffusion.SD3DirectionAdapter`` semantics.

Choices of this implementation (the thesis defers to the official LightningDiT config) [ext]:
SwiGLU hidden ``int(2/3 * mlp_ratio * hidden)``; fixed 2-D sin-cos absolute position embedding
in addition to RoPE (as LightningDiT); RoPE splits each head's channels in two halves rotated
by the row and the column index (theta 10000); the timestep embedding is DiT's (256 sinusoidal
frequencies, scaled by 1000 so that s in [0, 1] spans the usual range); the label table has
``num_classes + 1`` rows, the last one the null class of classifier-free guidance.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Sizes of the LightningDiT family (hidden, depth, heads).
DIT_SIZES: dict[str, tuple[int, int, int]] = {
    "S": (384, 12, 6),
    "B": (768, 12, 12),
    "L": (1024, 24, 16),
    "XL": (1152, 28, 16),
}


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def rope_2d_angles(height: int, width: int, head_dim: int, theta: float = 10000.0, device=None) -> Tensor:
    """Angles ``[H*W, head_dim / 2]``: the first half of the pairs follow the row, the second the column."""
    if head_dim % 4:
        raise ValueError(f"2-D RoPE needs head_dim divisible by 4, got {head_dim}")
    quarter = head_dim // 4
    freqs = 1.0 / (theta ** (torch.arange(quarter, dtype=torch.float32, device=device) / quarter))
    rows = torch.arange(height, dtype=torch.float32, device=device)
    cols = torch.arange(width, dtype=torch.float32, device=device)
    grid_r, grid_c = torch.meshgrid(rows, cols, indexing="ij")
    angle_r = grid_r.reshape(-1, 1) * freqs
    angle_c = grid_c.reshape(-1, 1) * freqs
    return torch.cat([angle_r, angle_c], dim=-1)


def apply_rope(x: Tensor, angles: Tensor) -> Tensor:
    """Rotate consecutive channel pairs of ``x [B, heads, N, head_dim]`` by ``angles [N, head_dim/2]``."""
    x_pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    cos, sin = angles.cos(), angles.sin()
    a, b = x_pairs[..., 0], x_pairs[..., 1]
    rotated = torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1)
    return rotated.flatten(-2).to(x.dtype)


def sincos_2d(embed_dim: int, height: int, width: int) -> Tensor:
    """Fixed 2-D sin-cos position embedding ``[H*W, embed_dim]`` (MAE / DiT)."""
    quarter = embed_dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij")
    parts = []
    for pos in (rows.reshape(-1), cols.reshape(-1)):
        out = pos[:, None] * omega[None]
        parts += [out.sin(), out.cos()]
    emb = torch.cat(parts, dim=1)
    if emb.shape[1] < embed_dim:
        emb = F.pad(emb, (0, embed_dim - emb.shape[1]))
    return emb.float()


class TimestepEmbedder(nn.Module):
    """Sinusoidal features of ``1000 * s`` followed by an MLP (DiT)."""

    def __init__(self, hidden: int, frequency_size: int = 256) -> None:
        super().__init__()
        self.frequency_size = frequency_size
        self.mlp = nn.Sequential(nn.Linear(frequency_size, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, s: Tensor) -> Tensor:
        half = self.frequency_size // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=s.device) / half)
        args = (s.float() * 1000.0)[:, None] * freqs[None]
        features = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        gate, value = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(gate) * value)


class RoPEAttention(nn.Module):
    """Multi-head self-attention with 2-D RoPE on q and k and optional QKNorm (RMSNorm per head)."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.RMSNorm(self.head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(self.head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, angles: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, angles), apply_rope(k, angles)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class LightningDiTBlock(nn.Module):
    """``x += gate_a * Attn(mod(RMSNorm(x)))``, ``x += gate_m * SwiGLU(mod(RMSNorm(x)))``; adaLN-Zero."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qk_norm: bool = False) -> None:
        super().__init__()
        self.norm1 = nn.RMSNorm(dim, eps=1e-6, elementwise_affine=False)
        self.attn = RoPEAttention(dim, num_heads, qk_norm)
        self.norm2 = nn.RMSNorm(dim, eps=1e-6, elementwise_affine=False)
        self.mlp = SwiGLU(dim, int(2 / 3 * mlp_ratio * dim))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.adaLN_modulation[1].weight)
        nn.init.zeros_(self.adaLN_modulation[1].bias)

    def forward(self, x: Tensor, c: Tensor, angles: Tensor) -> Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + gate_a.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_a, scale_a), angles)
        x = x + gate_m.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_m, scale_m))
        return x


class LightningDiT(nn.Module):
    """Class-conditional LightningDiT: ``forward(x [B, C, H, W], s [B], class_labels [B]) -> u [B, C, H, W]``.

    Args:
        in_channels: latent channels (32 for f16d32).
        input_size: latent side (16 for 256 px with f16); only used for ``sample_size`` and the
            position tables' default size (other sizes are computed on the fly).
        patch_size: 1 in the thesis.
        hidden_size, depth, num_heads: 1152 / 28 / 16 for XL; or set ``size``.
        size: ``"S"``, ``"B"``, ``"L"``, ``"XL"`` (overrides hidden/depth/heads when given).
        mlp_ratio: SwiGLU width ratio before the 2/3 factor.
        num_classes: classes; the label table has one more row for the null class.
        qk_norm: QKNorm on (thesis: for 200K+ step runs).
        rope_theta: RoPE base.
    """

    def __init__(
        self,
        in_channels: int = 32,
        input_size: int = 16,
        patch_size: int = 1,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        size: Optional[str] = None,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        qk_norm: bool = False,
        rope_theta: float = 10000.0,
    ) -> None:
        super().__init__()
        if size is not None:
            if size not in DIT_SIZES:
                raise ValueError(f"size must be one of {list(DIT_SIZES)}, got {size!r}")
            hidden_size, depth, num_heads = DIT_SIZES[size]
        self.in_channels, self.patch_size, self.hidden_size = in_channels, patch_size, hidden_size
        self.num_heads, self.num_classes, self.rope_theta = num_heads, num_classes, rope_theta
        self.sample_size = input_size
        self.x_embedder = nn.Conv2d(in_channels, hidden_size, patch_size, patch_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = nn.Embedding(num_classes + 1, hidden_size)
        self.blocks = nn.ModuleList(LightningDiTBlock(hidden_size, num_heads, mlp_ratio, qk_norm) for _ in range(depth))
        self.final_norm = nn.RMSNorm(hidden_size, eps=1e-6, elementwise_affine=False)
        self.final_adaLN = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
        self.final_linear = nn.Linear(hidden_size, patch_size * patch_size * in_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        w = self.x_embedder.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.bias)
        nn.init.normal_(self.y_embedder.weight, std=0.02)
        for layer in self.t_embedder.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=0.02)
        for block in self.blocks:  # adaLN-Zero: every residual branch starts closed
            nn.init.zeros_(block.adaLN_modulation[1].weight)
            nn.init.zeros_(block.adaLN_modulation[1].bias)
        for layer in (self.final_adaLN[1], self.final_linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, s: Tensor, class_labels: Optional[Tensor] = None) -> Tensor:
        b, _, height, width = x.shape
        p = self.patch_size
        gh, gw = height // p, width // p
        tokens = self.x_embedder(x).flatten(2).transpose(1, 2)
        tokens = tokens + sincos_2d(self.hidden_size, gh, gw).to(tokens)
        if s.dim() == 0:
            s = s.expand(b)
        if class_labels is None:
            class_labels = torch.full((b,), self.num_classes, dtype=torch.long, device=x.device)
        c = self.t_embedder(s) + self.y_embedder(class_labels)
        angles = rope_2d_angles(gh, gw, self.hidden_size // self.num_heads, self.rope_theta, x.device)
        for block in self.blocks:
            tokens = block(tokens, c, angles)
        shift, scale = self.final_adaLN(c).chunk(2, dim=-1)
        out = self.final_linear(modulate(self.final_norm(tokens), shift, scale))
        out = out.reshape(b, gh, gw, p, p, self.in_channels).permute(0, 5, 1, 3, 2, 4)
        return out.reshape(b, self.in_channels, gh * p, gw * p)

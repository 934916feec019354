"""The ADM ("guided-diffusion", Dhariwal & Nichol 2021) UNet, shared by LFG-Diffusion, Bi-Noising and VIDM.

Thesis 001 Ch. 7 §7.3.2 / Fig. 7.5 builds its diffusion network and its latent feature encoder
from this architecture; Ch. 8 (Bi-Noising) samples from pretrained ADM checkpoints. The module
and parameter names follow guided-diffusion's ``UNetModel`` (``time_embed``, ``input_blocks``,
``middle_block``, ``output_blocks``, ``out``; ``in_layers`` / ``emb_layers`` / ``out_layers`` /
``skip_connection`` in a ResBlock, ``norm`` / ``qkv`` / ``proj_out`` in an attention block), so an
ADM checkpoint's state dict loads with ``load_state_dict(strict=True)`` (:func:`load_adm_weights`).

What the constructor covers:

* ``use_scale_shift_norm``: the timestep embedding enters each ResBlock as FiLM,
  ``GN(h) * (1 + scale) + shift`` (``False``: added to the features before the second conv);
* ``resblock_updown``: down/upsampling with a ResBlock whose inner resampling is average
  pooling / nearest upsampling (``False``: strided conv / nearest + conv);
* attention after each ResBlock at the downsample rates in ``attention_ds`` (1 = full
  resolution, 2 = half, ...), with ``num_head_channels`` channels per head (or ``num_heads``
  heads), QKV split before the heads ("new order", ``use_new_attention_order=True``) or after
  (the legacy order of the original checkpoints);
* ``learn_sigma``: doubles the output channels (epsilon and the variance interpolation ``v``);
* ``use_timestep_embedding=False``: no time MLP and no ``emb_layers`` in any ResBlock (the
  LFG latent feature encoder, "the same network architecture ... with the exception of a
  timestep embedding", §7.3.2); ``forward(x)`` then takes no timestep;
* ``num_classes``: ADM's class-conditional ``label_emb`` (``forward(x, t, y=labels)``);
* ``extra_embedding``: an ``[B, 4 * model_channels]`` tensor added to the timestep embedding
  before it reaches the blocks (``forward(x, t, extra_embedding=...)``); LFG's dense latent
  variable fusion (§7.3.3) plugs in here;
* ``block_modulation``: a factory ``channels -> module`` giving every ResBlock a per-pixel
  modulation ``m(h) -> [B, 2C, H, W]`` (scale, shift) applied as ``GN(h) * (1 + scale) + shift``
  before the block's last conv, in place of the timestep embedding (``use_timestep_embedding=False``;
  VIDM's PosGN, thesis 001 Ch. 3 §3.3.1); ``None`` (default): none,
  the state dict and outputs are unchanged.

Why not diffusers' ``UNet2DModel``: it expresses the *time-embedded* network exactly, but not the
rest of what this component must do. With ``resnet_time_scale_shift='scale_shift'``,
``downsample_type='resnet'`` / ``upsample_type='resnet'`` (``ResnetDownsampleBlock2D`` /
``ResnetUpsampleBlock2D`` at levels without attention, ``Attn*Block2D`` at the others),
``attention_head_dim=64`` and ``attn_norm_num_groups=32`` (without it the mid-block attention has no
GroupNorm under scale-shift norm) it computes the same function with the same parameter count under
a renaming of the weights (``tests/test_lfg_shadow_model.py`` checks the count at the LFG size and
the outputs of a small model). But (1) it cannot build the encoder variant: every ``ResnetBlock2D``
owns a ``time_emb_proj`` and the model a ``time_embedding`` MLP, so "without the timestep
embedding" would leave unused parameters (a different count from the thesis's network) and still
need a timestep; (2) its key names differ from ADM checkpoints, which Bi-Noising loads directly;
(3) the extra embedding would have to travel as ``class_labels`` with ``class_embed_type='identity'``.
So the network is written here once, with the ADM layout.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def timestep_embedding(timesteps: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """ADM's sinusoidal embedding ``[cos(t f), sin(t f)]`` with ``f = max_period^(-i / half)`` (float32)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 (ADM's ``normalization``: 32 groups)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float()).type(x.dtype)


def normalization(channels: int, groups: int = 32) -> GroupNorm32:
    if channels % groups:
        raise ValueError(f"GroupNorm: {channels} channels are not divisible by norm_num_groups={groups}")
    return GroupNorm32(groups, channels)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero a module's parameters (ADM zero-initialises every residual branch's last layer)."""
    for p in module.parameters():
        p.detach().zero_()
    return module


class Upsample(nn.Module):
    """Nearest 2x upsampling, optionally followed by a 3x3 conv."""

    def __init__(self, channels: int, use_conv: bool, out_channels: Optional[int] = None) -> None:
        super().__init__()
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, out_channels or channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """2x downsampling by a strided 3x3 conv (``use_conv``) or 2x2 average pooling."""

    def __init__(self, channels: int, use_conv: bool, out_channels: Optional[int] = None) -> None:
        super().__init__()
        self.use_conv = use_conv
        if use_conv:
            self.op = nn.Conv2d(channels, out_channels or channels, 3, stride=2, padding=1)
        else:
            self.op = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    """ADM residual block; ``emb_channels=None`` builds it without any embedding input."""

    def __init__(
        self,
        channels: int,
        emb_channels: Optional[int],
        dropout: float,
        out_channels: Optional[int] = None,
        use_scale_shift_norm: bool = False,
        up: bool = False,
        down: bool = False,
        groups: int = 32,
    ) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(normalization(channels, groups), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = None
        if emb_channels is not None:
            self.emb_layers = nn.Sequential(
                nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
            )
        self.out_layers = nn.Sequential(
            normalization(out_channels, groups), nn.SiLU(), nn.Dropout(p=dropout),
            zero_module(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        self.modulation: Optional[nn.Module] = None  # per-pixel (scale, shift) of ADMUNet(block_modulation=...)

    def forward(self, x: Tensor, emb: Optional[Tensor] = None) -> Tensor:
        if self.updown:
            h = self.in_layers[:-1](x)
            h = self.in_layers[-1](self.h_upd(h))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        if self.modulation is not None:  # PosGN-style: per-pixel scale/shift from the block's own module
            scale, shift = self.modulation(h).type(h.dtype).chunk(2, dim=1)
            h = self.out_layers[1:](self.out_layers[0](h) * (1 + scale) + shift)
        elif self.emb_layers is None:
            h = self.out_layers(h)
        else:
            emb_out = self.emb_layers(emb).type(h.dtype)[..., None, None]
            if self.use_scale_shift_norm:
                norm, rest = self.out_layers[0], self.out_layers[1:]
                scale, shift = emb_out.chunk(2, dim=1)
                h = rest(norm(h) * (1 + scale) + shift)
            else:
                h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Spatial self-attention with a residual connection (ADM ``AttentionBlock``)."""

    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1,
                 use_new_attention_order: bool = False, groups: int = 32) -> None:
        super().__init__()
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise ValueError(f"channels {channels} are not divisible by num_head_channels {num_head_channels}")
            self.num_heads = channels // num_head_channels
        self.new_order = use_new_attention_order
        self.norm = normalization(channels, groups)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, *spatial = x.shape
        qkv = self.qkv(self.norm(x).reshape(b, c, -1))  # [B, 3C, L]
        heads, length = self.num_heads, qkv.shape[-1]
        if self.new_order:  # split q, k, v first, then heads
            q, k, v = (z.reshape(b * heads, c // heads, length) for z in qkv.chunk(3, dim=1))
        else:  # legacy: heads first, then q, k, v
            q, k, v = qkv.reshape(b * heads, 3 * c // heads, length).chunk(3, dim=1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        h = out.transpose(1, 2).reshape(b, c, length)
        return (x.reshape(b, c, -1) + self.proj_out(h)).reshape(b, c, *spatial)


class EmbedSequential(nn.Sequential):
    """A sequence of layers; ResBlocks receive the embedding."""

    def forward(self, x: Tensor, emb: Optional[Tensor] = None) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class ADMUNet(nn.Module):
    """The guided-diffusion UNet (module docstring).

    Args:
        in_channels / out_channels: image channels in and out (``out_channels`` is doubled by
            ``learn_sigma``).
        model_channels: base width; level ``i`` has ``channel_mult[i] * model_channels``.
        num_res_blocks: ResBlocks per level on the way down (one more on the way up).
        attention_ds: downsample rates with attention (ADM's ``attention_resolutions`` after
            ``image_size // resolution``); e.g. (8, 16, 32) at 256 px = 32, 16, 8 px.
        channel_mult: width multipliers per level (one 2x resampling between levels).
        dropout: dropout inside the ResBlocks.
        num_heads / num_head_channels: attention heads, or channels per head (wins when not -1).
        use_scale_shift_norm, resblock_updown, use_new_attention_order: as in ADM.
        learn_sigma: output ``2 * out_channels`` (epsilon, variance interpolation).
        use_timestep_embedding: ``False`` drops the time MLP and every ResBlock's embedding layer.
        conv_resample: resample with convolutions when ``resblock_updown`` is off.
        norm_num_groups: GroupNorm groups (32 in ADM; smaller for the CPU-sized stand-ins).
        num_classes: class-conditional ADM (``label_emb``, added to the timestep embedding); ``None``: none.
        use_fp16: accepted for config compatibility; precision is the Trainer's choice here.
        block_modulation: optional factory ``out_channels -> module`` for every ResBlock's per-pixel
            (scale, shift) (module docstring; VIDM's PosGN).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        model_channels: int = 128,
        num_res_blocks: int = 2,
        attention_ds: Sequence[int] = (8, 16, 32),
        channel_mult: Sequence[int] = (1, 1, 2, 2, 4, 4),
        dropout: float = 0.0,
        num_heads: int = 1,
        num_head_channels: int = 64,
        use_scale_shift_norm: bool = True,
        resblock_updown: bool = True,
        use_new_attention_order: bool = False,
        learn_sigma: bool = False,
        use_timestep_embedding: bool = True,
        conv_resample: bool = True,
        norm_num_groups: int = 32,
        num_classes: Optional[int] = None,
        use_fp16: bool = False,
        block_modulation: Optional[Callable[[int], nn.Module]] = None,
    ) -> None:
        super().__init__()
        if num_res_blocks < 1 or model_channels < 1 or not channel_mult:
            raise ValueError("num_res_blocks and model_channels must be >= 1 and channel_mult non-empty")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels) * (2 if learn_sigma else 1)
        self.model_channels = int(model_channels)
        self.learn_sigma = bool(learn_sigma)
        self.use_timestep_embedding = bool(use_timestep_embedding)
        self.num_levels = len(channel_mult)
        attention_ds = tuple(int(d) for d in attention_ds)
        emb_dim = 4 * model_channels
        self.embedding_dim = emb_dim if use_timestep_embedding else None
        self.time_embed = (
            nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
            if use_timestep_embedding else None
        )
        if num_classes is not None and not use_timestep_embedding:
            raise ValueError("num_classes needs the timestep embedding (use_timestep_embedding=True)")
        if block_modulation is not None and use_timestep_embedding:
            raise ValueError("block_modulation replaces the timestep embedding: build with use_timestep_embedding=False")
        self.num_classes = num_classes
        self.label_emb = nn.Embedding(num_classes, emb_dim) if num_classes is not None else None
        emb_ch = self.embedding_dim

        def res(ch: int, out: int, **kw: bool) -> ResBlock:
            block = ResBlock(ch, emb_ch, dropout, out, use_scale_shift_norm, groups=norm_num_groups, **kw)
            if block_modulation is not None:
                block.modulation = block_modulation(out)
            return block

        def attn(ch: int) -> AttentionBlock:
            return AttentionBlock(ch, num_heads, num_head_channels, use_new_attention_order, norm_num_groups)

        ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        skip_chans, ds = [ch], 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res(ch, int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in attention_ds:
                    layers.append(attn(ch))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_chans.append(ch)
            if level != len(channel_mult) - 1:
                down = res(ch, ch, down=True) if resblock_updown else Downsample(ch, conv_resample)
                self.input_blocks.append(EmbedSequential(down))
                skip_chans.append(ch)
                ds *= 2
        self.middle_block = EmbedSequential(res(ch, ch), attn(ch), res(ch, ch))
        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                skip = skip_chans.pop()
                layers = [res(ch + skip, int(model_channels * mult))]
                ch = int(model_channels * mult)
                if ds in attention_ds:
                    layers.append(attn(ch))
                if level and i == num_res_blocks:
                    layers.append(res(ch, ch, up=True) if resblock_updown else Upsample(ch, conv_resample))
                    ds //= 2
                self.output_blocks.append(EmbedSequential(*layers))
        self.out = nn.Sequential(normalization(ch, norm_num_groups), nn.SiLU(), zero_module(nn.Conv2d(ch, self.out_channels, 3, padding=1)))

    @property
    def downsample_factor(self) -> int:
        """Inputs must have sides divisible by this (``2 ** (levels - 1)``)."""
        return 2 ** (self.num_levels - 1)

    def embedding(self, timesteps: Optional[Tensor], batch: int, extra_embedding: Optional[Tensor] = None,
                  y: Optional[Tensor] = None) -> Optional[Tensor]:
        """``time_embed(sinusoid(t)) [+ label_emb(y)] + extra_embedding`` (``None`` for the no-timestep variant)."""
        if self.time_embed is None:
            if timesteps is not None or extra_embedding is not None:
                raise ValueError("this ADMUNet has no timestep embedding (use_timestep_embedding=False): "
                                 "call it without timesteps and extra_embedding")
            return None
        if timesteps is None:
            raise ValueError("this ADMUNet needs timesteps (use_timestep_embedding=True)")
        t = torch.as_tensor(timesteps)
        if t.ndim == 0:
            t = t.expand(batch)
        emb = self.time_embed(timestep_embedding(t, self.model_channels).to(self.time_embed[0].weight.dtype))
        if (y is None) != (self.label_emb is None):
            raise ValueError("class labels y must be given exactly when the ADMUNet has num_classes")
        if y is not None:
            emb = emb + self.label_emb(y)
        if extra_embedding is not None:
            if tuple(extra_embedding.shape) != tuple(emb.shape):
                raise ValueError(f"extra_embedding must have shape {tuple(emb.shape)}, got {tuple(extra_embedding.shape)}")
            emb = emb + extra_embedding.to(emb.dtype)
        return emb

    def forward(self, x: Tensor, timesteps: Optional[Tensor] = None, extra_embedding: Optional[Tensor] = None,
                y: Optional[Tensor] = None) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ADMUNet expects [B, {self.in_channels}, H, W], got {tuple(x.shape)}")
        f = self.downsample_factor
        if x.shape[-1] % f or x.shape[-2] % f:
            raise ValueError(f"ADMUNet with {self.num_levels} levels needs H and W divisible by {f}, got {tuple(x.shape[-2:])}")
        emb = self.embedding(timesteps, x.shape[0], extra_embedding, y)
        hs, h = [], x
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)


def attention_ds_from_resolutions(image_size: int, resolutions: Sequence[int]) -> tuple[int, ...]:
    """ADM's ``attention_resolutions`` (e.g. "32,16,8" at 256 px) -> the downsample rates ``ADMUNet`` takes."""
    bad = [r for r in resolutions if image_size % int(r)]
    if bad:
        raise ValueError(f"attention resolutions {bad} do not divide image_size {image_size}")
    return tuple(image_size // int(r) for r in resolutions)


#: guided-diffusion checkpoints are bare ``UNetModel`` state dicts; the suite's own exports and
#: DataParallel / Lightning wrappers add these prefixes, which are stripped.
ADM_KEY_MAP_PREFIXES = ("module.", "network.", "model.", "ema_model.")


def load_adm_weights(network: ADMUNet, path: str | Path, key: str = "model.init_args.released_checkpoint",
                     hint: str = "") -> ADMUNet:
    """Load a guided-diffusion checkpoint (``.pt`` state dict or ``.safetensors``) into ``network``, strictly.

    ADM checkpoints come from github.com/openai/guided-diffusion (e.g. ``256x256_diffusion_uncond.pt``);
    the key names are this module's own, so the map only strips wrapper prefixes. Reading,
    checking and loading go through :mod:`lightning_modules.components.released_weights`: a
    mismatch is one :class:`~lightning_modules.components.released_weights.ReleasedWeightsError`
    naming the missing / unexpected / other-shape keys instead of leaving layers uninitialised.
    """
    from lightning_modules.components.released_weights import KeyMap, import_released

    if not Path(path).expanduser().is_file():
        raise FileNotFoundError(f"{key}={str(path)!r} does not exist (an openai/guided-diffusion state dict)")
    import_released(network, path, KeyMap(strip_prefixes=ADM_KEY_MAP_PREFIXES), what="guided-diffusion ADM UNet",
                    key=key, hint=hint or "Check image_size / channel_mult / attention_resolutions / num_res_blocks / "
                    "num_channels / learn_sigma / class_cond against the checkpoint's flags.")
    return network


__all__ = ["ADM_KEY_MAP_PREFIXES", "ADMUNet", "AttentionBlock", "ResBlock", "attention_ds_from_resolutions", "load_adm_weights", "timestep_embedding"]

"""Small condition encoders of the Inverse Painting renderer (thesis 000, Ch. 6, §6.2 / §6.5).

* :class:`NeRFPositionalEncoding` + :class:`TimeEncoder` (``g_t``): the interval ``Δt`` ->
  ``[x, sin(2^k π x), cos(2^k π x)]_{k<10}`` (21-d) -> MLP 21 -> 256 -> 512 -> 768 (ReLU after the
  first two layers, linear last) -> one 768-d cross-attention token.
  [choice] The thesis does not give the normalisation of ``Δt``; the default is
  ``x = Δt / time_scale`` with ``time_scale = 100`` (the code's ``PE_time_max``).
  ``mode="official"`` is the official code's exact map (``PE_type: abs``): ``Δt`` rounded to a
  multiple of ``round_to`` (5 s), divided by ``time_scale``, clamped to [0, 1], then ``2x - 1``
  (needed to run the authors' released weights).
* :class:`NextClipGenerator` (``g_c``): concat(CLIP(I_{t-1}), CLIP(I_T)) 1536 -> 768 -> 384 -> 768
  (ReLU except last): the predicted CLIP embedding of the next keyframe (thesis sizes; the
  code's 1024/512 hidden sizes are not used).
* :class:`CanvasFeatureEncoder` (``g_f``): 9 conv layers over ``[I_{t-1}]`` (one-stage) or
  ``[I_{t-1}, M_t]`` (two-stage), down to the latent resolution. Two forms behind ``mode``:

  - ``"concat"`` (thesis): the output (``latent_channels``) is concatenated with ``z_s`` along
    channels and the UNet's ``conv_in`` is widened; the new input weights start at zero so the
    pretrained UNet is unchanged at initialisation (:func:`widen_conv_in`).
  - ``"add"`` (official code, AnimateAnyone pose guider): the last layer is a zero-initialised
    1x1 conv to ``block_out_channels[0]`` (320) with a learned output scale (init 2), added to
    the ``conv_in`` output (:class:`ConvInWithFeatures`).

  And two kernel / channel layouts behind ``layout`` (the thesis gives only "9 conv layers"):

  - ``"thesis"`` (default, [choice]): 3x3 convs ``in -> 16 -> 16 -> 32(s2) -> 32 -> 64(s2) -> 64 -> 128(s2) -> 128 -> out``.
  - ``"official"`` (the official ``Hack_CurImageGuider``, needed for the released renderer):
    ``in -> 3 (3x3) -> 16 (4x4 s2) -> 16 (3x3) -> 32 (4x4 s2) -> 32 (3x3) -> 64 (4x4 s2) -> 64 (3x3)
    -> 128 (3x3) -> out (1x1)``, SiLU between, scale of shape ``[1]``; ``mode="add"`` and an 8x VAE only.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "NeRFPositionalEncoding",
    "TimeEncoder",
    "NextClipGenerator",
    "CanvasFeatureEncoder",
    "ConvInWithFeatures",
    "widen_conv_in",
]


class NeRFPositionalEncoding(nn.Module):
    """``x -> [x, sin(2^0 π x), cos(2^0 π x), ..., sin(2^{L-1} π x), cos(2^{L-1} π x)]`` (NeRF, L = 10 -> 21-d)."""

    def __init__(self, num_freqs: int = 10, include_input: bool = True) -> None:
        super().__init__()
        self.num_freqs, self.include_input = int(num_freqs), bool(include_input)
        self.register_buffer("freqs", (2.0 ** torch.arange(self.num_freqs, dtype=torch.float32)) * math.pi, persistent=False)

    @property
    def out_dim(self) -> int:
        return 2 * self.num_freqs + int(self.include_input)

    def forward(self, x: Tensor) -> Tensor:
        x = x.float().reshape(-1, 1)
        angles = x * self.freqs
        parts = [x] if self.include_input else []
        # interleave sin/cos per frequency as in NeRF's embedder
        parts.append(torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1))
        return torch.cat(parts, dim=1)


class TimeEncoder(nn.Module):
    """``g_t``: ``Δt`` in seconds ``[B]`` -> one token ``[B, 1, out_dim]`` (21 -> 256 -> 512 -> 768)."""

    MODES = ("scaled", "official")

    def __init__(self, out_dim: int = 768, hidden: Sequence[int] = (256, 512), num_freqs: int = 10, time_scale: float = 100.0,
                 mode: str = "scaled", round_to: float = 5.0) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"time_encoding must be one of {list(self.MODES)}, got {mode!r}")
        self.encoding = NeRFPositionalEncoding(num_freqs)
        self.time_scale, self.mode, self.round_to = float(time_scale), mode, float(round_to)
        dims = [self.encoding.out_dim, *hidden, out_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(nn.ReLU())
        self.mlp = nn.Sequential(*layers)

    def normalise(self, seconds: Tensor) -> Tensor:
        """``Δt`` seconds -> the scalar the positional encoding sees (see the module docstring)."""
        if self.mode == "scaled":
            return seconds / self.time_scale
        if self.round_to > 1:
            seconds = torch.round(seconds / self.round_to) * self.round_to
        return (seconds / self.time_scale).clamp(0.0, 1.0) * 2 - 1

    def forward(self, seconds: Tensor) -> Tensor:
        return self.mlp(self.encoding(self.normalise(seconds))).unsqueeze(1)


class NextClipGenerator(nn.Module):
    """``g_c``: ``[CLIP(I_{t-1}), CLIP(I_T)]`` -> predicted CLIP token of ``I_t`` ``[B, 1, out_dim]``."""

    def __init__(self, clip_dim: int = 768, hidden: Sequence[int] = (768, 384), out_dim: int = 768) -> None:
        super().__init__()
        dims = [2 * clip_dim, *hidden, out_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(nn.ReLU())
        self.mlp = nn.Sequential(*layers)

    def forward(self, canvas_clip: Tensor, target_clip: Tensor) -> Tensor:
        return self.mlp(torch.cat([canvas_clip, target_clip], dim=-1)).unsqueeze(1)


class CanvasFeatureEncoder(nn.Module):
    """``g_f``: 9 conv layers, ``in_channels`` at image resolution -> ``out_channels`` at 1/``downsample``.

    Channels ``in -> 16 -> 16 -> 32(s2) -> 32 -> 64(s2) -> 64 -> 128(s2) -> 128 -> out`` (SiLU between);
    the stride-2 layers beyond ``log2(downsample)`` keep stride 1 (tiny VAEs downsample less).
    ``mode="add"``: the last layer is a zero-initialised 1x1 conv and the output is multiplied by a
    learned scale (init ``scale_init``); ``mode="concat"``: a plain 3x3 last layer.
    """

    CHANNELS = (16, 16, 32, 32, 64, 64, 128, 128)
    STRIDED = (2, 4, 6)  # indices (into CHANNELS) of the layers that halve the resolution
    #: ``layout="official"``: (channels, kernel, stride) of the 8 body convs (padding 1 each)
    OFFICIAL = ((3, 3, 1), (16, 4, 2), (16, 3, 1), (32, 4, 2), (32, 3, 1), (64, 4, 2), (64, 3, 1), (128, 3, 1))
    LAYOUTS = ("thesis", "official")

    def __init__(self, in_channels: int, out_channels: int, downsample: int = 8, mode: str = "add", scale_init: float = 2.0,
                 layout: str = "thesis") -> None:
        super().__init__()
        if mode not in ("add", "concat"):
            raise ValueError(f"mode must be 'add' (code) or 'concat' (thesis), got {mode!r}")
        if layout not in self.LAYOUTS:
            raise ValueError(f"feature_encoder_layout must be one of {list(self.LAYOUTS)}, got {layout!r}")
        halvings = int(round(math.log2(downsample)))
        if 2**halvings != downsample or halvings > len(self.STRIDED):
            raise ValueError(f"downsample must be 1, 2, 4 or 8, got {downsample}")
        if layout == "official" and (mode != "add" or downsample != 8):
            raise ValueError("feature_encoder_layout 'official' (the official pose-guider layout) needs canvas_mode 'add' "
                             f"and an 8x VAE (got canvas_mode {mode!r}, VAE factor {downsample})")
        self.mode, self.layout = mode, layout
        layers: list[nn.Module] = []
        previous = in_channels
        if layout == "official":
            for channels, kernel, stride in self.OFFICIAL:
                layers += [nn.Conv2d(previous, channels, kernel, stride=stride, padding=1), nn.SiLU()]
                previous = channels
        else:
            for i, channels in enumerate(self.CHANNELS):
                stride = 2 if i in self.STRIDED[:halvings] else 1
                layers += [nn.Conv2d(previous, channels, 3, stride=stride, padding=1), nn.SiLU()]
                previous = channels
        self.body = nn.Sequential(*layers)
        if mode == "add":
            self.out = nn.Conv2d(previous, out_channels, 1)
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)
            scale = torch.full((1,), float(scale_init)) if layout == "official" else torch.tensor(float(scale_init))
            self.scale = nn.Parameter(scale)
        else:
            self.out = nn.Conv2d(previous, out_channels, 3, padding=1)
            self.register_parameter("scale", None)

    @property
    def num_conv_layers(self) -> int:
        return sum(isinstance(m, nn.Conv2d) for m in self.modules())

    def forward(self, x: Tensor) -> Tensor:
        y = self.out(self.body(x))
        return y * self.scale if self.scale is not None else y


class ConvInWithFeatures(nn.Module):
    """The UNet's ``conv_in`` plus extra features set for one call (``mode="add"``)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv
        self.extra: Optional[Tensor] = None
        # diffusers reads these attributes of conv_in in a few places
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels

    @property
    def weight(self) -> Tensor:
        return self.conv.weight

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        if self.extra is not None:
            if self.extra.shape[0] != y.shape[0]:
                raise ValueError(f"canvas features batch {self.extra.shape[0]} != UNet batch {y.shape[0]}")
            y = y + self.extra.to(y.dtype)
        return y


def widen_conv_in(unet: nn.Module, extra_channels: int) -> None:
    """Add ``extra_channels`` zero-initialised input channels to ``unet.conv_in`` (``mode="concat"``).

    The shared rule of :func:`lightning_modules.components.unet_inputs.resize_conv2d`.
    """
    from lightning_modules.components.unet_inputs import resize_unet_channels

    resize_unet_channels(unet, in_channels=unet.conv_in.in_channels + int(extra_channels))

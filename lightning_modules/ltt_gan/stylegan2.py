"""StyleGAN2 (Karras et al. 2020) in the GFPGAN / BasicSR key layout, frozen prior of LTT-GAN.

Thesis 001 Ch. 6, §6.3.2 (Fig. 6.2): the generative prior is "StyleGAN2 pretrained on FFHQ 512
and frozen": learned constant input C, modulated convolutions with demodulation, per-layer noise
injection, ToRGB skip outputs and the resample kernel [1, 3, 3, 1] (digest 6.2 [code]).

Every parameter and buffer carries the name it has in GFPGAN's / BasicSR's ``stylegan2_arch``
(``style_mlp.<i>``, ``constant_input.weight``, ``style_conv1.modulated_conv.modulation.weight``,
``style_convs.<i>.weight`` (noise strength), ``style_convs.<i>.activate.bias``, ``to_rgbs.<i>.bias``,
``noises.noise<i>``), so :func:`load_stylegan2_generator` reads the published checkpoint
``StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth`` (``params_ema``) with a strict load. A
rosinality/stylegan2-pytorch checkpoint (``g_ema`` / ``d``: ``style.<i>``, ``input.input``,
``conv1.conv``, ``convs.<i>.noise.weight``, ``noises.noise_<i>``, D ``convs.<i>``) is recognised
and renamed to these names (:func:`rosinality_to_basicsr`); the two layouts hold the same tensors. The
blur-kernel buffers of the checkpoint (``*.kernel``) are dropped and rebuilt from
``resample_kernel`` (they are not weights). The discriminator follows BasicSR's
``StyleGAN2Discriminator`` names (``conv_body``, ``final_conv``, ``final_linear``).

Resampling is written with plain ``conv2d`` / ``conv_transpose2d`` (the upfirdn2d of the
reference, no custom CUDA op): upsampling = transposed stride-2 conv then a [1,3,3,1] x 4 blur
padded (1, 1); downsampling = blur padded ((p+1)//2, p//2) then a stride-2 conv.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SQRT2 = math.sqrt(2.0)


def stylegan2_channels(channel_multiplier: float = 1, narrow: float = 1.0) -> dict[int, int]:
    """Channels per resolution of BasicSR's StyleGAN2 (``channel_multiplier`` 1 for the FFHQ-512 prior)."""
    return {4: int(512 * narrow), 8: int(512 * narrow), 16: int(512 * narrow), 32: int(512 * narrow),
            64: int(256 * channel_multiplier * narrow), 128: int(128 * channel_multiplier * narrow),
            256: int(64 * channel_multiplier * narrow), 512: int(32 * channel_multiplier * narrow),
            1024: int(16 * channel_multiplier * narrow)}


def blur_kernel(taps: Sequence[float]) -> Tensor:
    k = torch.tensor(list(taps), dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()


def blur(x: Tensor, kernel: Tensor, pad: tuple[int, int]) -> Tensor:
    """Depthwise FIR filter with zero padding ``pad`` (before, after) on both axes."""
    c = x.shape[1]
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    weight = kernel.flip(0, 1).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, groups=c)


class FusedLeakyReLU(nn.Module):
    """``leaky_relu(x + bias, 0.2) * sqrt(2)`` (key ``bias``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return F.leaky_relu(x + self.bias.view(shape), 0.2) * SQRT2


class ScaledLeakyReLU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, 0.2) * SQRT2


class EqualLinear(nn.Module):
    """Equalised-learning-rate linear layer (weight ``[out, in]`` scaled by ``lr_mul / sqrt(in)``)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.scale, self.lr_mul, self.activation = lr_mul / math.sqrt(in_features), lr_mul, activation

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            out = F.linear(x, self.weight * self.scale)
            return F.leaky_relu(out + bias, 0.2) * SQRT2 if bias is not None else F.leaky_relu(out, 0.2) * SQRT2
        return F.linear(x, self.weight * self.scale, bias)


class EqualConv2d(nn.Module):
    """Equalised-learning-rate convolution (weight scaled by ``1 / sqrt(in * k * k)``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True, bias_init: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.full((out_channels,), float(bias_init))) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size ** 2)
        self.stride, self.padding = stride, padding

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class Downsample(nn.Module):
    """The blur before a stride-2 conv of kernel ``kernel_size`` (BasicSR ``UpFirDnSmooth``, down 2)."""

    def __init__(self, taps: Sequence[float], kernel_size: int) -> None:
        super().__init__()
        self.register_buffer("kernel", blur_kernel(taps), persistent=False)
        p = len(taps) - 2 + (kernel_size - 1)
        self.pad = ((p + 1) // 2, p // 2)

    def forward(self, x: Tensor) -> Tensor:
        return blur(x, self.kernel, self.pad)


class ConvLayer(nn.Sequential):
    """[blur] -> EqualConv2d -> FusedLeakyReLU / ScaledLeakyReLU (BasicSR ``ConvLayer`` indices)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False,
                 taps: Sequence[float] = (1, 3, 3, 1), bias: bool = True, activate: bool = True) -> None:
        layers: list[nn.Module] = []
        if downsample:
            layers.append(Downsample(taps, kernel_size))
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride=2 if downsample else 1,
                                  padding=0 if downsample else kernel_size // 2, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channels) if bias else ScaledLeakyReLU())
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Residual down block: two 3x3 ConvLayers (the second strided) + a 1x1 strided skip, / sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int, taps: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3, taps=taps)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, taps=taps)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, taps=taps, bias=False, activate=False)

    def forward(self, x: Tensor) -> Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2


class ModulatedConv2d(nn.Module):
    """Style-modulated conv with optional demodulation and 2x upsampling (StyleGAN2 Sec. 2.2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int,
                 demodulate: bool = True, upsample: bool = False, taps: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.demodulate, self.upsample = demodulate, upsample
        self.modulation = EqualLinear(num_style_feat, in_channels, bias=True, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size ** 2)
        self.padding = kernel_size // 2
        if upsample:
            self.register_buffer("kernel", blur_kernel(taps) * 4, persistent=False)
            p = (len(taps) - 2) - (kernel_size - 1)
            self.pad = ((p + 1) // 2 + 1, p // 2 + 1)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        b, c, h, w = x.shape
        s = self.modulation(style).view(b, 1, c, 1, 1)
        weight = self.scale * self.weight * s  # [b, out, in, k, k]
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4], keepdim=True) + 1e-8)
        weight = weight.reshape(b * self.out_channels, c, self.kernel_size, self.kernel_size)
        x = x.reshape(1, b * c, h, w)
        if self.upsample:
            weight = weight.view(b, self.out_channels, c, self.kernel_size, self.kernel_size).transpose(1, 2)
            weight = weight.reshape(b * c, self.out_channels, self.kernel_size, self.kernel_size)
            out = F.conv_transpose2d(x, weight, stride=2, groups=b)
            out = blur(out, self.kernel, self.pad)
        else:
            out = F.conv2d(x, weight, padding=self.padding, groups=b)
        return out.view(b, self.out_channels, *out.shape[-2:])


class StyleConv(nn.Module):
    """Modulated conv -> noise injection (strength ``weight``) -> fused leaky ReLU (``activate.bias``)."""

    def __init__(self, in_channels: int, out_channels: int, num_style_feat: int, upsample: bool = False,
                 taps: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_channels, out_channels, 3, num_style_feat, True, upsample, taps)
        self.weight = nn.Parameter(torch.zeros(1))
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x: Tensor, style: Tensor, noise: Optional[Tensor] = None) -> Tensor:
        out = self.modulated_conv(x, style)
        if noise is None:
            noise = out.new_empty(out.shape[0], 1, *out.shape[-2:]).normal_()
        return self.activate(out + self.weight * noise)


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) + bias, added to the upsampled skip image."""

    def __init__(self, in_channels: int, num_style_feat: int, upsample: bool = True,
                 taps: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_channels, 3, 1, num_style_feat, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.upsample = upsample
        if upsample:
            self.register_buffer("kernel", blur_kernel(taps) * 4, persistent=False)
            p = len(taps) - 2
            self.pad = ((p + 1) // 2 + 1, p // 2)

    def forward(self, x: Tensor, style: Tensor, skip: Optional[Tensor] = None) -> Tensor:
        out = self.modulated_conv(x, style) + self.bias
        if skip is not None:
            if self.upsample:  # zero insertion x2, then the [1,3,3,1] x 4 blur (upfirdn2d up=2)
                up = skip.new_zeros(skip.shape[0], 3, skip.shape[2] * 2, skip.shape[3] * 2)
                up[:, :, ::2, ::2] = skip
                skip = blur(up, self.kernel, self.pad)
            out = out + skip
        return out


class NormStyleCode(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> Tensor:
        return self.weight.repeat(batch, 1, 1, 1)


class StyleGAN2Generator(nn.Module):
    """The StyleGAN2 synthesis network + mapping MLP (BasicSR names); see the module docstring.

    ``forward(latent)`` takes W+ codes ``[B, num_latent, num_style_feat]`` (``num_latent = 2 log2(size) - 2``)
    and returns the image; :class:`lightning_modules.ltt_gan.generator.LTTGANGenerator` drives the
    layers itself to insert the SFT modulations and the HPC branches.
    """

    def __init__(self, out_size: int = 512, num_style_feat: int = 512, num_mlp: int = 8, channel_multiplier: float = 1,
                 resample_kernel: Sequence[float] = (1, 3, 3, 1), lr_mlp: float = 0.01, narrow: float = 1.0) -> None:
        super().__init__()
        log_size = int(math.log2(out_size))
        if 2 ** log_size != out_size or out_size < 8:
            raise ValueError(f"StyleGAN2 out_size must be a power of two >= 8, got {out_size}")
        self.out_size, self.num_style_feat, self.log_size = out_size, num_style_feat, log_size
        self.channel_multiplier, self.narrow = channel_multiplier, narrow
        self.channels = stylegan2_channels(channel_multiplier, narrow)
        self.style_mlp = nn.Sequential(NormStyleCode(), *[
            EqualLinear(num_style_feat, num_style_feat, bias=True, lr_mul=lr_mlp, activation=True) for _ in range(num_mlp)])
        self.constant_input = ConstantInput(self.channels[4])
        self.style_conv1 = StyleConv(self.channels[4], self.channels[4], num_style_feat, taps=resample_kernel)
        self.to_rgb1 = ToRGB(self.channels[4], num_style_feat, upsample=False, taps=resample_kernel)
        self.num_layers = (log_size - 2) * 2 + 1
        self.num_latent = log_size * 2 - 2
        self.style_convs, self.to_rgbs, self.noises = nn.ModuleList(), nn.ModuleList(), nn.Module()
        for index in range(self.num_layers):
            res = 2 ** ((index + 5) // 2)
            self.noises.register_buffer(f"noise{index}", torch.randn(1, 1, res, res))
        in_channels = self.channels[4]
        for i in range(3, log_size + 1):
            out_channels = self.channels[2 ** i]
            self.style_convs.append(StyleConv(in_channels, out_channels, num_style_feat, upsample=True, taps=resample_kernel))
            self.style_convs.append(StyleConv(out_channels, out_channels, num_style_feat, taps=resample_kernel))
            self.to_rgbs.append(ToRGB(out_channels, num_style_feat, upsample=True, taps=resample_kernel))
            in_channels = out_channels

    def noise_list(self, randomize: bool) -> list[Optional[Tensor]]:
        if randomize:
            return [None] * self.num_layers
        return [getattr(self.noises, f"noise{i}") for i in range(self.num_layers)]

    def forward(self, latent: Tensor, randomize_noise: bool = True) -> Tensor:
        noise = self.noise_list(randomize_noise)
        out = self.style_conv1(self.constant_input(latent.shape[0]), latent[:, 0], noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for conv1, conv2, n1, n2, to_rgb in zip(self.style_convs[::2], self.style_convs[1::2], noise[1::2],
                                                noise[2::2], self.to_rgbs):
            out = conv2(conv1(out, latent[:, i], n1), latent[:, i + 1], n2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip


class StyleGAN2Discriminator(nn.Module):
    """BasicSR's StyleGAN2 discriminator: 1x1 ConvLayer, ResBlocks to 4x4, minibatch stddev, two linears."""

    def __init__(self, out_size: int = 512, channel_multiplier: float = 1, resample_kernel: Sequence[float] = (1, 3, 3, 1),
                 stddev_group: int = 4, narrow: float = 1.0) -> None:
        super().__init__()
        log_size = int(math.log2(out_size))
        if 2 ** log_size != out_size or out_size < 8:
            raise ValueError(f"StyleGAN2 discriminator out_size must be a power of two >= 8, got {out_size}")
        channels = stylegan2_channels(channel_multiplier, narrow)
        body: list[nn.Module] = [ConvLayer(3, channels[out_size], 1)]
        in_channels = channels[out_size]
        for i in range(log_size, 2, -1):
            body.append(ResBlock(in_channels, channels[2 ** (i - 1)], resample_kernel))
            in_channels = channels[2 ** (i - 1)]
        self.conv_body = nn.Sequential(*body)
        self.final_conv = ConvLayer(in_channels + 1, channels[4], 3)
        self.final_linear = nn.Sequential(EqualLinear(channels[4] * 16, channels[4], activation=True),
                                          EqualLinear(channels[4], 1))
        self.stddev_group = stddev_group

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv_body(x)
        b, c, h, w = out.shape
        group = math.gcd(b, self.stddev_group)
        stddev = out.view(group, -1, 1, c, h, w)
        stddev = torch.sqrt(stddev.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
        out = torch.cat([out, stddev.repeat(group, 1, h, w)], 1)
        out = self.final_conv(out)
        return self.final_linear(out.view(b, -1))


def rosinality_to_basicsr(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename rosinality/stylegan2-pytorch (or GFPGANv1 ``stylegan_decoder.``) keys to BasicSR's (identity for
    BasicSR files); the key maps live in :mod:`lightning_modules.ltt_gan.released`. Blur kernels are dropped."""
    from lightning_modules.ltt_gan.released import stylegan2_key_map

    part = "generator" if "input.input" in state or not any(k.startswith("convs.0.0.") for k in state) else "discriminator"
    return stylegan2_key_map(state, part).apply(state)


def read_checkpoint(path: str, key: str, prefer: Sequence[str] = ("params_ema", "params", "state_dict")) -> dict[str, Tensor]:
    """A state dict from ``path`` (safe load), unwrapping BasicSR's ``params_ema`` / ``params`` (first of ``prefer``)."""
    from lightning_modules.components.released_weights import read_released_state

    return read_released_state(path, key=key, containers=tuple(prefer))


def _check_shapes(module: nn.Module, state: Mapping[str, Tensor], path: str, what: str) -> None:
    """One :class:`ReleasedWeightsError` for missing / unexpected / other-shape keys, with the setting that usually explains it."""
    from lightning_modules.components.released_weights import check_released_state
    from lightning_modules.ltt_gan.released import CLEAN_HINT

    own = module.state_dict()
    names_differ = set(own) != set(state)
    hint = CLEAN_HINT if names_differ else "Another channel_multiplier / num_style_feat?"
    check_released_state(own, state, f"{what} checkpoint {path!r}", what, hint)


def load_stylegan2_generator(generator: StyleGAN2Generator, path: str, key: str = "model.stylegan_path") -> None:
    """Strictly load a GFPGAN/BasicSR StyleGAN2 generator checkpoint; a clear error for another size/width."""
    state = rosinality_to_basicsr(read_checkpoint(path, key, prefer=("params_ema", "g_ema", "params", "state_dict")))
    rgb_layers = {k.split(".")[1] for k in state if k.startswith("to_rgbs.")}
    if rgb_layers and len(rgb_layers) != len(generator.to_rgbs):
        size = 2 ** (len(rgb_layers) + 2)
        raise ValueError(f"{key}: {path!r} is a {size}x{size} StyleGAN2 (to_rgbs has {len(rgb_layers)} layers); "
                         f"the model is configured for out_size {generator.out_size}")
    _check_shapes(generator, state, path, "StyleGAN2 generator")
    generator.load_state_dict(state, strict=True)


def load_stylegan2_discriminator(discriminator: StyleGAN2Discriminator, path: str,
                                 key: str = "model.discriminator_path") -> None:
    """Strictly load a BasicSR StyleGAN2 discriminator checkpoint (``params``)."""
    state = rosinality_to_basicsr(read_checkpoint(path, key, prefer=("params", "d", "params_ema", "state_dict")))
    _check_shapes(discriminator, state, path, "StyleGAN2 discriminator")
    discriminator.load_state_dict(state, strict=True)


__all__ = ["ConvLayer", "EqualConv2d", "EqualLinear", "ResBlock", "ScaledLeakyReLU", "StyleGAN2Discriminator",
           "StyleGAN2Generator", "load_stylegan2_discriminator", "load_stylegan2_generator", "read_checkpoint",
           "stylegan2_channels"]

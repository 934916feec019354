"""LTT-GAN's generative embedding network with hierarchical pseudo connections (thesis 001 Ch. 6).

§6.3.2 / Fig. 6.2: a U-Net encoder F_Encoder maps the degraded face to a latent that replaces
StyleGAN2's W space (``final_linear``, ``different_w``: one 512-d code per style layer, W+ of
``(2 log2(512) - 2) = 16`` codes); the decoder F_Decoder emits per-level features whose SFT heads
(``condition_scale`` / ``condition_shift``) produce per-pixel (scale, shift) that modulate the
frozen StyleGAN2 (:mod:`lightning_modules.ltt_gan.stylegan2`). Key names follow MKFMIKU/LTT-GAN's
``GFPGANPyramid`` (a GFPGAN fork): ``conv_body_first``, ``conv_body_down``, ``final_conv``,
``conv_body_up``, ``toRGB``, ``final_linear``, ``stylegan_decoder``. U-Net channels are the
StyleGAN2 channels x ``unet_narrow`` 0.5 (4..32 px: 256, 64: 128, 128: 64, 256: 32, 512: 16).
``sft_half`` (GFPGAN's "clean" choice the fork keeps): the SFT modulates only the second half of
the style conv's channels, the first half passes unchanged.

**Hierarchical pseudo connections (§6.3.4, Eq. 6.9).** Every SFT head has doubled outputs, split
into branches a and b. Two readings of Eq. 6.9:

* text: with g style-block groups the last layer yields ``2^g`` results (g = 8 would be 256);
* code (``StyleGAN2GeneratorSFTPY``): style-layer index i runs 1, 3, 5, ...; for i <= 7 the two
  halves are used together (this port averages them, ``(a + b) / 2``, which equals a single head
  when a = b), for i > 7 each existing branch forks into a and b. At 512 px the levels are
  i = 1..13, so i > 7 forks at 3 levels (128, 256, 512 px): **8** branches.

Here ``branch_levels`` is the number of last resolution levels that fork (``2^branch_levels``
outputs); ``branch_levels = 3`` is the code's ``i > 7`` at 512 px, the ablation's g = 8 / 16 / 32
are read as 3 / 4 / 5 branching levels (``configs/ltt_gan_ablations/``), 0 is the baseline (one
output). The output is the branch mean (§6.4.3) and the per-pixel variance across branches the
uncertainty map (§6.4.4; averaged over RGB, population variance). Branches run stacked along the
batch axis in one forward pass.

Initialisation: the thesis says Xavier; the code's equalised-learning-rate layers draw N(0, 1)
and rescale at run time (He-like); this port follows the code.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.ltt_gan.stylegan2 import (SQRT2, ConvLayer, EqualConv2d, EqualLinear, FusedLeakyReLU, ResBlock,
                                                 ScaledLeakyReLU, StyleGAN2Generator, stylegan2_channels)


class LTTGANOutput(NamedTuple):
    branches: Tensor  # [n_branches, B, 3, H, W]
    mean: Tensor  # [B, 3, H, W]: the restored face
    variance: Tensor  # [B, 1, H, W]: the uncertainty map
    pyramid: list[Tensor]  # U-Net decoder RGB outputs at 8 .. out_size px (image-pyramid L1)


class ConvUpLayer(nn.Module):
    """Bilinear x2 upsample -> equalised conv -> optional fused leaky ReLU (LTT-GAN ``ConvUpLayer``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0,
                 bias: bool = True, activate: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size ** 2)
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias and not activate else None
        self.activation = (FusedLeakyReLU(out_channels) if bias else ScaledLeakyReLU()) if activate else None

    def forward(self, x: Tensor) -> Tensor:
        out = F.conv2d(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False),
                       self.weight * self.scale, self.bias, padding=self.padding)
        return self.activation(out) if self.activation is not None else out


class ResUpBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvUpLayer(in_channels, out_channels, 3, padding=1)
        self.skip = ConvUpLayer(in_channels, out_channels, 1, bias=False, activate=False)

    def forward(self, x: Tensor) -> Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2


def _sft_head(channels: int, out_channels: int, bias_init: float) -> nn.Sequential:
    return nn.Sequential(EqualConv2d(channels, channels, 3, padding=1), ScaledLeakyReLU(),
                         EqualConv2d(channels, out_channels, 3, padding=1, bias_init=bias_init))


class LTTGANGenerator(nn.Module):
    """U-Net encoder/decoder + SFT heads (doubled for HPC) + frozen StyleGAN2 (module docstring).

    Args:
        out_size: face size (512 in the paper); inputs are resized to it by the caller.
        num_style_feat, num_mlp, lr_mlp, channel_multiplier, resample_kernel: the StyleGAN2 prior
            (512, 8, 0.01, 1, [1, 3, 3, 1] for the FFHQ-512 checkpoint).
        narrow: width factor of both parts (1 = paper; tiny configs shrink it); the U-Net is
            ``narrow * unet_narrow``.
        unet_narrow: 0.5 (the code's ``unet_narrow = narrow * 0.5``).
        different_w: one W code per style layer (W+), True in the paper's config.
        sft_half: modulate only half of each style conv's channels (module docstring).
        branch_levels: HPC forking levels (``2^branch_levels`` outputs; 0 = no HPC).
    """

    def __init__(self, out_size: int = 512, num_style_feat: int = 512, num_mlp: int = 8, lr_mlp: float = 0.01,
                 channel_multiplier: float = 1, resample_kernel: Sequence[float] = (1, 3, 3, 1), narrow: float = 1.0,
                 unet_narrow: float = 0.5, different_w: bool = True, sft_half: bool = True,
                 branch_levels: int = 3) -> None:
        super().__init__()
        self.log_size = int(math.log2(out_size))
        levels = self.log_size - 2
        if not 0 <= int(branch_levels) <= levels:
            raise ValueError(f"model.branch_levels={branch_levels} must lie in [0, {levels}] for out_size {out_size}")
        self.out_size, self.num_style_feat = out_size, num_style_feat
        self.different_w, self.sft_half, self.branch_levels = different_w, sft_half, int(branch_levels)
        self.stylegan_decoder = StyleGAN2Generator(out_size, num_style_feat, num_mlp, channel_multiplier,
                                                   resample_kernel, lr_mlp, narrow)
        style_ch = self.stylegan_decoder.channels
        unet = {k: max(1, int(v * unet_narrow)) for k, v in stylegan2_channels(channel_multiplier, narrow).items()}
        self.conv_body_first = ConvLayer(3, unet[out_size], 1)
        self.conv_body_down = nn.ModuleList()
        in_ch = unet[out_size]
        for i in range(self.log_size, 2, -1):
            self.conv_body_down.append(ResBlock(in_ch, unet[2 ** (i - 1)], resample_kernel))
            in_ch = unet[2 ** (i - 1)]
        self.final_conv = ConvLayer(in_ch, unet[4], 3)
        self.conv_body_up, self.toRGB = nn.ModuleList(), nn.ModuleList()
        self.condition_scale, self.condition_shift = nn.ModuleList(), nn.ModuleList()
        in_ch = unet[4]
        for i in range(3, self.log_size + 1):
            res = 2 ** i
            self.conv_body_up.append(ResUpBlock(in_ch, unet[res]))
            self.toRGB.append(EqualConv2d(unet[res], 3, 1))
            sft = style_ch[res] // 2 if sft_half else style_ch[res]
            self.condition_scale.append(_sft_head(unet[res], 2 * sft, 1.0))  # doubled: branches a | b
            self.condition_shift.append(_sft_head(unet[res], 2 * sft, 0.0))
            in_ch = unet[res]
        num_latent = self.log_size * 2 - 2
        self.final_linear = EqualLinear(unet[4] * 16, (num_latent if different_w else 1) * num_style_feat)

    @property
    def num_branches(self) -> int:
        return 2 ** self.branch_levels

    def encode(self, x: Tensor) -> tuple[Tensor, list[tuple[Tensor, Tensor]], list[Tensor]]:
        """W+ latents ``[B, num_latent, D]``, per-level doubled (scale, shift), decoder RGB pyramid."""
        if x.shape[-1] != self.out_size or x.shape[-2] != self.out_size:
            raise ValueError(f"LTT-GAN input must be {self.out_size}x{self.out_size}, got {tuple(x.shape[-2:])}")
        skips = []
        feat = self.conv_body_first(x)
        for block in self.conv_body_down:
            feat = block(feat)
            skips.insert(0, feat)
        feat = self.final_conv(feat)
        num_latent = self.stylegan_decoder.num_latent
        code = self.final_linear(feat.flatten(1))
        latent = code.view(x.shape[0], num_latent, -1) if self.different_w else code[:, None].expand(-1, num_latent, -1)
        conditions, pyramid = [], []
        for i, up in enumerate(self.conv_body_up):
            feat = up(feat + skips[i])
            dense = (feat + skips[i + 1]) / 2 if i < len(self.conv_body_up) - 1 else feat
            conditions.append((self.condition_scale[i](dense), self.condition_shift[i](dense)))
            pyramid.append(self.toRGB[i](feat))
        return latent, conditions, pyramid

    def _sft(self, out: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
        if self.sft_half:
            same, mod = out.chunk(2, dim=1)
            return torch.cat([same, mod * scale + shift], dim=1)
        return out * scale + shift

    def synthesize(self, latent: Tensor, conditions: Sequence[tuple[Tensor, Tensor]],
                   randomize_noise: bool = True) -> Tensor:
        """Run the frozen StyleGAN2 with SFT; returns the branches ``[n_branches, B, 3, H, W]``."""
        g = self.stylegan_decoder
        noise = g.noise_list(randomize_noise)
        batch = latent.shape[0]
        out = g.style_conv1(g.constant_input(batch), latent[:, 0], noise[0])
        skip = g.to_rgb1(out, latent[:, 1])
        n = 1  # branches stacked on the batch axis: index = branch * B + item
        first_fork = len(conditions) - self.branch_levels
        i = 1
        for level, (conv1, conv2, n1, n2, to_rgb) in enumerate(zip(g.style_convs[::2], g.style_convs[1::2], noise[1::2],
                                                                   noise[2::2], g.to_rgbs)):
            lat = latent.repeat(n, 1, 1)
            out = conv1(out, lat[:, i], n1)
            scale, shift = conditions[level]
            (sa, sb), (ha, hb) = scale.chunk(2, dim=1), shift.chunk(2, dim=1)
            if level < first_fork:  # averaged (pseudo) connection: one modulation
                out = self._sft(out, ((sa + sb) / 2).repeat(n, 1, 1, 1), ((ha + hb) / 2).repeat(n, 1, 1, 1))
            else:  # fork every branch into a and b
                out = torch.cat([self._sft(out, sa.repeat(n, 1, 1, 1), ha.repeat(n, 1, 1, 1)),
                                 self._sft(out, sb.repeat(n, 1, 1, 1), hb.repeat(n, 1, 1, 1))])
                skip = torch.cat([skip, skip])
                n *= 2
                lat = latent.repeat(n, 1, 1)
            out = conv2(out, lat[:, i + 1], n2)
            skip = to_rgb(out, lat[:, i + 2], skip)
            i += 2
        return skip.view(n, batch, *skip.shape[1:])

    def forward(self, x: Tensor, randomize_noise: bool = True) -> LTTGANOutput:
        latent, conditions, pyramid = self.encode(x)
        branches = self.synthesize(latent, conditions, randomize_noise)
        mean = branches.mean(0)
        variance = branches.var(0, unbiased=False).mean(1, keepdim=True)
        return LTTGANOutput(branches, mean, variance, pyramid)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Everything but the frozen StyleGAN2 prior."""
        frozen = {id(p) for p in self.stylegan_decoder.parameters()}
        return [p for p in self.parameters() if id(p) not in frozen]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def meta_parameter_counts(out_size: int = 512, branch_levels: int = 3, **kwargs) -> dict[str, int]:
    """Parameter counts of the full-size generator and discriminator, built on the meta device (no memory).

    ``gfpgan_generator`` is the same generator with GFPGAN's single SFT heads (the HPC doubling of
    each head's last conv removed: ``hpc_head_extra``), the architecture of Table 6.1's GFPGAN row.
    """
    from lightning_modules.ltt_gan.stylegan2 import StyleGAN2Discriminator

    with torch.device("meta"):
        gen = LTTGANGenerator(out_size=out_size, branch_levels=branch_levels, **kwargs)
        disc = StyleGAN2Discriminator(out_size, kwargs.get("channel_multiplier", 1))
    prior = count_parameters(gen.stylegan_decoder)
    extra = sum(count_parameters(head[-1]) // 2 for heads in (gen.condition_scale, gen.condition_shift) for head in heads)
    return {"generator": count_parameters(gen), "stylegan2_prior": prior, "trainable_generator": count_parameters(gen) - prior,
            "discriminator": count_parameters(disc), "hpc_head_extra": extra, "gfpgan_generator": count_parameters(gen) - extra}


def table_6_1_size_readings(counts: dict[str, int]) -> dict[str, float]:
    """Table 6.1's "Parameters (M)" column read as float32 checkpoint sizes in MB (4 bytes a value).

    ``GFPGAN``: its generator twice (a file with ``params`` + ``params_ema``) fits the printed
    615.4 within 1%. ``LTT-GAN`` under the same reading gives 641.1, not 741.4; only adding the
    discriminator (``LTT-GAN + D``, 737.2) comes close, a different recipe per row. The thesis does
    not say how it counted; docs/ltt_gan.md "Numbers" records this, nothing here is confirmed.
    """
    mb = 4 / 1e6
    return {"GFPGAN": 2 * counts["gfpgan_generator"] * mb, "LTT-GAN": 2 * counts["generator"] * mb,
            "LTT-GAN + D": (2 * counts["generator"] + counts["discriminator"]) * mb}


__all__ = ["LTTGANGenerator", "LTTGANOutput", "count_parameters", "meta_parameter_counts", "table_6_1_size_readings"]

"""Real-ESRGAN's second-order degradation (Wang et al. 2021), pure tensor code.

Used for real-world 4x super-resolution by thesis 001 Ch. 2 (SR fine-tuning, DIV2K evaluation) and
Ch. 5 (CoDi SR, StableSR protocol). Two rounds of ``blur -> resize -> noise -> JPEG``, then a final
``resize to HR/scale + sinc filter`` and JPEG in random order. Every parameter is a field of
:class:`DegradationConfig` (defaults: Real-ESRGAN's ``train_realesrnet_x4plus.yml``); every random
choice is drawn from one ``torch.Generator``, so a seed fixes the output exactly.

Parts (all batched, per-sample random parameters):

* kernels: isotropic / anisotropic Gaussian, generalised Gaussian, plateau, 2-D sinc (``jinc``),
  odd sizes 7..21, random rotation;
* resize: up / down / keep with area, bilinear or bicubic interpolation; the first stage relative
  to the current size, the second relative to ``HR / scale`` (Real-ESRGAN's ``ori_h / scale * factor``);
* noise: Gaussian (colour or grey) and Poisson (colour or grey);
* JPEG: YCbCr, 4:2:0 chroma subsampling, 8x8 DCT, the standard IJG quantisation tables scaled by
  the quality factor, rounding, inverse transform ([GAP] a differentiable-free re-implementation
  of libjpeg's baseline path, not bit-exact with it).

Input and output are images in ``[0, 1]``; the output is ``[B, C, H/scale, W/scale]``, clamped and
quantised to 1/255 as Real-ESRGAN does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")


@dataclass
class StageConfig:
    """One degradation round (Real-ESRGAN's first- or second-order parameters)."""

    blur_prob: float = 1.0
    kernel_types: Sequence[str] = KERNEL_TYPES
    kernel_probs: Sequence[float] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    blur_sigma: Sequence[float] = (0.2, 3.0)
    betag_range: Sequence[float] = (0.5, 4.0)
    betap_range: Sequence[float] = (1.0, 2.0)
    resize_prob: Sequence[float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: Sequence[float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: Sequence[float] = (1.0, 30.0)  # sigma in 0..255 units
    poisson_scale_range: Sequence[float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: Sequence[float] = (30.0, 95.0)


def _second_stage() -> StageConfig:
    return StageConfig(blur_prob=0.8, blur_sigma=(0.2, 1.5), resize_prob=(0.3, 0.4, 0.3), resize_range=(0.3, 1.2),
                       noise_range=(1.0, 25.0), poisson_scale_range=(0.05, 2.5))


@dataclass
class DegradationConfig:
    """All parameters of the pipeline (Real-ESRGAN x4plus defaults)."""

    scale: int = 4
    kernel_range: Sequence[int] = (7, 21)
    first: StageConfig = field(default_factory=StageConfig)
    second: StageConfig = field(default_factory=_second_stage)
    second_order_prob: float = 1.0  # Real-ESRGAN always applies the second round
    final_sinc_prob: float = 0.8
    resize_modes: Sequence[str] = ("area", "bilinear", "bicubic")


# ---------------------------------------------------------------------------------- random helpers
def _uniform(g: torch.Generator, low: float, high: float, n: int) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=g, dtype=torch.float64)


def _choice(g: torch.Generator, probs: Sequence[float], n: int) -> Tensor:
    p = torch.tensor(list(probs), dtype=torch.float64)
    return torch.multinomial(p / p.sum(), n, replacement=True, generator=g)


# ---------------------------------------------------------------------------------- kernels
def _grid(size: int) -> tuple[Tensor, Tensor]:
    r = torch.arange(size, dtype=torch.float64) - size // 2
    return torch.meshgrid(r, r, indexing="ij")


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float = 2.0,
                    plateau: bool = False) -> Tensor:
    """Anisotropic (generalised / plateau) Gaussian kernel, normalised to sum 1."""
    yy, xx = _grid(size)
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * xx + s * yy, -s * xx + c * yy
    d2 = (u / sigma_x) ** 2 + (v / sigma_y) ** 2
    if plateau:
        k = 1.0 / (1.0 + d2.pow(beta / 2.0))
    else:
        k = torch.exp(-0.5 * d2.pow(beta / 2.0)) if beta != 2.0 else torch.exp(-0.5 * d2)
    return k / k.sum()


def sinc_kernel(size: int, cutoff: float) -> Tensor:
    """Circular low-pass (2-D sinc / jinc) kernel with cutoff frequency ``cutoff`` (radians)."""
    yy, xx = _grid(size)
    r = torch.sqrt(xx * xx + yy * yy)
    safe = torch.where(r == 0, torch.ones_like(r), r)
    k = cutoff * torch.special.bessel_j1(cutoff * safe) / (2 * math.pi * safe)
    k = torch.where(r == 0, torch.full_like(r, cutoff**2 / (4 * math.pi)), k)
    return k / k.sum()


def random_kernel(g: torch.Generator, stage: StageConfig, kernel_range: Sequence[int]) -> Tensor:
    """One blur kernel of a stage: sinc with ``sinc_prob``, else one of ``kernel_types``."""
    sizes = list(range(int(kernel_range[0]), int(kernel_range[1]) + 1, 2))
    size = sizes[int(torch.randint(len(sizes), (1,), generator=g))]
    if float(torch.rand(1, generator=g, dtype=torch.float64)) < stage.sinc_prob:
        cutoff = float(_uniform(g, math.pi / 3, math.pi, 1)) if size < 13 else float(_uniform(g, math.pi / 5, math.pi, 1))
        return sinc_kernel(size, cutoff)
    kind = stage.kernel_types[int(_choice(g, stage.kernel_probs, 1))]
    sx = float(_uniform(g, *stage.blur_sigma, 1))
    iso = kind.endswith("iso") and not kind.endswith("aniso")
    sy = sx if iso else float(_uniform(g, *stage.blur_sigma, 1))
    theta = 0.0 if iso else float(_uniform(g, -math.pi, math.pi, 1))
    if kind.startswith("generalized"):
        beta = float(_uniform(g, *stage.betag_range, 1))
        return gaussian_kernel(size, sx, sy, theta, beta=beta)
    if kind.startswith("plateau"):
        beta = float(_uniform(g, *stage.betap_range, 1))
        return gaussian_kernel(size, sx, sy, theta, beta=beta, plateau=True)
    return gaussian_kernel(size, sx, sy, theta)


def filter2d(images: Tensor, kernels: Sequence[Tensor]) -> Tensor:
    """Per-sample 2-D filtering with reflect padding (kernels may differ in size)."""
    out = []
    for image, kernel in zip(images, kernels):
        pad = kernel.shape[-1] // 2
        x = F.pad(image[None], (pad, pad, pad, pad), mode="reflect" if pad < min(image.shape[-2:]) else "replicate")
        k = kernel.to(image)[None, None].expand(image.shape[0], 1, -1, -1)
        out.append(F.conv2d(x, k, groups=image.shape[0]))
    return torch.cat(out)


# ---------------------------------------------------------------------------------- JPEG
_LUMA = torch.tensor([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=torch.float64).view(8, 8)
_CHROMA = torch.full((8, 8), 99.0, dtype=torch.float64)
_CHROMA[:4, :4] = torch.tensor([[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]],
                               dtype=torch.float64)


def _dct_matrix() -> Tensor:
    n = torch.arange(8, dtype=torch.float64)
    m = torch.cos((2 * n[None, :] + 1) * n[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m


def _quality_scale(quality: Tensor) -> Tensor:
    q = quality.clamp(1, 100)
    return torch.where(q < 50, 5000.0 / q, 200.0 - 2 * q) / 100.0


def _code_plane(plane: Tensor, table: Tensor, scale: Tensor) -> Tensor:
    """8x8 DCT, quantise with ``table * scale`` per sample, dequantise, inverse DCT. plane: [B, H, W] (mult. of 8)."""
    b, h, w = plane.shape
    d = _dct_matrix().to(plane)
    blocks = plane.reshape(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)
    coef = d @ blocks @ d.T
    q = (table.to(plane)[None] * scale.to(plane)[:, None, None]).clamp(min=1.0).floor()
    q = q[:, None, None]
    coef = torch.round(coef / q) * q
    out = d.T @ coef @ d
    return out.permute(0, 1, 3, 2, 4).reshape(b, h, w)


def jpeg_compress(images: Tensor, quality: Tensor) -> Tensor:
    """JPEG round trip of RGB images in [0, 1] at per-sample ``quality`` (1..100)."""
    b, c, h, w = images.shape
    if c != 3:
        raise ValueError(f"jpeg_compress needs RGB images, got {c} channels")
    ph, pw = (-h) % 16, (-w) % 16
    x = F.pad(images.double() * 255.0, (0, pw, 0, ph), mode="replicate")
    r, g_, bl = x[:, 0], x[:, 1], x[:, 2]
    y = 0.299 * r + 0.587 * g_ + 0.114 * bl
    cb = -0.168736 * r - 0.331264 * g_ + 0.5 * bl + 128.0
    cr = 0.5 * r - 0.418688 * g_ - 0.081312 * bl + 128.0
    scale = _quality_scale(quality.double().to(x.device))
    y = _code_plane(y - 128.0, _LUMA, scale) + 128.0
    chroma = []
    for plane in (cb, cr):
        small = F.avg_pool2d(plane[:, None], 2)[:, 0]
        small = _code_plane(small - 128.0, _CHROMA, scale) + 128.0
        chroma.append(F.interpolate(small[:, None], scale_factor=2, mode="nearest")[:, 0])
    cb, cr = chroma
    r = y + 1.402 * (cr - 128.0)
    g_ = y - 0.344136 * (cb - 128.0) - 0.714136 * (cr - 128.0)
    bl = y + 1.772 * (cb - 128.0)
    out = torch.stack([r, g_, bl], dim=1)[..., :h, :w] / 255.0
    return out.clamp(0, 1).to(images.dtype)


# ---------------------------------------------------------------------------------- the pipeline
class RealESRGANDegradation:
    """``degrade(hr: [B, 3, H, W] in [0, 1], generator) -> lr [B, 3, H/scale, W/scale]`` (module docstring)."""

    def __init__(self, config: Optional[DegradationConfig] = None) -> None:
        self.config = config or DegradationConfig()

    def _resize(self, x: Tensor, g: torch.Generator, stage: StageConfig,
                base_size: Optional[tuple[float, float]] = None) -> Tensor:
        """Random up / down / keep resize: relative to the current size (first stage) or to ``base_size``.

        Real-ESRGAN's second stage resizes relative to ``ori / scale`` (``int(ori_h / scale * factor)``,
        ``realesrgan_model.py``), not to the first stage's output size.
        """
        kind = int(_choice(g, stage.resize_prob, 1))
        if kind == 0:
            factor = float(_uniform(g, 1.0, stage.resize_range[1], 1))
        elif kind == 1:
            factor = float(_uniform(g, stage.resize_range[0], 1.0, 1))
        else:
            factor = 1.0
        if base_size is None:
            size = (round(x.shape[-2] * factor), round(x.shape[-1] * factor))
        else:
            size = (int(base_size[0] * factor), int(base_size[1] * factor))
        return self._interp(x, g, (max(1, size[0]), max(1, size[1])))

    def _interp(self, x: Tensor, g: torch.Generator, size: tuple[int, int]) -> Tensor:
        mode = self.config.resize_modes[int(torch.randint(len(self.config.resize_modes), (1,), generator=g))]
        kwargs = {} if mode == "area" else {"align_corners": False}
        return F.interpolate(x, size=size, mode=mode, **kwargs)

    def _noise(self, x: Tensor, g: torch.Generator, stage: StageConfig) -> Tensor:
        b = x.shape[0]
        gray = (torch.rand(b, generator=g, dtype=torch.float64) < stage.gray_noise_prob).to(x)[:, None, None, None]
        if float(torch.rand(1, generator=g, dtype=torch.float64)) < stage.gaussian_noise_prob:
            sigma = _uniform(g, *stage.noise_range, b).to(x)[:, None, None, None] / 255.0
            colour = torch.randn(x.shape, generator=g, dtype=torch.float64).to(x)
            grey = torch.randn((b, 1, *x.shape[2:]), generator=g, dtype=torch.float64).to(x).expand_as(x)
            noise = (gray * grey + (1 - gray) * colour) * sigma
        else:
            scale = _uniform(g, *stage.poisson_scale_range, b).to(x)[:, None, None, None]
            clean = x.clamp(0, 1)
            lum = (0.299 * clean[:, :1] + 0.587 * clean[:, 1:2] + 0.114 * clean[:, 2:3])
            noise_parts = []
            for img in (clean, lum):
                vals = 2 ** torch.ceil(torch.log2(torch.tensor(float(max(len(torch.unique(img)), 2)))))
                counts = torch.poisson((img * vals).double().cpu(), generator=g).to(x) / vals
                noise_parts.append(counts - img)
            noise = (gray * noise_parts[1].expand_as(x) + (1 - gray) * noise_parts[0]) * scale
        return x + noise

    def _jpeg(self, x: Tensor, g: torch.Generator, stage: StageConfig) -> Tensor:
        quality = _uniform(g, *stage.jpeg_range, x.shape[0])
        return jpeg_compress(x.clamp(0, 1), quality)

    def _stage(self, x: Tensor, g: torch.Generator, stage: StageConfig,
               base_size: Optional[tuple[float, float]] = None) -> Tensor:
        if float(torch.rand(1, generator=g, dtype=torch.float64)) < stage.blur_prob:
            x = filter2d(x, [random_kernel(g, stage, self.config.kernel_range) for _ in range(x.shape[0])])
        x = self._resize(x, g, stage, base_size)
        x = self._noise(x, g, stage)
        return self._jpeg(x, g, stage)

    @torch.no_grad()
    def __call__(self, hr: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        cfg = self.config
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        h, w = hr.shape[-2:]
        if h % cfg.scale or w % cfg.scale:
            raise ValueError(f"HR size {h}x{w} is not divisible by the scale {cfg.scale}")
        out_size = (h // cfg.scale, w // cfg.scale)
        x = self._stage(hr.float(), g, cfg.first)
        if float(torch.rand(1, generator=g, dtype=torch.float64)) < cfg.second_order_prob:
            x = self._stage(x, g, cfg.second, base_size=(h / cfg.scale, w / cfg.scale))
        sinc = []
        for _ in range(x.shape[0]):
            if float(torch.rand(1, generator=g, dtype=torch.float64)) < cfg.final_sinc_prob:
                size = int(torch.randint(cfg.kernel_range[0] // 2, cfg.kernel_range[1] // 2 + 1, (1,), generator=g)) * 2 + 1
                sinc.append(sinc_kernel(size, float(_uniform(g, math.pi / 3, math.pi, 1))))
            else:
                sinc.append(torch.ones(1, 1, dtype=torch.float64))  # identity (pulse) kernel
        if float(torch.rand(1, generator=g, dtype=torch.float64)) < 0.5:
            x = filter2d(self._interp(x, g, out_size), sinc)
            x = self._jpeg(x, g, cfg.second)
        else:
            x = self._jpeg(x, g, cfg.second)
            x = filter2d(self._interp(x, g, out_size), sinc)
        return (x.clamp(0, 1) * 255.0).round() / 255.0


__all__ = [
    "DegradationConfig", "KERNEL_TYPES", "RealESRGANDegradation", "StageConfig",
    "filter2d", "gaussian_kernel", "jpeg_compress", "random_kernel", "sinc_kernel",
]

"""VIDM's two networks on the shared ADM UNet (thesis 001 Ch. 3 §3.3, Fig. 3.2).

**Content generator** ``epsilon_theta(x_t, c, t)`` (Eq. 3.3): the ADM UNet over single frames with
multi-head attention at 16x16. The thesis names a "sampling-space truncation by a constant tensor
c" without saying how c enters; the authors' code has a StyleGAN-style learned ``ConstantInput``.
Our documented reading: ``c`` is a learned constant ``[k, S, S]`` tensor (``truncation_channels = k``,
3 by default, N(0, 1) initialised like StyleGAN's constant) concatenated to ``x_t`` as extra input
channels, so every sample's trajectory is anchored to one shared learned tensor;
``truncation_channels=0`` is the "w/o sampling space truncation" ablation (Table 3.2).

**Motion generator** ``rho_phi(x(n)_t, t, n, z)`` (Eq. 3.4-3.5): the same UNet with

1. PosGN in every ResBlock in place of AdaGN and of the timestep embedding (:mod:`.posgn`;
   ``use_posgn=False`` keeps ADM's AdaGN timestep embedding: the "w/o PosGN" ablation);
2. the implicit motion condition: the 2-channel SpyNet flow ``z = v(x(0), x(n-1))`` concatenated to
   the noisy frame ([repo]: a 5-channel UNet input); ``z`` is an input of :meth:`MotionNetwork.forward`
   so the sampler computes it once per frame (``use_flow=False``: "w/o implicit conditions");
3. the adaptive feature residual (§3.3.3): an encoder ``rho_hat`` with the UNet encoder's
   architecture over the first frame ``x(0)`` (and, through PosGN or the time embedding, t); after
   every encoder block ``h <- unet_block(h) + residual_scale * enc_block(e)`` (0.2), so
   ``residual_scale = 0`` is exactly the plain UNet (a test). The [repo] writes the other
   placement, ``h <- enc_block(e) + 0.2 * unet_block(h)`` ("the network synthesises the residual of
   the content features"); ``residual_form: repo`` selects it.

With ``learn_sigma`` both output 6 channels (epsilon and ADM's variance interpolation, [repo]).
[repo] sizes (128-256 px): ``model_channels=128``, ``channel_mult=(1,1,2,2,4,4)``, 2 ResBlocks per
level, attention at 16x16 with 64 channels per head, ``resblock_updown``, 32 GroupNorm groups.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.components.adm_unet import ADMUNet, attention_ds_from_resolutions
from lightning_modules.vidm.posgn import CoordinateContext, PosGNFactory
from lightning_modules.vidm.spynet import SpyNet

#: The [repo] UNet settings at 128/256 px (MKFMIKU/vidm defaults).
REPO_UNET: dict[str, Any] = dict(
    model_channels=128, channel_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2, num_head_channels=64,
    resblock_updown=True, use_scale_shift_norm=True, norm_num_groups=32, dropout=0.0,
)
RESIDUAL_FORMS = ("residual", "repo")


def _unet_kwargs(unet: Optional[Mapping[str, Any]], image_size: int) -> dict[str, Any]:
    kwargs = dict(REPO_UNET)
    kwargs.update(dict(unet or {}))
    if "attention_resolutions" in kwargs:
        kwargs["attention_ds"] = attention_ds_from_resolutions(image_size, kwargs.pop("attention_resolutions"))
    kwargs.setdefault("attention_ds", attention_ds_from_resolutions(image_size, (16,)) if image_size >= 16 else (1,))
    return kwargs


class ContentNetwork(nn.Module):
    """``epsilon_theta(x_t, c, t)`` over single frames (module docstring).

    Args:
        unet: ADMUNet keyword arguments over the [repo] defaults (``attention_resolutions`` in
            pixels, e.g. ``[16]``, or ``attention_ds``).
        image_size: frame side the constant ``c`` is built for (other sizes: ``c`` is resized).
        truncation_channels: channels of the learned constant ``c`` (0: no truncation).
        learn_sigma: 6 output channels (epsilon, variance interpolation).
    """

    def __init__(self, unet: Optional[Mapping[str, Any]] = None, image_size: int = 256, truncation_channels: int = 3,
                 learn_sigma: bool = True) -> None:
        super().__init__()
        if truncation_channels < 0:
            raise ValueError(f"truncation_channels must be >= 0, got {truncation_channels}")
        self.image_size, self.image_channels = int(image_size), 3
        self.truncation_channels = int(truncation_channels)
        self.learn_sigma = bool(learn_sigma)
        self.constant = nn.Parameter(torch.randn(1, truncation_channels, image_size, image_size)) if truncation_channels else None
        self.unet = ADMUNet(in_channels=3 + truncation_channels, out_channels=3, learn_sigma=learn_sigma,
                            **_unet_kwargs(unet, image_size))

    @property
    def downsample_factor(self) -> int:
        return self.unet.downsample_factor

    def forward(self, x_t: Tensor, timesteps: Tensor, return_variance: bool = False) -> Tensor:
        if self.constant is not None:
            c = self.constant
            if tuple(c.shape[-2:]) != tuple(x_t.shape[-2:]):
                c = F.interpolate(c, size=x_t.shape[-2:], mode="bilinear", align_corners=False)
            x_t = torch.cat([x_t, c.to(x_t.dtype).expand(x_t.shape[0], -1, -1, -1)], dim=1)
        out = self.unet(x_t, timesteps)
        return out if return_variance else out[:, : self.image_channels]


def build_spynet(flow: Optional[Mapping[str, Any]]) -> SpyNet:
    """``{"variant": "mmediting", "weights_path": ...}`` (6 levels, published widths) or ``{"variant": "tiny"}``;
    ``input_range`` (``unit`` / ``raw``) is passed to :class:`SpyNet` for both."""
    spec = dict(flow or {})
    variant = spec.pop("variant", "mmediting")
    if variant == "tiny":
        net = SpyNet.tiny(**{k: v for k, v in spec.items() if k in ("num_levels", "input_range")})
        return net
    if variant != "mmediting":
        raise ValueError(f"model.network.flow.variant={variant!r} is not one of ['mmediting', 'tiny']")
    return SpyNet(**spec)


class MotionNetwork(nn.Module):
    """``rho_phi(x(n)_t, t, n, z, x(0))`` with PosGN, the flow input and the feature residual (module docstring).

    Args:
        unet: ADMUNet keyword arguments over the [repo] defaults.
        image_size: frame side.
        learn_sigma: 6 output channels.
        use_posgn / use_flow / use_residual: the three additions (the ablations turn each off).
        residual_scale: the 0.2 of the adaptive feature residual.
        residual_form: ``residual`` (``unet + s * enc``) or ``repo`` (``enc + s * unet``).
        video_timesteps / diffusion_timesteps: PosGN's normalisation ranges of n and t (128, 1000).
        flow: the SpyNet spec (:func:`build_spynet`); trained jointly unless ``freeze_flow``.
        freeze_flow: keep SpyNet fixed (the thesis fine-tunes it jointly: default ``False``).
    """

    def __init__(
        self,
        unet: Optional[Mapping[str, Any]] = None,
        image_size: int = 256,
        learn_sigma: bool = True,
        use_posgn: bool = True,
        use_flow: bool = True,
        use_residual: bool = True,
        residual_scale: float = 0.2,
        residual_form: str = "residual",
        video_timesteps: int = 128,
        diffusion_timesteps: int = 1000,
        flow: Optional[Mapping[str, Any]] = None,
        freeze_flow: bool = False,
    ) -> None:
        super().__init__()
        if residual_form not in RESIDUAL_FORMS:
            raise ValueError(f"model.network.residual_form={residual_form!r} is not one of {list(RESIDUAL_FORMS)}")
        self.image_size, self.image_channels = int(image_size), 3
        self.learn_sigma, self.use_posgn, self.use_flow = bool(learn_sigma), bool(use_posgn), bool(use_flow)
        self.use_residual, self.residual_scale, self.residual_form = bool(use_residual), float(residual_scale), residual_form
        self.context = CoordinateContext(video_timesteps, diffusion_timesteps) if use_posgn else None
        kwargs = _unet_kwargs(unet, image_size)
        if use_posgn:
            kwargs.update(use_timestep_embedding=False, block_modulation=PosGNFactory(self.context))
        self.unet = ADMUNet(in_channels=3 + (2 if use_flow else 0), out_channels=3, learn_sigma=learn_sigma, **kwargs)
        self.encoder: Optional[ADMUNet] = None
        if use_residual:
            enc = ADMUNet(in_channels=3, out_channels=3, **kwargs)
            enc.middle_block, enc.output_blocks, enc.out = None, None, None  # only the encoder half is used
            self.encoder = enc
        self.flow_net: Optional[SpyNet] = build_spynet(flow) if use_flow else None
        if self.flow_net is not None and freeze_flow:
            self.flow_net.requires_grad_(False)

    @property
    def downsample_factor(self) -> int:
        return self.unet.downsample_factor

    def compute_flow(self, first: Tensor, previous: Tensor) -> Optional[Tensor]:
        """``z = v(x(0), x(n-1))`` (``None`` without the flow condition); one SpyNet call."""
        if self.flow_net is None:
            return None
        return self.flow_net(first, previous)

    def forward(self, x_t: Tensor, timesteps: Tensor, frame_index: Tensor, first: Tensor,
                flow: Optional[Tensor] = None, return_variance: bool = False) -> Tensor:
        b = x_t.shape[0]
        t = torch.as_tensor(timesteps, device=x_t.device)
        t = t.expand(b) if t.ndim == 0 else t
        if self.context is not None:
            self.context.set(torch.as_tensor(frame_index, device=x_t.device), t)
            emb = None
            t_arg: Optional[Tensor] = None
        else:
            t_arg = t
            emb = self.unet.embedding(t, b)
        if self.use_flow:
            if flow is None:
                raise ValueError("MotionNetwork with use_flow needs the flow z = compute_flow(first, previous)")
            x_t = torch.cat([x_t, flow.to(x_t.dtype)], dim=1)
        enc_emb = self.encoder.embedding(t_arg, b) if self.encoder is not None else None
        hs, h, e = [], x_t, first
        for i, block in enumerate(self.unet.input_blocks):
            h = block(h, emb)
            if self.encoder is not None:
                e = self.encoder.input_blocks[i](e, enc_emb)
                h = h + self.residual_scale * e if self.residual_form == "residual" else e + self.residual_scale * h
            hs.append(h)
        h = self.unet.middle_block(h, emb)
        for block in self.unet.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        out = self.unet.out(h)
        return out if return_variance else out[:, : self.image_channels]


def count_parameters_on_meta(network_cls: type, **kwargs: Any) -> int:
    """Parameters of ``network_cls(**kwargs)`` built on the meta device (no memory, any size)."""
    with torch.device("meta"):
        net = network_cls(**kwargs)
    return sum(p.numel() for p in net.parameters())


__all__ = ["ContentNetwork", "MotionNetwork", "REPO_UNET", "build_spynet", "count_parameters_on_meta"]

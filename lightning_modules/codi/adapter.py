"""CoDi's conditional adapter (thesis 001, Ch. 5, Sec. 5.3, Eq. 5.3) and the ControlNet alternative.

The backbone is an SD-style ``UNet2DConditionModel`` (v-prediction). The adapter is a copy of
the UNet *encoder* (time embedding, input convolution, down blocks, mid block) that reads the
condition ``c`` and is mixed into the backbone's encoder features:

* ``mode='mu_gate'`` (Eq. 5.3): ``h' = (1 - mu) h_theta(z_t) + mu h_eta(c)`` with a learnable
  ``mu`` initialised to 0. Mixing points ([GAP], the thesis does not list them): the output of
  ``conv_in``, every skip feature of every down block, the hidden state each down block hands
  to the next one, and the mid-block output. ``mu_granularity='global'`` is one scalar (the
  thesis's "a learnable scalar"); ``'per_level'`` is one scalar per mixing level (conv_in,
  each down block, mid block). The copy reads ``c`` alone (``h_eta(c)``), through its own input
  convolution of ``condition_channels`` inputs whose first channels are initialised from the
  backbone's ``conv_in`` and the rest with zeros ([GAP]).
* ``mode='controlnet'`` (the alternative of Table 5.3, Zhang et al.): the copy reads
  ``conv_in(z_t) + zero_conv(c)`` and its features enter the backbone's skips and mid block
  through zero-initialised 1x1 convolutions (added, the backbone trunk is unchanged).

  ``hint='pixel'`` replaces that latent zero-conv by ControlNet's own pixel-space conditioning
  embedding (diffusers' ``ControlNetConditioningEmbedding``: 3x3 convs 16-32-96-256 with stride-2
  steps down to the latent grid, zero-initialised output) reading the condition image in [0, 1]:
  exactly the layout of ControlNet checkpoints, which is how the authors' released PE-CoDi
  canny-to-image weights are loaded (:mod:`lightning_modules.codi.released`).
* ``mode='concat'`` (the "LDMs" rows of Tables 5.2/5.3, 865M: no extra branch): the condition is
  concatenated to ``z_t`` at the backbone's input; ``conv_in`` is widened with zero weights for the
  new channels (``components.unet_inputs.expand_conv_in``) ([GAP] the thesis gives only the
  parameter count; input concatenation is the one design with exactly the backbone's 865M).

At initialisation every mode returns exactly the backbone's output (tested). ``condition=None``
runs the plain backbone (the teacher / text-to-image model; ``concat``: zeros in the new channels).

``guidance`` (guided distillation's w-conditioned student, Meng et al. 2023, Table 5.1 GD): after
:meth:`ConditionalAdapterUNet.enable_guidance_embedding` the guidance scale ``w`` enters the time
embedding (backbone and copy) as ``Linear(sinusoid(1000 w))``, zero-initialised so the network starts
as before ([GAP]: the thesis does not say how ``w`` is embedded; this is Meng et al.'s and LCM's choice
of adding a ``w`` embedding to the timestep embedding).

:meth:`ConditionalAdapterUNet.enable_gradient_checkpointing` checkpoints the backbone and the
encoder copy's blocks alike (the copy is a third of CoDi's activations).
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import Tensor, nn

from lightning_modules.components.network_info import count_parameters, zero_module
from lightning_modules.components.unet_inputs import expand_conv_in, resize_conv2d

ADAPTER_MODES = ("mu_gate", "controlnet", "concat")
MU_GRANULARITIES = ("global", "per_level")


def _block_call(block: nn.Module, hidden: Tensor, emb: Tensor, context: Optional[Tensor]):
    if getattr(block, "has_cross_attention", False):
        return block(hidden_states=hidden, temb=emb, encoder_hidden_states=context)
    return block(hidden_states=hidden, temb=emb)


def _mid_call(block: nn.Module, hidden: Tensor, emb: Tensor, context: Optional[Tensor]) -> Tensor:
    if getattr(block, "has_cross_attention", False):
        return block(hidden, emb, encoder_hidden_states=context)
    return block(hidden, emb)


class UNetEncoderCopy(nn.Module):
    """A trainable copy of a UNet2DConditionModel's encoder: time embedding, conv_in, down and mid blocks."""

    def __init__(self, unet: nn.Module, in_channels: int, init_from_backbone: bool = True) -> None:
        super().__init__()
        self.time_embedding = copy.deepcopy(unet.time_embedding)
        base = unet.conv_in
        if init_from_backbone:  # the shared rule: the channels that fit copied, the rest zero
            self.conv_in = resize_conv2d(base, in_channels=in_channels)
        else:
            self.conv_in = nn.Conv2d(in_channels, base.out_channels, base.kernel_size, padding=base.padding,
                                     device=base.weight.device, dtype=base.weight.dtype)
        self.down_blocks = copy.deepcopy(unet.down_blocks)
        self.mid_block = copy.deepcopy(unet.mid_block)


class ConditionalAdapterUNet(nn.Module):
    """Backbone UNet + condition-encoder copy (CoDi Eq. 5.3 ``mu_gate`` or ``controlnet`` zero-convs).

    Args:
        backbone: a diffusers ``UNet2DConditionModel`` (the pretrained text-to-image LDM).
        condition_channels: channels of the condition tensor ``c`` (4 for a VAE latent, 5 for a
            masked-image latent plus the mask).
        mode: ``'mu_gate'``, ``'controlnet'`` or ``'concat'``.
        mu_granularity: ``'global'`` or ``'per_level'`` (``mu_gate`` only).
        mu_init: initial value of mu (0 in the thesis; other values only for tests/ablations).
        hint: ``controlnet`` only: ``'latent'`` (one zero 3x3 conv on the latent condition) or ``'pixel'``
            (ControlNet's conditioning embedding on the pixel condition, ``hint_channels`` wide).
        hint_channels: channels of the pixel embedding (ControlNet's 16, 32, 96, 256: three stride-2 steps,
            the VAE's factor 8).
    """

    def __init__(
        self,
        backbone: nn.Module,
        condition_channels: int = 4,
        mode: str = "mu_gate",
        mu_granularity: str = "global",
        mu_init: float = 0.0,
        hint: str = "latent",
        hint_channels: tuple[int, ...] = (16, 32, 96, 256),
    ) -> None:
        super().__init__()
        if hint not in ("latent", "pixel") or (hint == "pixel" and mode != "controlnet"):
            raise ValueError(f"hint={hint!r}: 'latent', or 'pixel' with adapter mode 'controlnet' (got mode {mode!r})")
        self.hint_input = hint
        if mode not in ADAPTER_MODES:
            raise ValueError(f"adapter mode {mode!r} is not one of {list(ADAPTER_MODES)}")
        if mu_granularity not in MU_GRANULARITIES:
            raise ValueError(f"mu_granularity {mu_granularity!r} is not one of {list(MU_GRANULARITIES)}")
        self.backbone = backbone
        self.mode = mode
        self.mu_granularity = mu_granularity
        self.condition_channels = int(condition_channels)
        self.config = backbone.config  # sample shape etc. are the backbone's
        device, dtype = backbone.conv_in.weight.device, backbone.conv_in.weight.dtype
        self.latent_channels = int(backbone.conv_in.in_channels)
        self.guidance_embedding: Optional[nn.Linear] = None
        if mode == "concat":
            expand_conv_in(backbone, self.latent_channels + self.condition_channels)
        elif mode == "mu_gate":
            self.encoder = UNetEncoderCopy(backbone, self.condition_channels)
            levels = 1 if mu_granularity == "global" else len(backbone.down_blocks) + 2
            self.mu = nn.Parameter(torch.full((levels,), float(mu_init), device=device, dtype=dtype))
        else:
            self.encoder = UNetEncoderCopy(backbone, backbone.conv_in.in_channels)
            if device.type != "meta":
                self.encoder.conv_in.load_state_dict(backbone.conv_in.state_dict())
            c0 = backbone.conv_in.out_channels
            if hint == "pixel":
                from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding

                self.hint = ControlNetConditioningEmbedding(c0, self.condition_channels, tuple(hint_channels)).to(
                    device=device, dtype=dtype)
            else:
                self.hint = zero_module(nn.Conv2d(self.condition_channels, c0, 3, padding=1, device=device, dtype=dtype))
            skip_channels = [c0]
            for block in backbone.down_blocks:
                out = block.resnets[-1].out_channels
                skip_channels += [out] * len(block.resnets)
                if getattr(block, "downsamplers", None):
                    skip_channels.append(out)
            self.zero_convs = nn.ModuleList(
                zero_module(nn.Conv2d(ch, ch, 1, device=device, dtype=dtype)) for ch in skip_channels
            )
            mid = backbone.mid_block.resnets[-1].out_channels
            self.zero_mid = zero_module(nn.Conv2d(mid, mid, 1, device=device, dtype=dtype))

    # ------------------------------------------------------------------ parameter sets
    def adapter_parameters(self) -> list[nn.Parameter]:
        """The copied branch (+ mu or zero-convs): what PE-CoDi trains."""
        return [p for n, p in self.named_parameters() if not n.startswith("backbone.")]

    def set_backbone_trainable(self, trainable: bool) -> None:
        """PE-CoDi freezes the backbone (``False``); CoDi trains everything (``True``)."""
        self.backbone.requires_grad_(trainable)

    def enable_guidance_embedding(self) -> None:
        """Add the zero-initialised ``w`` embedding (module docstring); idempotent."""
        if self.guidance_embedding is not None:
            return
        unet = self.backbone
        proj_dim = int(unet.config.block_out_channels[0])
        emb_dim = int(unet.time_embedding.linear_2.out_features)
        weight = unet.conv_in.weight
        self.guidance_embedding = zero_module(nn.Linear(proj_dim, emb_dim, device=weight.device, dtype=weight.dtype))

    def enable_gradient_checkpointing(self) -> None:
        """Checkpoint the backbone's blocks and the encoder copy's (diffusers' ``gradient_checkpointing`` flags)."""
        self.backbone.enable_gradient_checkpointing()
        func = getattr(next((m for m in self.backbone.modules() if getattr(m, "gradient_checkpointing", False)), None),
                       "_gradient_checkpointing_func", None)
        if func is None:
            return
        for module in (self.encoder.modules() if hasattr(self, "encoder") else ()):
            if hasattr(module, "gradient_checkpointing"):
                module._gradient_checkpointing_func = func
                module.gradient_checkpointing = True

    def parameter_counts(self) -> dict[str, int]:
        return {"backbone": count_parameters(self.backbone), "adapter": sum(p.numel() for p in self.adapter_parameters())}

    def _gate(self, level: int) -> Tensor:
        return self.mu[0] if self.mu.numel() == 1 else self.mu[level]

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        sample: Tensor,
        timestep: Tensor,
        encoder_hidden_states: Optional[Tensor] = None,
        condition: Optional[Tensor] = None,
        return_dict: bool = False,
        guidance: Optional[Tensor] = None,
    ) -> Tensor:
        unet = self.backbone
        if self.mode == "concat":
            if condition is None:
                condition = sample.new_zeros(sample.shape[0], self.condition_channels, *sample.shape[2:])
            sample, condition = torch.cat([sample, condition.to(sample.dtype)], dim=1), None
        if condition is None and guidance is None:
            return unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]
        timestep = torch.as_tensor(timestep, device=sample.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(sample.shape[0])
        t_emb = unet.get_time_embed(sample=sample, timestep=timestep)
        w_emb = self._guidance(sample, guidance)
        emb = unet.time_embedding(t_emb) + w_emb
        ctx = encoder_hidden_states
        h = unet.conv_in(sample)
        if condition is None:  # the plain backbone (concat, or a w-conditioned call without condition)
            skips = [h]
            for block in unet.down_blocks:
                h, res = _block_call(block, h, emb, ctx)
                skips += list(res)
            return self._decode(_mid_call(unet.mid_block, h, emb, ctx), emb, ctx, skips)
        enc = self.encoder
        c_emb = enc.time_embedding(t_emb) + w_emb
        if self.mode == "mu_gate":
            hc = enc.conv_in(condition.to(h.dtype))
            mu = self._gate(0)
            h = torch.lerp(h, hc, mu)
            skips = [h]
            for i, (block, cblock) in enumerate(zip(unet.down_blocks, enc.down_blocks)):
                h, res = _block_call(block, h, emb, ctx)
                hc, cres = _block_call(cblock, hc, c_emb, ctx)
                mu = self._gate(i + 1)
                h = torch.lerp(h, hc, mu)
                skips += [torch.lerp(r, cr, mu) for r, cr in zip(res, cres)]
            h = _mid_call(unet.mid_block, h, emb, ctx)
            hc = _mid_call(enc.mid_block, hc, c_emb, ctx)
            h = torch.lerp(h, hc, self._gate(len(unet.down_blocks) + 1))
        else:
            hc = enc.conv_in(sample) + self.hint(condition.to(h.dtype))
            skips, cskips = [h], [hc]
            for block, cblock in zip(unet.down_blocks, enc.down_blocks):
                h, res = _block_call(block, h, emb, ctx)
                hc, cres = _block_call(cblock, hc, c_emb, ctx)
                skips += list(res)
                cskips += list(cres)
            skips = [s + zc(cs) for s, cs, zc in zip(skips, cskips, self.zero_convs)]
            h = _mid_call(unet.mid_block, h, emb, ctx)
            hc = _mid_call(enc.mid_block, hc, c_emb, ctx)
            h = h + self.zero_mid(hc)
        return self._decode(h, emb, ctx, skips)

    def _guidance(self, sample: Tensor, guidance: Optional[Tensor]):
        """The ``w`` embedding (0 without ``guidance``); ``guidance`` needs :meth:`enable_guidance_embedding`."""
        if guidance is None:
            return 0.0
        if self.guidance_embedding is None:
            raise RuntimeError("a guidance input needs enable_guidance_embedding() (GuidedDistillation's guidance_range)")
        w = torch.as_tensor(guidance, device=sample.device, dtype=torch.float32).reshape(-1).expand(sample.shape[0])
        sinusoid = self.backbone.get_time_embed(sample=sample, timestep=w * 1000.0)
        return self.guidance_embedding(sinusoid)

    def _decode(self, h: Tensor, emb: Tensor, ctx: Optional[Tensor], skips: list[Tensor]) -> Tensor:
        unet = self.backbone
        skips = list(skips)
        for i, block in enumerate(unet.up_blocks):
            n = len(block.resnets)
            res, skips = tuple(skips[-n:]), skips[:-n]
            size = skips[-1].shape[2:] if (i < len(unet.up_blocks) - 1 and skips) else None
            if getattr(block, "has_cross_attention", False):
                h = block(hidden_states=h, temb=emb, res_hidden_states_tuple=res, encoder_hidden_states=ctx,
                          upsample_size=size)
            else:
                h = block(hidden_states=h, temb=emb, res_hidden_states_tuple=res, upsample_size=size)
        if unet.conv_norm_out is not None:
            h = unet.conv_act(unet.conv_norm_out(h))
        return unet.conv_out(h)


__all__ = ["ADAPTER_MODES", "ConditionalAdapterUNet", "PlainBackboneUNet", "UNetEncoderCopy"]


class PlainBackboneUNet(nn.Module):
    """The backbone alone, for CoDi's condition-free ``task: t2i`` (thesis 001 Sec. 2.3.5: text-to-image
    consistency distillation of the scaling family): no encoder copy, no gate, so the distilled network has
    exactly the member's FLOPs. Same interface and ``backbone.*`` keys as :class:`ConditionalAdapterUNet`;
    ``condition`` must be ``None``."""

    mode = "none"

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.config = backbone.config
        self.guidance_embedding = None

    def adapter_parameters(self) -> list[nn.Parameter]:
        return []

    def set_backbone_trainable(self, trainable: bool) -> None:
        self.backbone.requires_grad_(trainable)

    def enable_gradient_checkpointing(self) -> None:
        self.backbone.enable_gradient_checkpointing()

    def parameter_counts(self) -> dict[str, int]:
        return {"backbone": count_parameters(self.backbone), "adapter": 0}

    def forward(self, sample: Tensor, timestep: Tensor, encoder_hidden_states: Optional[Tensor] = None,
                condition: Optional[Tensor] = None, return_dict: bool = False) -> Tensor:
        if condition is not None:
            raise ValueError("task t2i has no condition input (PlainBackboneUNet got a condition tensor)")
        return self.backbone(sample, timestep, encoder_hidden_states=encoder_hidden_states).sample

"""The CFLD network: frozen SD UNet + Swin encoder + PRD + HGA + pose adapter (seed 003, Sec. 3, Fig. 2).

Data flow (digest 002-003 A2)::

    source (3 x 256 x 256) --Swin H_S--> f1, f2, f3, f4
    f4 --PRD H_D--> prompt c (16 x 768), replacing the text prompt in every cross-attention
    f1..f3 --HGA phi_A (one per up-block cross-attention)--> query biases
    pose (21 x 256 x 256) --adapter H_P--> features added after down blocks 1-3
    UNet(z_t, k, c, pose features, query biases) -> epsilon

Trainable (paper Table 1): Swin 87.0M, HGA 22.5M, PRD 97.7M, adapter 30.6M and, inside the
otherwise frozen UNet, the ``to_k`` / ``to_v`` projections of the up-block cross-attentions
(10.3M): 248.2M. Ablation B4 also trains ``to_q`` (``unet_trainable``).

Up-block cross-attentions are paired with the Swin level of the same token grid (source side =
4 x latent side), enumerated generically so tiny and full configurations share one code path
(digest C1).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
from diffusers import UNet2DConditionModel
from torch import Tensor, nn

from diffusion.denoisers import unwrap_output
from lightning_modules.cfld.hga import AppearanceEncoder, QueryBiasContext, StridedAppearanceEncoder, install_query_bias
from lightning_modules.cfld.pose import POSE_CHANNELS, PoseAdapter
from lightning_modules.cfld.prd import PerceptionRefinedDecoder, SwinLinearPrompt, ZeroPrompt
from lightning_modules.cfld.swin import SwinEncoder

PROMPT_TYPES = ("prd", "swin_linear", "multiscale", "clip")
UNET_PROJECTIONS = ("to_q", "to_k", "to_v")

#: Stable Diffusion 1.5's UNet (diffusers ``unet/config.json``; digest A3) for meta-device checks.
SD15_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280, 1280],
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}


class CFLDNetwork(nn.Module):
    """All networks of CFLD but the VAE. See the module docstring.

    Args:
        unet: a diffusers ``UNet2DConditionModel`` (frozen here except the chosen projections).
        latent_size: latent side (64 for 512x512 images and SD's x8 VAE).
        source_size: side of the square source image given to Swin (256).
        swin: keyword arguments of :class:`SwinEncoder` (``img_size`` is ``source_size``).
        prompt: ``"prd"`` (default), ``"swin_linear"`` (ablation B5) or ``"multiscale"`` (ablation B1:
            zero prompt, multi-scale appearance features added to the up-block cross-attention context)
            or ``"clip"`` (ablation B2: frozen CLIP vision tower + mapper, no Swin, no HGA; needs ``clip``).
        clip: the CLIP vision tower for ``prompt="clip"`` (frozen).
        prd: keyword arguments of :class:`PerceptionRefinedDecoder` (``num_queries``, ``depth``, ``num_heads``,
            ``layout``: ``"authors"`` default, ``"pre_norm"``).
        hga: use hybrid-granularity attention (False: ablations B3/B4).
        hga_layers: K transformer layers per appearance encoder (4).
        hga_head_dim: head width of the appearance encoders (32).
        unet_trainable: projections of the up-block cross-attentions that train (``to_k``, ``to_v``).
        pose_channels: channels of the pose map (21).
    """

    def __init__(
        self,
        unet: UNet2DConditionModel,
        latent_size: int,
        source_size: int = 256,
        swin: Optional[Mapping[str, Any]] = None,
        swin_checkpoint: Optional[str] = None,
        prompt: str = "prd",
        prd: Optional[Mapping[str, Any]] = None,
        hga: bool = True,
        hga_layers: int = 4,
        hga_head_dim: int = 32,
        unet_trainable: Sequence[str] = ("to_k", "to_v"),
        pose_channels: int = POSE_CHANNELS,
        clip: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        if prompt not in PROMPT_TYPES:
            raise ValueError(f"prompt={prompt!r} is not one of {list(PROMPT_TYPES)}")
        bad = [p for p in unet_trainable if p not in UNET_PROJECTIONS]
        if bad:
            raise ValueError(f"unet_trainable {bad} not in {list(UNET_PROJECTIONS)}")
        config = unet.config
        down = list(config.down_block_types)
        if source_size != 4 * latent_size:
            raise ValueError(
                f"source_size ({source_size}) must be 4 x the latent side ({latent_size}): Swin's first level "
                "must have the latent grid (digest C2)"
            )
        self.unet = unet
        self.latent_size = latent_size
        context_dim = int(config.cross_attention_dim)
        self.prompt_type = prompt
        if prompt == "clip":
            if clip is None:
                raise ValueError('prompt="clip" (ablation B2) needs a CLIP vision tower')
            if hga:
                raise ValueError('prompt="clip" (ablation B2) has no Swin features for HGA; set hga: false')
            from lightning_modules.cfld.clip_prompt import CLIPImagePrompt

            self.swin = None
            self.prompt_head = CLIPImagePrompt(clip, dim=context_dim)
            self.null_prompt = nn.Parameter(torch.randn(1, 1, context_dim))
            self.bias_context = QueryBiasContext()
            self.cross_attentions = install_query_bias(unet, self.bias_context)
            self.appearance_encoders, self.appearance_levels = None, []
            self._finish(unet, config, down, pose_channels, unet_trainable)
            return
        self.swin = SwinEncoder(img_size=source_size, checkpoint=swin_checkpoint, **dict(swin or {}))
        last = self.swin.channels[-1]
        tokens = self.swin.grids[-1] ** 2
        if prompt == "prd":
            self.prompt_head: nn.Module = PerceptionRefinedDecoder(dim=context_dim, kv_dim=last, num_tokens=tokens, **dict(prd or {}))
            prompt_tokens = self.prompt_head.num_queries
        elif prompt == "swin_linear":
            self.prompt_head = SwinLinearPrompt(dim=context_dim, kv_dim=last)
            prompt_tokens = tokens
        else:
            self.prompt_head = ZeroPrompt(dim=context_dim, num_tokens=tokens)
            prompt_tokens = tokens
        # learnable unconditional prompt (1 x Q x C, randn init [R]) for condition dropout and guidance
        self.null_prompt = nn.Parameter(torch.randn(1, prompt_tokens, context_dim))

        self.bias_context = QueryBiasContext()
        multiscale = prompt == "multiscale"
        self.cross_attentions = install_query_bias(unet, self.bias_context, "context" if multiscale else "query")
        self.appearance_encoders: Optional[nn.ModuleList] = None
        self.appearance_levels: list[int] = []
        if hga or multiscale:
            encoders = []
            num_up = len(unet.up_blocks)
            for _, attn, block_index, channels in self.cross_attentions:
                grid = latent_size // 2 ** (num_up - 1 - block_index)
                if grid not in self.swin.grids:
                    raise ValueError(f"no Swin level has the {grid}x{grid} grid of up block {block_index}")
                level = self.swin.grids.index(grid)
                self.appearance_levels.append(level)
                if multiscale:  # B1: every level reduced to the f4 grid, bias of the prompt width on K/V
                    stride = grid // self.swin.grids[-1]
                    encoder: nn.Module = StridedAppearanceEncoder(
                        self.swin.channels[level], context_dim, stride, num_layers=hga_layers, head_dim=hga_head_dim
                    )
                else:
                    encoder = AppearanceEncoder(self.swin.channels[level], channels, num_layers=hga_layers, head_dim=hga_head_dim)
                encoders.append(encoder)
            self.appearance_encoders = nn.ModuleList(encoders)
        self._finish(unet, config, down, pose_channels, unet_trainable)

    def _finish(self, unet: nn.Module, config: Any, down: list, pose_channels: int, unet_trainable: Sequence[str]) -> None:
        n_cross_down = sum("CrossAttn" in t for t in down)
        adapter_channels = list(config.block_out_channels)[:n_cross_down]
        self.pose_adapter = PoseAdapter(adapter_channels, pose_channels, unshuffle=4, norm_groups=int(config.norm_num_groups))
        self.unet_trainable = tuple(unet_trainable)
        self.freeze_unet()

    # ------------------------------------------------------------------ parameters
    def freeze_unet(self) -> None:
        """Freeze the UNet except the chosen projections of the up-block cross-attentions (Sec. 3.2, HGA paragraph)."""
        self.unet.requires_grad_(False)
        for _, attn, _, _ in self.cross_attentions:
            for name in self.unet_trainable:
                getattr(attn, name).requires_grad_(True)

    def parameter_groups(self) -> dict[str, int]:
        """Trainable parameters per part (the rows of the paper's Table 1)."""

        def count(module: Optional[nn.Module]) -> int:
            return 0 if module is None else sum(p.numel() for p in module.parameters() if p.requires_grad)

        return {
            "swin (H_S)": count(self.swin),
            "hga (H_A)": count(self.appearance_encoders),
            "prd (H_D)": count(self.prompt_head),
            "pose adapter (H_P)": count(self.pose_adapter),
            "unet k/v (H_N)": count(self.unet),
            "null prompt": self.null_prompt.numel() if self.null_prompt.requires_grad else 0,
        }

    # ------------------------------------------------------------------ conditions
    def appearance(self, source: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Source image in [-1, 1] -> ``(prompt [B, Q, C], query biases per up cross-attention)``."""
        if self.swin is None:  # ablation B2: CLIP prompt only
            return self.prompt_head(source), []
        features = self.swin(source)
        prompt = self.prompt_head(features[-1])
        biases: list[Tensor] = []
        if self.appearance_encoders is not None:
            biases = [enc(features[level]) for enc, level in zip(self.appearance_encoders, self.appearance_levels)]
        return prompt, biases

    def pose_features(self, pose_map: Tensor) -> list[Tensor]:
        return self.pose_adapter(pose_map)

    # ------------------------------------------------------------------ denoiser
    def forward(
        self,
        latents: Tensor,
        timesteps: Tensor,
        prompt: Tensor,
        pose_features: Sequence[Tensor],
        biases: Optional[Sequence[Tensor]] = None,
    ) -> Tensor:
        """Noise prediction of the UNet with the CFLD conditions (all batch-first, same batch)."""
        self.bias_context.set(list(biases) if biases else None)
        try:
            out = self.unet(
                latents,
                timesteps,
                encoder_hidden_states=prompt.to(latents.dtype),
                down_intrablock_additional_residuals=[f.to(latents.dtype) for f in pose_features],
            )
        finally:
            self.bias_context.set(None)
        return unwrap_output(out)

"""The Fit-Check denoiser: SVD's spatio-temporal UNet with widened conv_in, PoseNet and MRA.

Thesis 000, Ch. 4, §4.3 (digest §3.2). The trainable network of the main stage:

* ``unet``: diffusers ``UNetSpatioTemporalConditionModel`` (SVD img2vid-xt / MimicMotion). Its
  input is the noisy latent (4 ch) concatenated with the VAE feature
  ``f_v = [E_v(I'_fr), E_v(I'_bk), E_v(I'_bg)]`` (12 ch) duplicated over the frames: 16 channels.
  The pretrained conv_in takes 8 (noisy + SVD's conditioning image); :func:`widen_conv_in`
  keeps those weights (the conditioning-image slot becomes the front slot) and zero-initialises
  the back and background slots ([GAP], digest §3.2: the thesis does not say how conv_in was
  widened), so the widened UNet computes exactly the pretrained function at start.
* ``pose_net``: MimicMotion's PoseNet; its per-frame output is added to conv_in's output
  (a forward hook on ``unet.conv_in``, the place MimicMotion adds it).
* spatial self-attention replaced by the parameter-free multi-reference attention
  (:mod:`lightning_modules.components.multi_reference_attention`).
* ``reference_net`` (ablation "Naive + RefNet" only): a trainable UNet copy whose spatial
  self-attention features of the front and back latents the denoiser attends to
  (:mod:`lightning_modules.fitcheck.reference_net`).

Call: ``network(x_t [B, F, 4, h, w], c_noise [B], ref_latents [B, 12, h, w],
image_embeds [B, 1, D], pose_images [B, F, 3, H, W], pose_keep [B], added_time_ids [B, 3])`` ->
the v-prediction ``[B, F, 4, h, w]``. ``pose_keep`` (1 / 0 per sample) is the pose condition's
dropout / guidance switch: zero removes the pose feature (the thesis's "set to zero").
"""
from __future__ import annotations

import re
from typing import Optional

import torch
from torch import Tensor, nn

from lightning_modules.components.multi_reference_attention import ReferenceFrames, set_multi_reference_attention
from lightning_modules.components.unet_inputs import resize_unet_channels
from lightning_modules.fitcheck.pose_net import PoseNet
from lightning_modules.fitcheck.reference_net import ReferenceNet

#: Parameter names of the temporal layers of ``UNetSpatioTemporalConditionModel`` (frozen in the
#: image fine-tuning stage, §4.3.4): temporal res-blocks, temporal transformer blocks, their
#: frame-position embeddings and the learned spatial/temporal mixing factors.
TEMPORAL_PARAMETER = re.compile(r"(temporal_res_block|temporal_transformer_blocks|time_pos_embed|time_mixer)")


def widen_conv_in(unet: nn.Module, in_channels: int) -> nn.Module:
    """Give ``unet.conv_in`` ``in_channels`` inputs: old weights kept, new input channels zero.

    The shared rule of :func:`lightning_modules.components.unet_inputs.resize_conv2d`; updates
    ``unet.config.in_channels`` so a saved UNet reloads widened.
    """
    if unet.conv_in.in_channels > in_channels:
        raise ValueError(f"conv_in already has {unet.conv_in.in_channels} > {in_channels} input channels")
    return resize_unet_channels(unet, in_channels=in_channels)


class FitCheckNetwork(nn.Module):
    """UNet + PoseNet with multi-reference attention; see the module docstring for the call."""

    def __init__(
        self,
        unet: nn.Module,
        pose_net: PoseNet,
        in_channels: int = 16,
        multi_reference_attention: bool = True,
        references: tuple[int, int] = (0, 1),
        reference_net: bool = False,
        reference_c_noise: float = 0.0,
    ) -> None:
        super().__init__()
        if reference_net and multi_reference_attention:
            raise ValueError("reference_net and multi_reference_attention both replace the spatial self-attention; "
                             "Table 4.1's 'Naive + RefNet' has no multi-reference attention")
        # "Naive + RefNet" (reference_net.py): a copy of the pretrained 8-input UNet, made before the widening
        self.reference_net = ReferenceNet(unet) if reference_net else None
        self.reference_c_noise = float(reference_c_noise)
        self.unet = widen_conv_in(unet, in_channels)
        self.pose_net = pose_net
        self.frames = ReferenceFrames(references=tuple(references))
        self.multi_reference_attention = bool(multi_reference_attention)
        if self.multi_reference_attention:
            set_multi_reference_attention(self.unet, self.frames)
        if self.reference_net is not None:
            self.reference_net.install(self.unet)
        self._pose_residual: Optional[Tensor] = None
        self.unet.conv_in.register_forward_hook(self._add_pose)

    @property
    def config(self):  # noqa: ANN201 - diffusers-style access for network_info helpers
        return self.unet.config

    def _add_pose(self, module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        if self._pose_residual is None:
            return output
        return output + self._pose_residual.to(output.dtype)

    def temporal_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.unet.named_parameters() if TEMPORAL_PARAMETER.search(n)]

    def forward(
        self,
        x_t: Tensor,
        c_noise: Tensor,
        ref_latents: Tensor,
        image_embeds: Tensor,
        pose_images: Tensor,
        pose_keep: Tensor,
        added_time_ids: Tensor,
    ) -> Tensor:
        batch, frames = x_t.shape[:2]
        self.frames.num_frames = frames
        self.frames.latent_size = (int(x_t.shape[-2]), int(x_t.shape[-1]))
        if self.reference_net is not None:  # front and back latents (channels 0-3, 4-7 of the VAE feature)
            per_sample = ref_latents if ref_latents.ndim == 4 else ref_latents[:, 0]
            refs = torch.stack([per_sample[:, 0:4], per_sample[:, 4:8]], dim=1).to(x_t.dtype)
            self.reference_net.record(refs, torch.tensor(self.reference_c_noise, device=x_t.device),
                                      image_embeds, added_time_ids)
        if ref_latents.ndim == 4:
            ref_latents = ref_latents.unsqueeze(1).expand(-1, frames, -1, -1, -1)
        sample = torch.cat([x_t, ref_latents.to(x_t.dtype)], dim=2)
        pose = self.pose_net(pose_images.flatten(0, 1).to(x_t.dtype))
        keep = pose_keep.to(pose.dtype).repeat_interleave(frames).view(-1, 1, 1, 1)
        self._pose_residual = pose * keep
        try:
            out = self.unet(
                sample,
                c_noise.to(x_t.dtype).reshape(-1).expand(batch) if c_noise.numel() == 1 else c_noise.to(x_t.dtype),
                encoder_hidden_states=image_embeds.to(x_t.dtype),
                added_time_ids=added_time_ids.to(x_t.dtype),
                return_dict=False,
            )[0]
        finally:
            self._pose_residual = None
            if self.reference_net is not None:
                self.reference_net.bank.clear()
        return out

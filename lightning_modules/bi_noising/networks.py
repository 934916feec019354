"""Bi-Noising networks (thesis 001 Ch. 8, §8.3.2-§8.3.4, Table 8.4): f_phi and the guided-diffusion prior eps_theta.

* :class:`ConditionalADMUNet` is ``f_phi(x0, y_t, t)``: the suite's ADM UNet
  (:class:`lightning_modules.components.adm_unet.ADMUNet`) with the condition concatenated to the
  noisy image at the input ("the additional input x0 and y0 are concatenated and passed to the input
  layer", §8.3.2; SR3 style). ``condition=None`` is the nonparametric variant's null token
  (§8.4.5): [GAP] the thesis does not say what the token is; we use an all-zero condition image
  (the mid-grey image in [-1, 1]), which needs no extra parameters so the count stays 93.6M.
* The prior ``eps_theta`` is a plain unconditional :class:`ADMUNet`; :func:`load_prior_weights`
  loads it from a guided-diffusion checkpoint (``openai/guided-diffusion``'s ``UNetModel`` key
  names: ``time_embed.{0,2}``, ``input_blocks.<i>.<j>.{in_layers,emb_layers,out_layers,
  skip_connection,norm,qkv,proj_out,op}``, ``middle_block.{0,1,2}``, ``output_blocks.<i>.<j>``
  (``conv`` for upsampling), ``out.{0,2}``; the suite's ADM UNet uses the same names, so the mapping
  is the identity on them) or from the EMA export of the in-suite prior config (keys prefixed
  ``network.``), with the layout checked before loading (resolution / channels named in the error).

Paper size (Table 8.4: 93.6M per model): guided-diffusion's FFHQ-256 configuration as used by
ILVR / P2 ([ext] ``num_channels 128, num_res_blocks 1, attention_resolutions 16,
num_head_channels 64, channel_mult (1,1,2,2,4,4), learn_sigma, resblock_updown,
use_scale_shift_norm``): 93.56M unconditional, 93.57M with the 3 extra condition channels.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch import Tensor, nn

from lightning_modules.components.adm_unet import ADMUNet
from lightning_modules.components.released_weights import (ReleasedWeightsError, check_released_state,
                                                            read_released_state)


class ConditionalADMUNet(nn.Module):
    """``f_phi``: an ADM UNet over ``[y_t, condition]`` (module docstring); returns epsilon only."""

    def __init__(self, image_channels: int = 3, condition_channels: int = 3, **adm: Any) -> None:
        super().__init__()
        for key in ("in_channels", "out_channels"):
            if key in adm:
                raise ValueError(f"ConditionalADMUNet sets {key} itself (image_channels + condition_channels)")
        self.image_channels, self.condition_channels = int(image_channels), int(condition_channels)
        self.unet = ADMUNet(in_channels=self.image_channels + self.condition_channels, out_channels=self.image_channels, **adm)

    @property
    def downsample_factor(self) -> int:
        return self.unet.downsample_factor

    def forward(self, x_t: Tensor, timesteps: Tensor, condition: Optional[Tensor] = None) -> Tensor:
        if condition is None:
            condition = x_t.new_zeros(x_t.shape[0], self.condition_channels, *x_t.shape[2:])
        if condition.shape[0] != x_t.shape[0] or tuple(condition.shape[2:]) != tuple(x_t.shape[2:]) \
                or condition.shape[1] != self.condition_channels:
            raise ValueError(f"condition must be [B, {self.condition_channels}, H, W] matching x_t {tuple(x_t.shape)}, "
                             f"got {tuple(condition.shape)}")
        return self.unet(torch.cat([x_t, condition.to(x_t.dtype)], dim=1), timesteps)[:, : self.image_channels]


class EpsilonOnly(nn.Module):
    """A (learned-sigma) ADM network seen as an epsilon network: the first ``image_channels`` outputs."""

    def __init__(self, network: ADMUNet, image_channels: int = 3) -> None:
        super().__init__()
        self.network, self.image_channels = network, int(image_channels)

    def forward(self, x_t: Tensor, timesteps: Tensor) -> Tensor:
        return self.network(x_t, timesteps)[:, : self.image_channels]


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A ``.pt`` / ``.pth`` / ``.safetensors`` state dict (safe load), common wrapper prefixes stripped."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"model.prior_checkpoint={str(path)!r} does not exist (a guided-diffusion .pt, e.g. "
                                f"ffhq_10m.pt / 256x256_diffusion_uncond.pt, or the bi_noising_prior EMA export)")
    # e.g. the in-suite export's ``network.network.`` (DDPM module -> EpsilonOnly -> ADMUNet) strips twice
    state = read_released_state(file, key="model.prior_checkpoint", containers=("state_dict",))
    from lightning_modules.bi_noising.released import PRIOR_KEY_MAP

    return PRIOR_KEY_MAP.apply(state, source=f"model.prior_checkpoint={str(path)!r}")


def _layout(state: Mapping[str, Tensor]) -> dict[str, Any]:
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"input_blocks\.(\d+)\.", k))}
    attn = sorted({int(m.group(1)) for k in state if (m := re.match(r"input_blocks\.(\d+)\.\d+\.qkv\.weight", k))})
    first, last = state.get("input_blocks.0.0.weight"), state.get("out.2.weight")
    return {"input_blocks": len(blocks), "attention_blocks": attn,
            "in_channels": None if first is None else int(first.shape[1]),
            "out_channels": None if last is None else int(last.shape[0]),
            "model_channels": None if first is None else int(first.shape[0])}


def load_prior_weights(network: ADMUNet, path: str | Path) -> ADMUNet:
    """Load a guided-diffusion (or in-suite) prior strictly, after a layout check that names the mismatch."""
    state = read_state_dict(path)
    want, have = _layout(network.state_dict()), _layout(state)
    if have["in_channels"] is None:
        raise ReleasedWeightsError(f"{path}: no 'input_blocks.0.0.weight'; not a guided-diffusion UNet state dict")
    problems = []
    if have["in_channels"] != want["in_channels"] or have["out_channels"] != want["out_channels"]:
        problems.append(f"channel layout {have['in_channels']} in / {have['out_channels']} out (learn_sigma doubles out) "
                        f"but the prior config has {want['in_channels']} in / {want['out_channels']} out")
    if have["input_blocks"] != want["input_blocks"] or have["attention_blocks"] != want["attention_blocks"]:
        problems.append(f"{have['input_blocks']} input blocks with attention at {have['attention_blocks']} (another "
                        f"resolution's layout: channel_mult / attention_resolutions) but the prior config has "
                        f"{want['input_blocks']} with attention at {want['attention_blocks']}")
    if have["model_channels"] != want["model_channels"]:
        problems.append(f"num_channels {have['model_channels']} but the prior config has {want['model_channels']}")
    if problems:
        raise ReleasedWeightsError(f"prior checkpoint {path} does not fit model.prior: " + "; ".join(problems))
    check_released_state(network, state, f"model.prior_checkpoint={str(path)!r}", "guided-diffusion prior",
                         "Check model.prior against the checkpoint's guided-diffusion flags.")
    network.load_state_dict(state, strict=True)
    return network


__all__ = ["ConditionalADMUNet", "EpsilonOnly", "load_prior_weights", "read_state_dict"]

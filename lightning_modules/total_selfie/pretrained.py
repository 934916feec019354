"""Loading Total Selfie's starting weights (thesis 000, Ch. 3, §3.5.2).

* ``pretrained_pbe``: the Paint-by-Example checkpoint in diffusers' ``PaintByExamplePipeline``
  layout (``unet/`` 9-channel ``UNet2DConditionModel``, ``vae/`` ``AutoencoderKL``,
  ``image_encoder/`` ``PaintByExampleImageEncoder``: CLIP ViT-L/14 + mapper + LayerNorm +
  ``proj_out`` + ``uncond_vector``), e.g. ``Fantasy-Studio/Paint-by-Example``. "We initialize all
  network weights using the pretrained model provided by Paint-By-Example, except for the adapted
  linear layer L (zero-initialized)."
* ``released_checkpoint``: the authors' trained selfie-conditioned model (README of
  ArmastusChen/total_selfie: Google Drive ``pretrained_weights/selfie_conditioned_inpainting/
  pbe_selfie2full``, converted to diffusers format by their ``convert_ckpt.sh``), the same layout
  with ``image_encoder/proj_out.weight`` of shape ``[768, 4 * 1024]`` (their
  ``modify_checkpoints_mlp.py``). Its ``image_encoder`` tensors are imported through
  ``components.released_weights`` (PbE key names; ``proj_out`` -> ``projection``). [EXT] The
  Drive files were not available to check; the key names are those of the PbE encoder class the
  authors' pipeline imports.
* ``controlnet_path``: any SD-1.x ``ControlNetModel`` folder (``lllyasviel/control_v11p_sd15_canny``
  by default; ``..._openpose`` for the OpenPose option).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch import nn

from lightning_modules.components.pretrained_paths import build_diffusers_model, require_files, resolve_pretrained
from lightning_modules.components.released_weights import KeyMap, check_released_state, read_released_state
from lightning_modules.total_selfie.selfie_encoder import PbEImageEncoder, SelfieEmbedding, split_pbe_encoder

log = logging.getLogger(__name__)

PBE_SOURCE = "https://huggingface.co/Fantasy-Studio/Paint-by-Example (diffusers PaintByExamplePipeline: unet/, vae/, image_encoder/)"
RELEASED_SOURCE = ("ArmastusChen/total_selfie README: Google Drive folder pretrained_weights/selfie_conditioned_inpainting/"
                   "pbe_selfie2full (diffusers layout)")
CONTROLNET_SOURCE = {
    "canny": "https://huggingface.co/lllyasviel/control_v11p_sd15_canny",
    "openpose": "https://huggingface.co/lllyasviel/control_v11p_sd15_openpose",
}
RELEASED_ENCODER_MAP = KeyMap(rules=((r"^proj_out\.", "projection."),))


def build_pbe_parts(path: Optional[str], unet_config: Optional[Mapping[str, Any]], vae_config: Optional[Mapping[str, Any]],
                    image_encoder_config: Optional[Mapping[str, Any]], num_selfies: int, concat_axis: str,
                    zero_init: bool, key: str = "model.init_args.pretrained_pbe") -> tuple[nn.Module, nn.Module, nn.Module, SelfieEmbedding]:
    """``(unet, vae, clip_vision_tower, selfie_embedding)`` from the PbE folder or from config dicts."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPVisionConfig

    encoder_cls = PbEImageEncoder
    unet = build_diffusers_model(UNet2DConditionModel, key=key, path=path, subfolder="unet", config=unet_config, source=PBE_SOURCE)
    vae = build_diffusers_model(AutoencoderKL, key=key, path=path, subfolder="vae", config=vae_config, source=PBE_SOURCE)
    if path is None:
        if image_encoder_config is None:
            raise ValueError(f"{key} is null and no image_encoder_config (a CLIPVisionConfig dict) was given")
        config = dict(image_encoder_config)
        proj = int(config.pop("proj_size", config.get("projection_dim", 768)))
        encoder = encoder_cls(CLIPVisionConfig(**config), proj_size=proj)
    else:
        root = resolve_pretrained(path, key, PBE_SOURCE, subfolder="image_encoder")
        require_files(root / "image_encoder", key, ["config.json"], PBE_SOURCE)
        encoder = encoder_cls.from_folder(root / "image_encoder", key=key)
    if int(unet.config.in_channels) != 9:
        raise ValueError(f"{key}: the Paint-by-Example UNet must take 9 input channels (latent, masked-image latent, "
                         f"mask), got in_channels={unet.config.in_channels}")
    clip, head = split_pbe_encoder(encoder, num_selfies, concat_axis, zero_init)
    if int(unet.config.cross_attention_dim) != head.proj_size:
        raise ValueError(f"UNet cross_attention_dim={unet.config.cross_attention_dim} != selfie embedding size {head.proj_size}")
    return unet, vae, clip, head


def _weights_file(folder: Path, key: str) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin", "diffusion_pytorch_model.safetensors"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{key}: no weights file (model.safetensors / pytorch_model.bin) in {folder}. "
                            f"Where it comes from: {RELEASED_SOURCE}")


def load_released(path: str, unet: nn.Module, clip: nn.Module, head: SelfieEmbedding,
                  key: str = "model.init_args.released_checkpoint") -> None:
    """Fill UNet, CLIP tower and selfie embedding from the authors' ``pbe_selfie2full`` folder (strict)."""
    from diffusers import UNet2DConditionModel

    root = require_files(path, key, ["unet/config.json", "image_encoder/config.json"], RELEASED_SOURCE)
    released_unet = UNet2DConditionModel.from_pretrained(str(root), subfolder="unet", local_files_only=True)
    check_released_state(unet, released_unet.state_dict(), str(root / "unet"), "the 9-channel PbE UNet",
                         hint="model.init_args.unet_config must match the released UNet")
    unet.load_state_dict(released_unet.state_dict())
    state = read_released_state(_weights_file(root / "image_encoder", key), key=key)
    state = RELEASED_ENCODER_MAP.apply(state, source=str(root / "image_encoder"))
    clip_state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    head_state = {k: v for k, v in state.items() if not k.startswith("model.")}
    head_state["uncond_vector"] = head_state["uncond_vector"].reshape(head.uncond_vector.shape) if "uncond_vector" in head_state else None
    head_state = {k: v for k, v in head_state.items() if v is not None}
    check_released_state(clip, clip_state, str(root / "image_encoder"), "the CLIP vision tower")
    check_released_state(head, head_state, str(root / "image_encoder"), "mapper + LayerNorm + L + null embedding",
                         hint="concat_axis / num_selfies must match the release (feature axis, 4 selfies)")
    clip.load_state_dict(clip_state)
    head.load_state_dict(head_state)
    log.info("loaded the authors' Total Selfie model from %s", root)


def build_controlnet(path: Optional[str], config: Optional[Mapping[str, Any]], control: str,
                     key: str = "model.init_args.controlnet_path") -> Optional[nn.Module]:
    """The SD-1.x ``ControlNetModel`` (from ``path``, or ``config`` with random weights; ``None`` if neither)."""
    from diffusers import ControlNetModel

    if path is None and config is None:
        return None
    return build_diffusers_model(ControlNetModel, key=key, path=path, config=config,
                                 source=CONTROLNET_SOURCE.get(control, CONTROLNET_SOURCE["canny"]))


__all__ = ["CONTROLNET_SOURCE", "PBE_SOURCE", "RELEASED_SOURCE", "build_controlnet", "build_pbe_parts", "load_released"]

"""MimicMotion's released checkpoints -> the Fit Check UNet and PoseNet (issue 29).

Thesis 000, Ch. 4, §4.5.1 "Model Training": "We initialize the model using the pretrained
checkpoint 'MimicMotion_1.pth' from MimicMotion." What Tencent released
(huggingface.co/tencent/MimicMotion): ``MimicMotion_1.pth`` (the thesis's initialisation, 16
frames at 576x1024) and ``MimicMotion_1-1.pth`` (same architecture, trained for 72-frame
windows). Both are the ``state_dict`` of their ``MimicMotionModel`` wrapper restricted to the
trained parts, in fp16 (about 3.05 GB): ``unet.*`` (their copy of diffusers'
``UNetSpatioTemporalConditionModel``, the same parameter names, 8 input channels) and
``pose_net.*`` (``conv_layers.{0,2,...,14}``, ``final_proj``, ``scale`` of shape ``[1]``). Their
loader uses ``strict=False`` because the VAE, CLIP image encoder and scheduler come from SVD; the
key map here drops ``vae.*`` / ``image_encoder.*`` should a checkpoint carry them and otherwise
loads strictly through :func:`lightning_modules.components.released_weights.import_released`, so a
checkpoint for another width, depth or PoseNet is refused in one message.

The import runs **before** conv_in is widened 8 -> 16 (the widened channels start at zero), so
the released weights compute MimicMotion's function at step 0.
"""
from __future__ import annotations

from typing import Union
from pathlib import Path

from torch import nn

from lightning_modules.components.released_weights import KeyMap, import_released
from lightning_modules.fitcheck.pretrained import MissingWeightsError

MIMICMOTION_SOURCE = ("https://huggingface.co/tencent/MimicMotion (MimicMotion_1.pth, the thesis's initialisation; "
                      "MimicMotion_1-1.pth has the same layout)")

MIMICMOTION_KEY_MAP = KeyMap(
    strip_prefixes=("module.",),
    drop=(r"^vae\.", r"^image_encoder\."),
)

MIMICMOTION_HINT = ("MimicMotion_1.pth / MimicMotion_1-1.pth fit the full-size SVD UNet (unet_config: null with "
                    "pretrained_svd, or SVD_UNET_CONFIG) and the default PoseNet (pose_net_config: null) before the "
                    "conv_in widening; tiny configs cannot take them.")


class MimicMotionParts(nn.Module):
    """The two modules MimicMotion's checkpoint fills, under its attribute names ``unet`` / ``pose_net``."""

    def __init__(self, unet: nn.Module, pose_net: nn.Module) -> None:
        super().__init__()
        self.unet = unet
        self.pose_net = pose_net


def load_mimicmotion(unet: nn.Module, pose_net: nn.Module, path: Union[str, Path],
                     key: str = "model.init_args.mimicmotion_checkpoint") -> dict:
    """Load ``MimicMotion_1.pth`` into ``unet`` (8 input channels) and ``pose_net``; returns the mapped dict."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise MissingWeightsError(f"{key}: checkpoint file '{file}' not found. Where it comes from: {MIMICMOTION_SOURCE}.")
    return import_released(MimicMotionParts(unet, pose_net), path, MIMICMOTION_KEY_MAP, what="MimicMotion",
                           key=key, hint=MIMICMOTION_HINT)


__all__ = ["MIMICMOTION_KEY_MAP", "MIMICMOTION_SOURCE", "MimicMotionParts", "load_mimicmotion"]

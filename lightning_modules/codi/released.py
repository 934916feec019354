"""The authors' released CoDi weights into :class:`~lightning_modules.codi.adapter.ConditionalAdapterUNet`.

What fast-codi/CoDi released (README, Feb 2024): one parameter-efficient CoDi (PE-CoDi, Sec. 5.3.5)
checkpoint, **canny-edge-to-image** on Stable Diffusion 2.1 (v-prediction), trained on the open
``jax-diffusers-event/canny_diffusiondb`` data, as ``canny_99000.tar.fz`` (from the README:
``https://www.cis.jhu.edu/~kmei1/publics/codi/canny_99000.tar.fz``). It unpacks to a Flax
``FlaxControlNetModel.save_pretrained`` folder (``config.json`` + ``diffusion_flax_model.msgpack``): a
standard ControlNet (pixel-space conditioning embedding 16-32-96-256, zero-convs), the UNet frozen.
No SR / inpainting / depth weights of Table 5.2 and no full (non-PE) CoDi were released.

The suite reads PyTorch tensors only (no Flax here), so the checkpoint is converted once with
diffusers (in an environment with ``jax``/``flax``)::

    from diffusers import ControlNetModel
    ControlNetModel.from_pretrained("experiments/canny_99000", from_flax=True).save_pretrained("pretrained/codi_canny")

giving ``pretrained/codi_canny/diffusion_pytorch_model.safetensors`` with diffusers' ControlNet key
names, which :data:`CONTROLNET_KEYS` maps onto the adapter's branch (``encoder.*`` = the trainable copy,
``hint.*`` = the conditioning embedding, ``zero_convs.N`` / ``zero_mid`` = the zero-convs). The
backbone is SD 2.1's own UNet (``sd_path``), which the PE model never changed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

from torch import nn

from lightning_modules.components.released_weights import KeyMap, ReleasedWeightsError, import_released

#: diffusers ``ControlNetModel`` -> the adapter branch of ``ConditionalAdapterUNet(mode='controlnet', hint='pixel')``
CONTROLNET_KEYS = KeyMap(
    rules=(
        (r"^controlnet_cond_embedding\.", "hint."),
        (r"^controlnet_down_blocks\.(\d+)\.", r"zero_convs.\1."),
        (r"^controlnet_mid_block\.", "zero_mid."),
        (r"^(conv_in|time_embedding|down_blocks|mid_block)\.", r"encoder.\1."),
    ),
    strip_prefixes=("controlnet.", "module."),
)
KEY = "model.init_args.released_checkpoint"


class _Branch(nn.Module):
    """The adapter's own modules (not the backbone) under their network names: what the release holds."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        for name in ("encoder", "hint", "zero_convs", "zero_mid"):
            setattr(self, name, getattr(network, name))


def released_file(path: Union[str, Path]) -> Path:
    """The tensor file of a release folder (or the file itself); a Flax-only folder is one clear error."""
    p = Path(path).expanduser()
    if p.is_dir():
        for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
            if (p / name).is_file():
                return p / name
        if (p / "diffusion_flax_model.msgpack").is_file():
            raise ReleasedWeightsError(
                f"{KEY}={str(path)!r} holds the Flax release (diffusion_flax_model.msgpack); convert it once with diffusers: "
                f"ControlNetModel.from_pretrained({str(p)!r}, from_flax=True).save_pretrained(<folder>) and point {KEY} there")
        raise FileNotFoundError(f"{KEY}={str(path)!r}: no diffusion_pytorch_model.safetensors/.bin in that folder")
    return p


def import_released_controlnet(network: nn.Module, path: Union[str, Path]):
    """Load the released PE-CoDi ControlNet into ``network``'s branch (strict: every branch tensor, nothing else)."""
    if getattr(network, "mode", None) != "controlnet" or getattr(network, "hint_input", None) != "pixel":
        raise ReleasedWeightsError(f"{KEY}: the released model is a ControlNet on the pixel condition; set "
                                   "model.init_args.adapter: controlnet and condition_input: pixel")
    return import_released(
        _Branch(network), released_file(path), CONTROLNET_KEYS, "CoDi (PE-CoDi ControlNet)", key=KEY,
        hint="The release is SD 2.1's ControlNet layout (block_out_channels 320-640-1280-1280, 1024-d context, "
             "hint_channels 16-32-96-256): check sd_path and hint_channels.")


__all__ = ["CONTROLNET_KEYS", "import_released_controlnet", "released_file"]

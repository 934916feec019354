"""The CFLD authors' released DeepFashion checkpoint -> :class:`~lightning_modules.cfld.network.CFLDNetwork`.

What the authors released (README of github.com/YanzuoLu/CFLD, news of 2024/03/09): one
Google Drive folder (``drive.google.com/drive/folders/1s0DcLzBEugRFf20OEmFKiW3tsKoaOOAZ``)
holding an ``accelerate`` ``save_state`` folder. Their ``pose_transfer_test.py`` reads two files
of it (``MODEL.PRETRAINED_PATH``):

* ``pytorch_model.bin``: their ``build_model`` module (all conditioning networks):
  ``backbone.*`` (Swin-B, Microsoft's layout: ``layers.i.downsample`` closes stage ``i``),
  ``decoder.*`` (the PRD: ``query_feat``, ``pos_embed``, ``kv_pos_embed``, ``blocks.r.*``
  diffusers ``BasicTransformerBlock`` s), ``appearance_encoder.{zero_conv_ins,blocks,zero_conv_outs}.i.*``
  (HGA, ``i`` = 0 for UNet block 11, the last up-block cross-attention), ``pose_encoder.*``
  (``conv_in``, ``resnets.i``) and ``learnable_vector`` (the null prompt);
* ``pytorch_model_1.bin``: their ``UNet`` wrapper, ``model.*`` = the whole SD-1.5 UNet
  (frozen weights and the trained up-block cross-attention K/V).

The same weights serve both Table 2 blocks (their ``fashion_256.yaml`` / ``fashion_512.yaml``
differ only in ``TEST.IMG_SIZE``). Newer ``accelerate`` versions write ``model.safetensors`` /
``model_1.safetensors`` instead; both pairs are accepted, as is one file holding all keys.

The key map below renames their keys to the network's (``released_weights.KeyMap``); it needs
the network built as their code builds it: ``prd.layout: authors`` (the default), HGA on every
up-block cross-attention, the Swin/PRD/adapter sizes of their config. Buffers that both sides
rebuild (Swin ``relative_position_index``, ``attn_mask``) and the masked-image-modelling token
``backbone.masked_embed`` (present only when their masking augmentation was on; the suite has
none) are dropped. Everything else must match exactly, else one ``ReleasedWeightsError``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Union

from torch import Tensor

from lightning_modules.components.released_weights import KeyMap, ReleasedWeightsError, import_released, read_released_state

KEY = "model.init_args.released_checkpoint"
#: (conditioning networks, UNet) file names of the authors' accelerate state folder.
FILE_PAIRS = (("pytorch_model.bin", "pytorch_model_1.bin"), ("model.safetensors", "model_1.safetensors"))
HINT = (
    "The authors' checkpoint is the folder holding pytorch_model.bin (Swin, PRD, HGA, pose adapter, null prompt) "
    "and pytorch_model_1.bin (the UNet); it loads into the configuration of configs/cfld.yaml "
    "(prd.layout: authors, hga: true on every up-block cross-attention, Swin-B 2-2-18-2 window 16, "
    "PRD 16 x 768 depth 8, adapter 320-640-1280)."
)


def authors_key_map(num_swin_stages: int, num_appearance_encoders: int) -> KeyMap:
    """Their names -> :class:`CFLDNetwork` state-dict names, for a network of this size."""
    rules: list[tuple[str, str]] = []
    # Microsoft's Swin merges patches at the end of stage i, timm at the start of stage i + 1;
    # highest stage first so that a renamed key is never renamed again.
    for i in reversed(range(num_swin_stages - 1)):
        rules.append((rf"^backbone\.layers\.{i}\.downsample\.", f"swin.model.layers.{i + 1}.downsample."))
    rules.append((r"^backbone\.", "swin.model."))
    rules.append((r"^decoder\.", "prompt_head."))
    # their encoder i feeds UNet block (11 - i): the reverse of the suite's up-block order
    n = num_appearance_encoders
    for i in range(n):
        rules.append((rf"^appearance_encoder\.zero_conv_ins\.{i}\.", f"appearance_encoders.{n - 1 - i}.zero_in."))
        rules.append((rf"^appearance_encoder\.blocks\.{i}\.", f"appearance_encoders.{n - 1 - i}.layers."))
        rules.append((rf"^appearance_encoder\.zero_conv_outs\.{i}\.", f"appearance_encoders.{n - 1 - i}.zero_out."))
    rules += [
        (r"^pose_encoder\.conv_in\.", "pose_adapter.stem."),
        (r"^pose_encoder\.resnets\.", "pose_adapter.blocks."),
        (r"^learnable_vector$", "null_prompt"),
        (r"^model\.", "unet."),  # pytorch_model_1.bin
    ]
    drop = (r"\.relative_position_index$", r"\.attn_mask$", r"^backbone\.masked_embed$")
    return KeyMap(rules=tuple(rules), drop=drop)


def read_authors_checkpoint(path: Union[str, Path], key: str = KEY) -> dict[str, Tensor]:
    """All tensors of the authors' checkpoint folder (both files), or of one file holding them all."""
    root = Path(path).expanduser()
    if not root.is_dir():
        return read_released_state(root, key=key)
    for names in FILE_PAIRS:
        if all((root / name).is_file() for name in names):
            state: dict[str, Tensor] = {}
            for name in names:
                state.update(read_released_state(root / name, key=key))
            return state
    listed = " or ".join(" + ".join(pair) for pair in FILE_PAIRS)
    found = sorted(p.name for p in root.iterdir())[:8]
    raise ReleasedWeightsError(f"{key}={str(path)!r}: the folder holds neither {listed} (found {found}). {HINT}")


def import_authors_checkpoint(network, path: Union[str, Path], key: str = KEY,
                              state: Optional[Mapping[str, Tensor]] = None) -> dict[str, Tensor]:
    """Load the authors' weights into ``network`` (a :class:`CFLDNetwork`) exactly; returns the renamed dict."""
    if network.swin is None:
        raise ReleasedWeightsError(f"{key}: the authors released the Swin + PRD model; prompt='clip' (ablation B2) has no counterpart")
    encoders = 0 if network.appearance_encoders is None else len(network.appearance_encoders)
    key_map = authors_key_map(len(network.swin.channels), encoders)
    raw = dict(state) if state is not None else read_authors_checkpoint(path, key=key)
    return import_released(network, path, key_map, what="CFLD (authors' release)", key=key, hint=HINT, state=raw)


__all__ = ["FILE_PAIRS", "authors_key_map", "import_authors_checkpoint", "read_authors_checkpoint"]

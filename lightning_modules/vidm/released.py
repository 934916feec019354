"""The authors' released VIDM checkpoint in the suite's :class:`~lightning_modules.vidm.MotionNetwork`.

What was published ([repo] github.com/MKFMIKU/vidm, README "Testing"): one file,
``checkpoint_accum_clevrer_robust_400000.pth.tar`` (www.cis.jhu.edu/~kmei1/share/vidm/checkpoints/),
the CLEVRER **motion generator** after 400k of its 800k iterations. No content generator was
released: the README generates from "the extracted first video frames" (image-to-video).

The file is ``torch.save({"iters", "state_dict", "ema_state_dict", "optimizer"})`` of a
DistributedDataParallel-wrapped ``ComplexUModel`` (``vidm/network.py``); we take the EMA weights
(``ema_state_dict``, the ones the authors' generation script samples with) and strip ``module.``.
Their modules and ours:

======================================================  ==============================================
authors (``vidm/cunet.py``, ``encoder.py``, mmediting)  suite (``MotionNetwork``)
======================================================  ==============================================
``unet.*`` (UNetModel without time embedding)           ``unet.*`` (``ADMUNet``, ``use_timestep_embedding=False``)
``encoder.input_blocks.*`` (EncoderUNetModel)           ``encoder.input_blocks.*``
``spynet.*`` (mmediting ``SPyNet``: ``basic_module``,   ``flow_net.*`` (:class:`~lightning_modules.vidm.spynet.SpyNet`,
``mean``, ``std``)                                      same inner names)
ResBlock ``emb_layers`` = ``CoordinatesEMB``:           the ResBlock's ``out_layers`` and PosGN ``modulation``:
``out_norm``                                            ``out_layers.0`` (GroupNorm)
``out_rest.1`` (zero conv)                              ``out_layers.3``
``linear_0`` ``[C, 4]``                                 ``modulation.mlp.0`` ``[C, 4, 1, 1]``, inputs reordered
``linear_1.0`` / ``linear_1.2``                         ``modulation.mlp.2`` / ``modulation.mlp.4`` (1x1 convs)
``coords`` / ``new_coords`` (lazily cached buffers)     dropped (rebuilt by :class:`CoordinateContext`)
======================================================  ==============================================

``CoordinatesEMB`` feeds ``(t, n, h, w)`` (its ``new_coords[dt, vt]`` then the ``(h, w)`` grid) to
``linear_0``; our PosGN feeds ``(h, w, n, t)``, so the columns of ``linear_0.weight`` are permuted
(:data:`COORDINATE_ORDER`), which computes the same function exactly. The cached ``coords`` buffer
records the frame size the model ran at (``[batch, H, W, 2]`` in the first full-resolution block);
a file trained at another size than ``model.image_size`` is refused.

To *sample* like the authors (same function, not only the same weights) the network config
must also follow their forward (``configs/vidm_eval/released_clevrer.yaml`` sets all of it):
``residual_form: repo`` (``h = enc(e) + 0.2 * unet(h)``), attention at downsample rate 16
(their ``attention_resolutions=[16]`` reaches ``UNetModel`` unconverted: ``attention_ds: [16]``,
8x8 px at 128 px), ``num_head_channels: 64``, learned sigma (6 outputs), 128 px, and SpyNet fed
the frames in [-1, 1] as they are (``flow: {input_range: raw}``; their ``ComplexUModel`` passes
[-1, 1] frames to mmediting's SPyNet, whose ImageNet normalisation assumes [0, 1]).
:func:`authors_forward_differences` lists what a config does differently; the module logs it.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from torch import Tensor

from lightning_modules.components.released_weights import (KeyMap, ReleasedWeightsError, check_released_state,
                                                            read_released_state)

log = logging.getLogger(__name__)

#: ``linear_0`` input columns of the authors' ``CoordinatesEMB`` are ``(t, n, h, w)``; ours are ``(h, w, n, t)``:
#: our column ``i`` is their column ``COORDINATE_ORDER[i]``.
COORDINATE_ORDER = (2, 3, 1, 0)

RELEASED_FILE = "checkpoint_accum_clevrer_robust_400000.pth.tar"
RELEASED_URL = "https://www.cis.jhu.edu/~kmei1/share/vidm/checkpoints/" + RELEASED_FILE

#: ``ema_state_dict`` first (the authors sample with the EMA), then the training weights.
CONTAINERS = ("ema_state_dict", "state_dict")

MOTION_KEY_MAP = KeyMap(
    strip_prefixes=("module.",),
    drop=(r"\.emb_layers\.(coords|new_coords)$",),
    rules=(
        (r"^spynet\.", "flow_net."),
        (r"\.emb_layers\.out_norm\.", ".out_layers.0."),
        (r"\.emb_layers\.out_rest\.1\.", ".out_layers.3."),
        (r"\.emb_layers\.linear_0\.", ".modulation.mlp.0."),
        (r"\.emb_layers\.linear_1\.0\.", ".modulation.mlp.2."),
        (r"\.emb_layers\.linear_1\.2\.", ".modulation.mlp.4."),
    ),
)

_MLP_WEIGHT = re.compile(r"\.modulation\.mlp\.(0|2|4)\.weight$")


def _reshape_modulation(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Their ``nn.Linear`` weights ``[out, in]`` as our 1x1 convs ``[out, in, 1, 1]``; ``linear_0`` columns reordered."""
    out = {}
    for name, value in state.items():
        match = _MLP_WEIGHT.search(name)
        if match and value.ndim == 2:
            if match.group(1) == "0":
                if value.shape[1] != len(COORDINATE_ORDER):
                    raise ReleasedWeightsError(f"{name}: CoordinatesEMB.linear_0 must take 4 coordinates, has {value.shape[1]}")
                value = value[:, list(COORDINATE_ORDER)]
            value = value[:, :, None, None]
        out[name] = value
    return out


def trained_frame_size(raw: Mapping[str, Tensor]) -> Optional[tuple[int, int]]:
    """``(H, W)`` of the cached PosGN grid of the first full-resolution block (``None`` when not saved)."""
    for name, value in raw.items():
        if re.search(r"(^|\.)unet\.input_blocks\.1\.0\.emb_layers\.coords$", name) and value.ndim == 4:
            return int(value.shape[1]), int(value.shape[2])
    return None


def authors_forward_differences(network: Any) -> list[str]:
    """Settings of ``network`` under which their weights load but compute another function than their code."""
    diffs = []
    if getattr(network, "residual_form", "repo") != "repo":
        diffs.append(f"residual_form={network.residual_form!r} (theirs: 'repo', h = enc + 0.2 * unet)")
    flow = getattr(network, "flow_net", None)
    if flow is not None and getattr(flow, "input_range", "raw") != "raw":
        diffs.append(f"flow.input_range={flow.input_range!r} (theirs: 'raw', [-1, 1] frames into SpyNet)")
    if not getattr(network, "learn_sigma", True):
        diffs.append("learn_sigma=false (theirs: 6 outputs)")
    return diffs


def import_vidm_motion(network: torch.nn.Module, path: Union[str, Path],
                       key: str = "model.init_args.released_checkpoint",
                       state: Optional[Mapping[str, Tensor]] = None) -> dict[str, Tensor]:
    """Load the authors' motion-generator checkpoint into ``network`` (a ``MotionNetwork``) strictly.

    Returns the renamed state dict. A file that is not a VIDM ``ComplexUModel`` of this
    configuration is refused with one message (missing / unexpected / other-shape keys, the hint
    names the settings that usually explain it).
    """
    source = f"{key}={str(path)!r}"
    raw = dict(state) if state is not None else read_released_state(path, key=key, containers=CONTAINERS)
    size = trained_frame_size({k[len("module."):] if k.startswith("module.") else k: v for k, v in raw.items()})
    expected = int(getattr(network, "image_size", 0) or 0)
    if size is not None and expected and size != (expected, expected):
        raise ReleasedWeightsError(f"{source} was trained on {size[0]}x{size[1]} frames (its cached PosGN grid) but "
                                   f"model.network.image_size={expected}; set image_size (and model.image_size) to {size[0]}")
    mapped = _reshape_modulation(MOTION_KEY_MAP.apply(raw, source=source))
    hint = ("A VIDM motion checkpoint (ComplexUModel) has unet.*, encoder.input_blocks.* and spynet.*; check "
            "model.network.unet (model_channels 128, channel_mult [1,1,2,2,4,4], num_res_blocks 2, attention_ds [16]), "
            "use_posgn / use_flow / use_residual: true, learn_sigma: true and flow.variant: mmediting.")
    check_released_state(network, mapped, source, "VIDM motion-generator (ComplexUModel)", hint)
    own = network.state_dict()
    mapped = {k: v.to(own[k].dtype) for k, v in mapped.items()}
    with torch.no_grad():
        network.load_state_dict(mapped, strict=True)
    diffs = authors_forward_differences(network)
    if diffs:
        log.warning("%s loaded; this config computes another function than the authors' code: %s "
                    "(configs/vidm_eval/released_clevrer.yaml sets their forward)", source, "; ".join(diffs))
    return mapped


__all__ = ["CONTAINERS", "COORDINATE_ORDER", "MOTION_KEY_MAP", "RELEASED_FILE", "RELEASED_URL",
           "authors_forward_differences", "import_vidm_motion", "trained_frame_size"]

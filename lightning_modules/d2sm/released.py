"""FFDNet checkpoints of the D2SM authors' code in the suite's :class:`~lightning_modules.d2sm.FFDNet`.

What was published ([code] github.com/MKFMIKU/d2sm, ECCV 2022; MKFMIKU/BasicSR-D2SM): the code and
the pip-installable loss (``from d2sm import DeST``), **no trained weights**: the README's test
command resumes a local ``checkpoint_0400.pth.tar`` without a link. This importer reads that
file's layout, so a model trained with the official code (``train.py --model FFDNet --dest``) runs
and is evaluated under the suite's CLI (``--model.init_args.released_checkpoint``).

Their ``FFDNetModel`` (``models/ffdnet_model.py``), saved MoCo-style under DistributedDataParallel as
``{"epoch", "state_dict": model.state_dict(), ...}``:

==============================================  ===========================================
authors                                          suite (``FFDNet.body``, a Sequential)
==============================================  ===========================================
``module.`` (DDP)                                stripped
``m_head.0`` conv ``[F, 4C + 1, 3, 3]``          ``body.0`` (``noise_map_channels: 1``)
``m_body.<i>.0`` conv ``[F, F, 3, 3]``           ``body.<2 (i + 1)>``
``m_tail`` conv ``[4C, F, 3, 3]``                ``body.<2 (num_layers - 1)>``
``deep_semantic_transfer.*`` / ``vgg_features.*`` dropped (the D2SM / comparison losses' VGG)
==============================================  ===========================================

Their forward equals ours: pixel-unshuffle by 2, one noise-level channel ``sigma / 255``, the conv
stack without batch norm, pixel-shuffle; they work on [0, 1] images, which ``FFDNet`` maps to and
from the suite's [-1, 1].
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Union

from torch import Tensor, nn

from lightning_modules.components.released_weights import KeyMap, import_released

DROP = (r"^deep_semantic_transfer\.", r"^vgg_features\.", r"^mean_shift\.")


def ffdnet_key_map(num_layers: int) -> KeyMap:
    """Their ``m_head`` / ``m_body`` / ``m_tail`` -> our ``body.<index>`` for a ``num_layers``-conv FFDNet."""
    rules = [(r"^m_head\.0\.", "body.0.")]
    rules += [(rf"^m_body\.{i}\.0\.", f"body.{2 * (i + 1)}.") for i in range(num_layers - 2)]
    rules.append((r"^m_tail\.", f"body.{2 * (num_layers - 1)}."))
    return KeyMap(rules=tuple(rules), drop=DROP, strip_prefixes=("module.",))


def import_d2sm_ffdnet(restorer: nn.Module, path: Union[str, Path], key: str = "model.init_args.released_checkpoint",
                       state: Optional[Mapping[str, Tensor]] = None) -> dict[str, Tensor]:
    """Load an official-code FFDNet checkpoint into ``restorer`` strictly (one message when it does not fit)."""
    layers = sum(1 for m in getattr(restorer, "body", []) if isinstance(m, nn.Conv2d))
    if not layers:
        raise ValueError(f"{key}: the D2SM authors' checkpoints are FFDNets; model.restorer is {type(restorer).__name__}")
    return import_released(restorer, path, ffdnet_key_map(layers), what="D2SM-code FFDNet", key=key, state=state,
                           containers=("state_dict",),
                           hint="Their FFDNet: restorer.init_args noise_map_channels: 1, features = --n_feats (96), "
                                "num_layers = --n_blocks (12), batch_norm: false.")


__all__ = ["DROP", "ffdnet_key_map", "import_d2sm_ffdnet"]

"""A frozen distillation teacher that lives outside the LightningModule.

Why a callback: a teacher registered as a submodule would enter the module's
``state_dict`` (doubling every checkpoint), ``parameters()`` (and with it any
optimizer or EMA built from them) and DDP's gradient buckets. Held here, it is
none of those; the student reaches it with ``TeacherCallback.find(trainer)``.

Where the weights come from:

- ``checkpoint_path=None``: a deep copy of the student's network
  (``getattr(pl_module, attribute)``, dotted paths allowed) taken in
  ``setup("fit")``, i.e. *before* Lightning restores a checkpoint, so a resumed
  run gets the same teacher as the original run as long as the module's
  constructor builds the same starting weights (loads them from a pretrained
  path, or seeds its initialisation). For a randomly initialised student that
  is not reproducible, pass ``checkpoint_path``.
- ``checkpoint_path`` to a Lightning ``.ckpt`` (its ``state_dict`` under the
  ``"<attribute>."`` prefix is used) or to a ``.safetensors`` / plain ``torch.save``
  state dict (keys with or without that prefix). The architecture is the
  student's; a checkpoint that does not fit raises ``ValueError`` naming the
  missing, unexpected and shape-mismatched keys.

The teacher is put in ``eval()`` mode with ``requires_grad=False``, moved to the
module's device (and ``dtype`` if given, e.g. ``"bfloat16"`` to halve its memory),
and ``teacher(x, t, **kw)`` runs it under ``torch.inference_mode()``. The outputs
are cloned on the way out so they are ordinary tensors that may enter a loss
together with tensors that require grad (inference tensors may not be saved for
backward).

Distributed: under DDP every rank holds the same teacher (nothing is synchronised, its
weights never change). Under FSDP2 (``ModelParallelStrategy``) the copy is taken in
``setup`` before ``configure_model`` shards the student, so the teacher is an unsharded
replica on every rank; pass ``dtype="bfloat16"`` to halve it, or shard it yourself.
"""
from __future__ import annotations

import copy
import logging
import os
from typing import Any, Optional, Union

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback
from torch import nn
from lightning_modules.components.safe_load import safe_torch_load

log = logging.getLogger(__name__)

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "32": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16, "16": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float64": torch.float64,
}


def _resolve_dtype(dtype: Union[None, str, torch.dtype]) -> Optional[torch.dtype]:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).replace("torch.", "").lower()
    if key not in _DTYPES:
        raise ValueError(f"TeacherCallback: unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}")
    return _DTYPES[key]


def _get_attr(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _clone_out(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.clone()
    if isinstance(out, (list, tuple)):
        return type(out)(_clone_out(o) for o in out)
    if isinstance(out, dict):
        return {k: _clone_out(v) for k, v in out.items()}
    if hasattr(out, "to_tuple") and hasattr(out, "keys"):  # diffusers / transformers ModelOutput
        return type(out)(**{k: _clone_out(out[k]) for k in out.keys()})
    return out


def _cast(x: Any, dtype: torch.dtype) -> Any:
    return x.to(dtype) if torch.is_tensor(x) and x.is_floating_point() else x


def _cast_tree(out: Any, dtype: torch.dtype) -> Any:
    if torch.is_tensor(out):
        return _cast(out, dtype)
    if isinstance(out, (list, tuple)):
        return type(out)(_cast_tree(o, dtype) for o in out)
    if isinstance(out, dict):
        return {k: _cast_tree(v, dtype) for k, v in out.items()}
    return out


def load_state_dict_file(path: str, prefix: str) -> dict[str, torch.Tensor]:
    """The teacher's weights from a Lightning checkpoint, a safetensors file or a ``torch.save`` state dict.

    Keys under ``prefix`` (``"network."``) have it stripped; if none carries it the file is taken as
    the network's own state dict.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"TeacherCallback: checkpoint_path {path!r} does not exist")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        raw = load_file(path)
    else:
        raw = safe_torch_load(path, key="TeacherCallback: checkpoint_path")  # weights_only=True, allowlisted types only
        if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
            raw = raw["state_dict"]
    if not isinstance(raw, dict):
        raise ValueError(f"TeacherCallback: {path!r} holds no state dict (got {type(raw).__name__})")
    prefixed = {k[len(prefix):]: v for k, v in raw.items() if k.startswith(prefix)}
    return prefixed if prefixed else dict(raw)


def check_and_load(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load strictly; on any mismatch raise one error naming every bad key."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(
        f"{k} (checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)})"
        for k in set(own) & set(state)
        if tuple(state[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys: {missing}")
        if unexpected:
            parts.append(f"unexpected keys: {unexpected}")
        if mismatched:
            parts.append(f"shape mismatches: {mismatched}")
        raise ValueError(f"TeacherCallback: checkpoint {source!r} does not fit the student network; " + "; ".join(parts))
    module.load_state_dict(state, strict=True)


class TeacherCallback(Callback):
    """Frozen teacher network for distillation, kept out of optimizer, EMA and checkpoints.

    Args:
        checkpoint_path: where the teacher's weights come from; ``None`` copies the student at fit start.
        attribute: the student's network attribute on the module (dotted paths allowed).
        dtype: teacher dtype (``torch.dtype`` or a name such as ``"bfloat16"``); ``None`` keeps the student's.
    """

    def __init__(
        self, checkpoint_path: Optional[str] = None, attribute: str = "network",
        dtype: Union[None, str, torch.dtype] = None,
    ) -> None:
        super().__init__()
        self.checkpoint_path = checkpoint_path
        self.attribute = attribute
        self.dtype = _resolve_dtype(dtype)
        self.module: Optional[nn.Module] = None

    @staticmethod
    def find(trainer: Trainer) -> "TeacherCallback":
        """The trainer's TeacherCallback (raises ``LookupError`` if there is none)."""
        for cb in trainer.callbacks:
            if isinstance(cb, TeacherCallback):
                return cb
        raise LookupError("no TeacherCallback among trainer.callbacks; add one to the Trainer's callbacks")

    # ------------------------------------------------------------------ build
    def build(self, pl_module: LightningModule) -> nn.Module:
        """Create the teacher from the module's current student network (or the checkpoint)."""
        student = _get_attr(pl_module, self.attribute)
        if not isinstance(student, nn.Module):
            raise TypeError(f"TeacherCallback: pl_module.{self.attribute} is {type(student).__name__}, not an nn.Module")
        teacher = copy.deepcopy(student)
        if self.checkpoint_path is not None:
            state = load_state_dict_file(str(self.checkpoint_path), self.attribute + ".")
            check_and_load(teacher, state, str(self.checkpoint_path))
        teacher.requires_grad_(False)
        teacher.eval()
        self.module = teacher
        self._place(pl_module)
        return teacher

    def _place(self, pl_module: LightningModule) -> None:
        assert self.module is not None
        device = pl_module.device
        if self.dtype is not None:
            self.module.to(device=device, dtype=self.dtype)
        else:
            self.module.to(device=device)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # before checkpoint restore: the student still holds its starting weights
        if stage == "fit" and self.module is None and hasattr(pl_module, self.attribute.split(".")[0]):
            self.build(pl_module)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.module is None:  # student created in configure_model()
            self.build(pl_module)
        else:
            self._place(pl_module)  # the strategy has moved the module to its device by now

    # ------------------------------------------------------------------- call
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.module is None:
            raise RuntimeError("TeacherCallback: the teacher is built when fit starts; call build(pl_module) before")
        back: Optional[torch.dtype] = None
        if self.dtype is not None:
            floats = [a for a in list(args) + list(kwargs.values()) if torch.is_tensor(a) and a.is_floating_point()]
            back = floats[0].dtype if floats else None
            args = tuple(_cast(a, self.dtype) for a in args)
            kwargs = {k: _cast(v, self.dtype) for k, v in kwargs.items()}
        with torch.inference_mode():
            out = self.module(*args, **kwargs)
        out = _clone_out(out)
        if back is not None and back != self.dtype:
            out = _cast_tree(out, back)
        return out

    # the teacher is never part of the checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {}

"""Exponential moving average (EMA) of the trainable weights.

Why not Lightning's ``EMAWeightAveraging``: it deep-copies and averages the whole
LightningModule, frozen VAE / text encoders / distillation teachers included,
which doubles their memory for nothing, and it does not support sharded
strategies. This callback averages exactly the parameters the optimizer trains
(``pl_module.trainable_parameters()`` when the module defines it, otherwise the
parameters with ``requires_grad=True`` when fitting starts), see
``docs/architecture.md``.

Update rule, after the optimizer step with zero-based index ``i = global_step - 1``
when ``i >= start_step`` and ``i % update_every == 0``:

- the first update copies the weights into the average (as
  ``torch.optim.swa_utils.AveragedModel`` does, so with ``warmup=False`` this
  matches ``EMAWeightAveraging`` exactly);
- the ``n``-th later update (``n = 1, 2, ...``) uses
  ``d_n = min(decay, (1 + n) / (10 + n))`` when ``warmup`` (the TensorFlow
  ``ExponentialMovingAverage(num_updates=...)`` warm-up), else ``d_n = decay``,
  and sets ``ema <- d_n * ema + (1 - d_n) * weight`` with one fused
  ``torch._foreach_lerp_`` over all tensors.

The average lives in the callback's ``state_dict`` (hence in every Lightning
checkpoint, under ``callbacks``) and is restored on resume; the module's own
``state_dict`` keeps the raw training weights so a resumed run continues exactly.
It is swapped into the module for validation, test and predict, and
``ema.swapped(pl_module)`` does the same for ad-hoc sampling. Under DDP the
weights are identical on all ranks after each step, so the averages are too; no
communication is needed. Under FSDP2 the averaged tensors are the ranks' own
shards (``DTensor``), so the memory cost is divided like the weights'; because
Lightning writes callback state from rank 0 only (also with ``ModelParallelStrategy``),
the checkpointed average holds gathered full tensors (on CPU), and each rank takes
its own shard back on restore.
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any, Optional

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback

from lightning_modules.components.run_dir import remember_run_dir, run_dir

log = logging.getLogger(__name__)


def trainable_named_parameters(pl_module: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """The (name, parameter) pairs that train, in ``named_parameters()`` order.

    Uses ``pl_module.trainable_parameters()`` when the module defines it (the
    ``DiffusionModule`` contract), else every parameter with ``requires_grad``.
    """
    named = list(pl_module.named_parameters())
    if callable(getattr(pl_module, "trainable_parameters", None)):
        wanted = {id(p) for p in pl_module.trainable_parameters()}
        return [(n, p) for n, p in named if id(p) in wanted]
    return [(n, p) for n, p in named if p.requires_grad]


def _copy_all(dst: list[torch.Tensor], src: list[torch.Tensor]) -> None:
    """``dst[i].copy_(src[i])``; one fused call, except for FSDP2 shards (DTensor has no ``_foreach_copy_``)."""
    if any(type(t) is not torch.Tensor and hasattr(t, "full_tensor") for t in dst):
        for d, s in zip(dst, src):
            d.copy_(s)
    else:
        torch._foreach_copy_(dst, src)


def _lerp_all(ema: list[torch.Tensor], params: list[torch.Tensor], weight: float) -> None:
    """``ema[i].lerp_(params[i], weight)`` fused; FSDP2 shards and plain tensors in separate calls
    (a module sharding only some blocks, e.g. AlignTok, has both; foreach refuses the mix)."""
    sharded = [hasattr(t, "full_tensor") and type(t) is not torch.Tensor for t in ema]
    for want in (False, True):
        pairs = [(e, p) for e, p, s in zip(ema, params, sharded) if s is want]
        if pairs:
            torch._foreach_lerp_([e for e, _ in pairs], [p for _, p in pairs], weight)


class EMACallback(Callback):
    """EMA of the trainable parameters, checkpointed, swapped in for evaluation.

    Args:
        decay: EMA decay in (0, 1); 0.9999 is the usual value for diffusion models.
        warmup: use ``min(decay, (1 + n) / (10 + n))`` for the ``n``-th update.
        update_every: update after every k-th optimizer step (k >= 1). The average then spans
            about ``k / (1 - decay)`` steps; use ``decay ** k`` to keep the horizon of ``decay`` at
            k = 1. k > 1 is the remedy where one fused update per step is too dear (a memory-bound
            update of a large network on a small CPU, see benchmarks/perf_ema.py).
        start_step: first zero-based optimizer step index that updates the EMA;
            the first update copies the weights.
        use_for_validation: swap the EMA weights in during validation, test and
            predict (the raw weights come back afterwards).
        export_path: if given, the EMA weights are written there as a safetensors
            file (parameter names as in ``pl_module.named_parameters()``) when
            ``fit`` ends. Relative paths are taken inside ``trainer.log_dir``.
    """

    def __init__(
        self,
        decay: float = 0.9999,
        warmup: bool = True,
        update_every: int = 1,
        start_step: int = 0,
        use_for_validation: bool = True,
        export_path: Optional[str] = None,
    ) -> None:
        super().__init__()
        if not (isinstance(decay, (int, float)) and 0.0 < float(decay) < 1.0):
            raise ValueError(f"EMACallback: decay must lie in the open interval (0, 1), got {decay!r}")
        if int(update_every) < 1:
            raise ValueError(f"EMACallback: update_every must be >= 1, got {update_every!r}")
        if int(start_step) < 0:
            raise ValueError(f"EMACallback: start_step must be >= 0, got {start_step!r}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.update_every = int(update_every)
        self.start_step = int(start_step)
        self.use_for_validation = bool(use_for_validation)
        self.export_path = export_path

        self._names: list[str] = []
        self._params: list[torch.Tensor] = []
        self._ema: list[torch.Tensor] = []
        self.num_updates = 0  # updates done so far (the first one is the copy)
        self._last_update_step = -1  # global_step at the last update (guards gradient accumulation)
        self._pending_state: Optional[dict[str, Any]] = None
        self._backup: Optional[list[torch.Tensor]] = None

    # ------------------------------------------------------------------ state
    @property
    def initialized(self) -> bool:
        """Whether an average exists yet (after the first update or a restore)."""
        return self.num_updates > 0

    def averaged_parameters(self) -> dict[str, torch.Tensor]:
        """The averaged tensors by parameter name (live device tensors, not copies; empty before
        the first update). For modules that read the EMA network directly, e.g. CoDi's target."""
        return dict(zip(self._names, self._ema))

    def current_decay(self) -> float:
        """Decay the next update will use (after the initial copy)."""
        if not self.warmup:
            return self.decay
        n = self.num_updates  # the n-th update after the copy
        return min(self.decay, (1.0 + n) / (10.0 + n))

    def _bind(self, pl_module: LightningModule) -> None:
        """Find the trainable parameters; (re)bind by name so sharding wrappers are followed."""
        named = trainable_named_parameters(pl_module)
        if not named:
            raise RuntimeError("EMACallback: the module has no trainable parameters to average")
        names = [n for n, _ in named]
        if self._names and self._ema and names != self._names:
            raise RuntimeError(
                "EMACallback: the set of trainable parameters changed after the average was created "
                f"(was {len(self._names)} tensors, now {len(names)})"
            )
        self._names = names
        self._params = [p for _, p in named]

    @torch.no_grad()
    def _copy_weights(self) -> None:
        self._ema = [p.detach().clone() for p in self._params]

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "decay": self.decay,
            "warmup": self.warmup,
            "update_every": self.update_every,
            "start_step": self.start_step,
            "num_updates": self.num_updates,
            "last_update_step": self._last_update_step,
        }
        if self._pending_state is not None and not self._ema:
            return dict(self._pending_state)  # restored but not bound yet: keep it intact
        if self._ema:
            # Full tensors: Lightning writes callback state from rank 0 only (also for sharded
            # strategies), so FSDP2 shards are gathered here (every rank calls state_dict).
            state["ema"] = self.ema_state_dict() if self._is_sharded() else {
                n: t.detach().clone() for n, t in zip(self._names, self._ema)
            }
        return state

    def _is_sharded(self) -> bool:
        return any(hasattr(t, "full_tensor") for t in self._ema)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending_state = dict(state_dict)
        if self._params:
            self._apply_pending()

    @torch.no_grad()
    def _apply_pending(self) -> None:
        state, self._pending_state = self._pending_state, None
        if state is None:
            return
        self.num_updates = int(state.get("num_updates", 0))
        self._last_update_step = int(state.get("last_update_step", -1))
        saved = state.get("ema")
        if not saved:
            self._ema = []
            self.num_updates = 0
            return
        missing = [n for n in self._names if n not in saved]
        unexpected = [n for n in saved if n not in set(self._names)]
        if missing or unexpected:
            raise RuntimeError(
                "EMACallback: the checkpointed average does not fit the module's trainable parameters; "
                f"missing: {missing[:10]}, unexpected: {unexpected[:10]}"
            )
        ema = []
        for name, p in zip(self._names, self._params):
            src = saved[name]
            if tuple(src.shape) != tuple(p.shape):
                raise RuntimeError(
                    f"EMACallback: checkpointed average for {name!r} has shape {tuple(src.shape)}, "
                    f"the parameter has {tuple(p.shape)}"
                )
            if hasattr(p, "device_mesh"):  # DTensor (FSDP2): keep this rank's shard, no communication
                from torch.distributed.tensor import distribute_tensor

                full = src.to(device=p.device, dtype=p.dtype)
                ema.append(distribute_tensor(full, p.device_mesh, p.placements, src_data_rank=None))
            else:
                buf = p.detach().clone()
                buf.copy_(src)
                ema.append(buf)
        self._ema = ema

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        remember_run_dir(trainer)  # the one broadcast, on every rank; later reads are local

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._bind(pl_module)
        if self._pending_state is not None:
            self._apply_pending()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step <= self._last_update_step or step == 0:
            return  # no optimizer step since the last update (gradient accumulation)
        step_idx = step - 1
        if step_idx < self.start_step or step_idx % self.update_every != 0:
            return
        self.update(pl_module)
        self._last_update_step = step

    @torch.no_grad()
    def update(self, pl_module: Optional[LightningModule] = None) -> None:
        """One EMA update from the current weights (called by the hooks; public for manual use)."""
        if not self._params:
            if pl_module is None:
                raise RuntimeError("EMACallback.update: not bound to a module yet")
            self._bind(pl_module)
            if self._pending_state is not None:
                self._apply_pending()
        if not self._ema:
            self._copy_weights()
            self.num_updates = 1
            return
        d = self.current_decay()
        _lerp_all(self._ema, [p.detach() for p in self._params], 1.0 - d)
        self.num_updates += 1

    # -------------------------------------------------------------- swapping
    @torch.no_grad()
    def _swap_in(self, pl_module: LightningModule) -> bool:
        if self._backup is not None or not self._ema:
            return False
        self._bind(pl_module)
        self._backup = [p.detach().clone() for p in self._params]
        _copy_all([p.detach() for p in self._params], self._ema)
        return True

    @torch.no_grad()
    def _swap_out(self) -> None:
        if self._backup is None:
            return
        _copy_all([p.detach() for p in self._params], self._backup)
        self._backup = None

    @contextlib.contextmanager
    def swapped(self, pl_module: LightningModule) -> Iterator[LightningModule]:
        """Context manager: the module holds the EMA weights inside, its own weights after.

        Does nothing if no average exists yet or if the EMA is already swapped in.
        """
        if not self._params:
            self._bind(pl_module)
            if self._pending_state is not None:
                self._apply_pending()
        did = self._swap_in(pl_module)
        try:
            yield pl_module
        finally:
            if did:
                self._swap_out()

    def _eval_start(self, pl_module: LightningModule) -> None:
        if not self.use_for_validation:
            return
        if not self._params:
            # standalone validate/test/predict: the average can only come from a restored checkpoint
            if self._pending_state is None:
                return
            self._bind(pl_module)
            self._apply_pending()
        self._swap_in(pl_module)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_start(pl_module)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._swap_out()

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_start(pl_module)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._swap_out()

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_start(pl_module)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._swap_out()

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        # Lightning calls load_state_dict for callbacks only when fitting; for test/predict from a
        # checkpoint pick the average up here so evaluation uses it.
        if trainer.state.fn == "fit":
            return
        for key, value in (checkpoint.get("callbacks") or {}).items():
            if key == self.state_key and value:
                self._pending_state = dict(value)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        # A checkpoint written while the average is swapped in (e.g. by a callback running inside
        # validation) must still hold the raw training weights in its module state.
        if self._backup is None or "state_dict" not in checkpoint:
            return
        sd = checkpoint["state_dict"]
        for name, raw in zip(self._names, self._backup):
            if name in sd:
                sd[name] = raw.detach().clone()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._swap_out()

    # ---------------------------------------------------------------- export
    def ema_state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights by parameter name (full tensors; gathered if sharded)."""
        out = {}
        for name, t in zip(self._names, self._ema):
            if hasattr(t, "full_tensor"):  # DTensor shard under FSDP2
                t = t.full_tensor()
            out[name] = t.detach().cpu().contiguous()
        return out

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.export_path is None or not self._ema:
            return
        weights = self.ema_state_dict()  # collective under FSDP2: every rank takes part
        if not trainer.is_global_zero:
            return
        path = self.export_path
        if not os.path.isabs(path):
            path = os.path.join(run_dir(trainer), path)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        from safetensors.torch import save_file

        tmp = f"{path}.tmp-{os.getpid()}"
        save_file(weights, tmp, metadata={"format": "pt", "source": "EMACallback", "decay": str(self.decay),
                                          "num_updates": str(self.num_updates)})
        os.replace(tmp, path)
        log.info("EMACallback: exported %d EMA tensors to %s", len(weights), path)
        self.exported_to = path

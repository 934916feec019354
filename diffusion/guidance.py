"""Classifier-free guidance: a conditional network -> a denoiser (Ho & Salimans [104]; digest §1.7 [EXT]).

Ch. 2 does not write CFG; Ch. 3 and Ch. 4 use it (Ch. 4: scale 2, three conditions dropped
with p = 0.1). Guidance is linear in the network output, so it applies unchanged to
``epsilon``, ``sample``, ``v_prediction``, ``velocity`` or ``score`` outputs, as long as every
pass sees the same ``(x_t, t)``.

``net(x_t, t, cond) -> Tensor`` receives the Ch. 2 time ``t`` ``[B]`` (wrap it with
``path.network_time`` yourself if the network wants its own time input) and a dict of
conditions. Null conditions come from ``null_cond``: a pass without condition ``k`` uses
``null_cond[k]`` (a tensor with batch 1 is expanded to the batch). Keys not mentioned in
``null_cond`` are always passed as given.

Compositions for several conditions (``scale`` a dict ``{key: w}``), [GAP] (Ch. 4 does not say;
both are selectable, ``mode``):

* ``'independent'``: ``u + sum_i w_i (c_i - u)`` with ``u`` all guided conditions null and
  ``c_i`` only condition ``i`` present (composable diffusion; ``1 + n`` passes, plus the fully
  conditional pass when an interval or channel restriction needs it);
* ``'nested'``: InstructPix2Pix-style ``e_0 + sum_k w_k (e_k - e_{k-1})`` where ``e_k`` has the
  first ``k`` conditions of ``order`` present (``n + 1`` passes; ``e_n`` is fully conditional).

The unconditional pass of the single-scale form nulls every key of ``null_cond`` (the
digest's default "all conditions zeroed"). Extras: a guidance interval (outside it the
output is the conditional one), channel-restricted guidance (AlignTok: only some latent
channels guided, the rest conditional), and per-frame linear ramps for video (SVD /
MimicMotion: a scale ``(min, max)`` becomes ``linspace(min, max, F)`` along ``frame_dim``).
All passes go through one batched network call by concatenation unless ``batched=False``.
The nested form with three keys is thesis 000, Ch. 5's Eq. 5.1 for ``{c_im, c_s, c_p}``
(``order = [image, spatial, text]``, scales 3 / 3 / 5): 4 passes in one call.

:class:`MaskedComposition` adds spatially masked sums of denoisers ``sum_i w_i M_i * d_i``:
Ch. 5's composed pair generation (Eq. 5.2: whole-canvas term 0.1, left-half term 0.9, right-half
term 0.9, each an ordinary CFG prediction) and its mask-guided editing (``M * d_b + (1 - M) * d_a``).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from .predictions import validate_prediction_type
from .tensor_utils import as_time

__all__ = ["ClassifierFreeGuidance", "GUIDANCE_MODES", "MaskedComposition"]

GUIDANCE_MODES: tuple[str, ...] = ("independent", "nested")
Scale = float | tuple[float, float]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return a is b
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - exotic objects: identity only
        return a is b


class ClassifierFreeGuidance:
    """A denoiser ``(x_t, t) -> guided output`` built from ``net(x_t, t, cond)``.

    Args:
        net: the conditional network callable.
        prediction_type: what ``net`` outputs (becomes this denoiser's ``prediction_type``).
        cond: the conditions of this sampling call (tensors batch-first).
        null_cond: the null value of each droppable condition.
        scale: a float, a ``(min, max)`` per-frame ramp, or a dict ``{key: float | (min, max)}``
            for per-condition guidance. ``1`` reproduces the conditional output, ``0`` the
            unconditional one.
        mode: ``'independent'`` or ``'nested'`` (only for dict scales).
        order: the key order for ``'nested'`` (default: the dict's order).
        interval: ``(t_lo, t_hi)``; guidance only where ``t_lo <= t <= t_hi``, else conditional.
        channels: guide only these indices along ``channel_dim`` (others stay conditional).
        channel_dim: the channel axis of ``x_t`` (1 for ``[B, C, H, W]``, 2 for ``[B, F, C, H, W]``).
        frame_dim: the frame axis for ``(min, max)`` ramps (1 for ``[B, F, C, H, W]``).
        batched: concatenate all passes into one network call.
    """

    def __init__(
        self,
        net: Callable[[Tensor, Tensor, dict], Tensor],
        prediction_type: str,
        cond: Mapping[str, Any],
        null_cond: Mapping[str, Any],
        scale: Scale | Mapping[str, Scale] = 1.0,
        mode: str = "independent",
        order: Sequence[str] | None = None,
        interval: tuple[float, float] | None = None,
        channels: Sequence[int] | slice | None = None,
        channel_dim: int = 1,
        frame_dim: int | None = None,
        batched: bool = True,
    ) -> None:
        self.net = net
        self.prediction_type = validate_prediction_type(prediction_type)
        self.cond = dict(cond)
        self.null_cond = dict(null_cond)
        if mode not in GUIDANCE_MODES:
            raise ValueError(f"unknown guidance mode {mode!r}; valid names: {', '.join(GUIDANCE_MODES)}")
        self.mode = mode
        self.multi = isinstance(scale, Mapping)
        if self.multi:
            keys = list(order) if order is not None else list(scale.keys())  # type: ignore[union-attr]
            if set(keys) != set(scale.keys()):  # type: ignore[union-attr]
                raise ValueError(f"order {keys} must list exactly the scale keys {list(scale.keys())}")  # type: ignore[union-attr]
            missing = [k for k in keys if k not in self.null_cond]
            if missing:
                raise ValueError(f"no null value for guided condition(s) {missing}; add them to null_cond")
            self.keys = keys
            self.scales = {k: scale[k] for k in keys}  # type: ignore[index]
        else:
            self.keys = list(self.null_cond.keys())
            self.scales = {"*": scale}
        for value in self.scales.values():
            if isinstance(value, tuple) and frame_dim is None:
                raise ValueError("a (min, max) ramp scale needs frame_dim")
        if interval is not None and not interval[0] <= interval[1]:
            raise ValueError(f"interval must be (t_lo, t_hi) with t_lo <= t_hi, got {interval}")
        self.interval = interval
        self.channels = channels
        self.channel_dim = channel_dim
        self.frame_dim = frame_dim
        self.batched = bool(batched)
        self._ramp_cache: dict[tuple, Tensor] = {}
        self._mask_cache: dict[tuple, Tensor] = {}

    # --- pass construction ---------------------------------------------------------------
    def _with(self, present: Sequence[str]) -> dict:
        """The condition dict with every guided key outside ``present`` replaced by its null value."""
        out = dict(self.cond)
        for k in self.keys:
            if k not in present:
                out[k] = self.null_cond[k]
        if not self.multi:  # single scale: null_cond may hold keys that cond lacks
            for k, v in self.null_cond.items():
                if k not in present:
                    out[k] = v
        return out

    def _passes(self, need_full: bool) -> tuple[list[dict], dict[str, int]]:
        """Condition dicts to evaluate and where each named result sits."""
        dicts: list[dict] = []
        index: dict[str, int] = {}

        def add(name: str, d: dict) -> None:
            index[name] = len(dicts)
            dicts.append(d)

        if not self.multi:
            add("full", dict(self.cond))
            add("null", self._with([]))
            return dicts, index
        add("null", self._with([]))
        if self.mode == "independent":
            for k in self.keys:
                add(k, self._with([k]))
            if need_full and len(self.keys) > 1:
                add("full", dict(self.cond))
            elif need_full:
                index["full"] = index[self.keys[0]]
        else:
            for j, k in enumerate(self.keys):
                add(k, self._with(self.keys[: j + 1]))
            index["full"] = index[self.keys[-1]]
        return dicts, index

    @staticmethod
    def _fit_batch(value: Any, batch: int) -> Any:
        if isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == 1 and batch > 1:
            return value.expand(batch, *value.shape[1:])
        return value

    def _evaluate(self, x_t: Tensor, t: Tensor, dicts: list[dict]) -> list[Tensor]:
        B = x_t.shape[0]
        dicts = [{k: self._fit_batch(v, B) for k, v in d.items()} for d in dicts]
        if len(dicts) == 1:
            return [self.net(x_t, t, dicts[0])]
        if self.batched:
            merged = self._merge(dicts)
            if merged is not None:
                P = len(dicts)
                out = self.net(torch.cat([x_t] * P, dim=0), torch.cat([t] * P, dim=0), merged)
                return list(out.chunk(P, dim=0))
        return [self.net(x_t, t, d) for d in dicts]

    @staticmethod
    def _merge(dicts: list[dict]) -> dict | None:
        """Concatenate per-pass condition dicts along the batch; ``None`` when they cannot be."""
        keys = dicts[0].keys()
        if any(d.keys() != keys for d in dicts):
            return None
        merged: dict = {}
        for k in keys:
            values = [d[k] for d in dicts]
            if all(isinstance(v, Tensor) and v.ndim > 0 for v in values):
                if any(v.shape[1:] != values[0].shape[1:] or v.shape[0] != values[0].shape[0] for v in values):
                    return None
                merged[k] = torch.cat(values, dim=0)
            elif all(_same(v, values[0]) for v in values):
                merged[k] = values[0]
            else:
                return None
        return merged

    # --- scales and masks ------------------------------------------------------------------
    def _scale(self, value: Scale, x: Tensor) -> Tensor | float:
        if not isinstance(value, tuple):
            return float(value)
        frames = x.shape[self.frame_dim]  # type: ignore[index]
        key = (value, frames, x.ndim, x.device, x.dtype)
        ramp = self._ramp_cache.get(key)
        if ramp is None:
            ramp = torch.linspace(value[0], value[1], frames, device=x.device, dtype=x.dtype)
            shape = [1] * x.ndim
            shape[self.frame_dim] = frames  # type: ignore[index]
            ramp = ramp.reshape(shape)
            self._ramp_cache[key] = ramp
        return ramp

    def _channel_mask(self, x: Tensor) -> Tensor | None:
        if self.channels is None:
            return None
        n = x.shape[self.channel_dim]
        key = (n, x.ndim, x.device)
        mask = self._mask_cache.get(key)
        if mask is None:
            flat = torch.zeros(n, dtype=torch.bool)
            flat[self.channels] = True
            shape = [1] * x.ndim
            shape[self.channel_dim] = n
            mask = flat.reshape(shape).to(x.device)
            self._mask_cache[key] = mask
        return mask

    def _trivial(self) -> str | None:
        """``'full'``/``'null'`` when a single plain scale of 1 / 0 makes one pass enough."""
        if self.multi:
            return None
        value = self.scales["*"]
        if isinstance(value, tuple):
            return None
        if float(value) == 1.0:
            return "full"
        if float(value) == 0.0 and self.interval is None and self.channels is None:
            return "null"
        return None

    # --- denoiser -------------------------------------------------------------------------------
    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        t = as_time(t, x_t)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        trivial = self._trivial()
        if trivial == "full":
            return self.net(x_t, t, self._evaluate_dict(x_t, dict(self.cond)))
        if trivial == "null":
            return self.net(x_t, t, self._evaluate_dict(x_t, self._with([])))
        dicts, index = self._passes(need_full=self._restricted)
        return self._combine(self._evaluate(x_t, t, dicts), index, x_t, t)

    @property
    def _restricted(self) -> bool:
        return self.interval is not None or self.channels is not None

    @property
    def shareable(self) -> bool:
        """Whether :class:`MaskedComposition` may merge this guidance's passes with others' (plain batched form)."""
        return self.batched and not self._restricted and self._trivial() is None

    def _combine(self, outs: Sequence[Tensor], index: Mapping[str, int], x_t: Tensor, t: Tensor) -> Tensor:
        """The guided output from the pass outputs (``outs[index[name]]``)."""
        restricted = self._restricted
        u = outs[index["null"]]
        if not self.multi:
            c = outs[index["full"]]
            guided = u + self._scale(self.scales["*"], x_t) * (c - u)
        else:
            guided = u
            previous = u
            for k in self.keys:
                e = outs[index[k]]
                base = u if self.mode == "independent" else previous
                guided = guided + self._scale(self.scales[k], x_t) * (e - base)
                previous = e
            c = outs[index["full"]] if "full" in index else None
        if not restricted:
            return guided
        assert c is not None
        mask = self._channel_mask(x_t)
        if self.interval is not None:
            t_lo, t_hi = self.interval
            in_t = ((t >= t_lo) & (t <= t_hi)).reshape((-1,) + (1,) * (x_t.ndim - 1))
            mask = in_t if mask is None else mask & in_t
        return torch.where(mask, guided, c)

    def _evaluate_dict(self, x_t: Tensor, d: dict) -> dict:
        B = x_t.shape[0]
        return {k: self._fit_batch(v, B) for k, v in d.items()}


class MaskedComposition:
    """A denoiser ``sum_i weight_i * mask_i * denoiser_i(x_t, t)`` (thesis 000, Ch. 5, Eq. 5.2 and §5.2.4).

    Args:
        terms: ``(weight, mask, denoiser)`` triples; ``mask`` is ``None`` (everywhere) or a tensor
            broadcastable to ``x_t`` (e.g. ``[1, 1, h, 2w]`` half masks, ``[B, 1, h, w]`` edit masks).
            Every denoiser must share one ``prediction_type`` (the sum is only meaningful then;
            guidance is linear in the output, see the module docstring).
        share_passes: when every term is a plain batched :class:`ClassifierFreeGuidance` over the same
            ``net``, evaluate all their passes in **one** network call and each distinct pass once
            (passes are the same when every condition value is the same object, or equal for
            non-tensors). Mask-guided editing then costs 5 evaluations per step instead of 8: the
            null / image / image+spatial passes of the ``p_a`` and ``p_b`` predictions coincide.
            Eq. 5.2's three terms share the null pass: 4 instead of 6.
    """

    def __init__(self, terms: Sequence[tuple[float, Tensor | None, Callable[[Tensor, Tensor], Tensor]]],
                 share_passes: bool = True) -> None:
        if not terms:
            raise ValueError("MaskedComposition needs at least one term")
        kinds = {getattr(d, "prediction_type", None) for _, _, d in terms}
        if len(kinds) != 1 or None in kinds:
            raise ValueError(f"all composed denoisers need one common prediction_type, got {sorted(map(str, kinds))}")
        self.prediction_type = validate_prediction_type(kinds.pop())
        self.terms = [(float(w), m, d) for w, m, d in terms]
        self.share_passes = bool(share_passes)
        self.last_evaluations: int | None = None

    def _shared(self) -> bool:
        dens = [d for w, _, d in self.terms if w != 0.0]
        return (len(dens) > 1 and all(isinstance(d, ClassifierFreeGuidance) and d.shareable for d in dens)
                and all(d.net == dens[0].net for d in dens))  # bound methods compare by (self, function)

    def _outputs(self, x_t: Tensor, t: Tensor) -> list[Tensor]:
        """Every term's guided output from one network call: passes the terms share are evaluated once."""
        dens = [d for w, _, d in self.terms if w != 0.0]
        unique: list[dict] = []
        plans = []
        for d in dens:
            dicts, index = d._passes(need_full=False)
            where = []
            for cond in dicts:
                hit = next((j for j, u in enumerate(unique)
                            if u.keys() == cond.keys() and all(_same(u[k], cond[k]) for k in cond)), None)
                if hit is None:
                    unique.append(cond)
                    hit = len(unique) - 1
                where.append(hit)
            plans.append((d, index, where))
        self.last_evaluations = len(unique)
        outs = dens[0]._evaluate(x_t, t, unique)
        return [d._combine([outs[j] for j in where], index, x_t, t) for d, index, where in plans]

    def term_outputs(self, x_t: Tensor, t: Tensor) -> list[Tensor]:
        """Each (non-zero-weight) term's own output, unweighted and unmasked, sharing passes when possible."""
        t = as_time(t, x_t)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        if self.share_passes and self._shared():
            return self._outputs(x_t, t)
        return [d(x_t, t) for w, _, d in self.terms if w != 0.0]

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        if self.share_passes and self._shared():
            t = as_time(t, x_t)
            if t.ndim == 0:
                t = t.expand(x_t.shape[0])
            outs = iter(self._outputs(x_t, t))
            total = None
            for weight, mask, _ in self.terms:
                if weight == 0.0:
                    continue
                out = next(outs)
                part = out * weight if mask is None else out * (mask.to(out.dtype) * weight)
                total = part if total is None else total + part
            return total
        total: Tensor | None = None
        for weight, mask, denoiser in self.terms:
            if weight == 0.0:
                continue
            out = denoiser(x_t, t)
            part = out * weight if mask is None else out * (mask.to(out.dtype) * weight)
            total = part if total is None else total + part
        if total is None:
            return torch.zeros_like(x_t)
        return total

"""Small tensor helpers shared by the diffusion core (broadcasting per-sample scalars)."""
from __future__ import annotations

import torch
from torch import Tensor


def as_time(t: Tensor | float, like: Tensor | None = None) -> Tensor:
    """Return ``t`` as a floating tensor (on ``like``'s device when ``t`` is a Python number)."""
    if isinstance(t, Tensor):
        return t if t.is_floating_point() else t.to(torch.get_default_dtype())
    device = like.device if like is not None else None
    dtype = like.dtype if like is not None and like.is_floating_point() else torch.get_default_dtype()
    return torch.as_tensor(t, device=device, dtype=dtype)


def expand_to(coef: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-sample coefficient ``[B]`` (or a scalar) so it broadcasts over ``x`` ``[B, ...]``.

    The coefficient is cast to ``x``'s dtype and device, so a float64 schedule never
    silently promotes a float32 activation.
    """
    coef = coef.to(device=x.device, dtype=x.dtype)
    if coef.ndim == 0:
        return coef
    if coef.ndim > x.ndim:
        raise ValueError(f"coefficient with shape {tuple(coef.shape)} cannot broadcast over {tuple(x.shape)}")
    return coef.reshape(coef.shape + (1,) * (x.ndim - coef.ndim))

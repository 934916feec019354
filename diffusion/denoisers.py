"""Denoiser wrappers: a network plus a path become ``(x_t, t) -> prediction`` (see docs/architecture.md).

A denoiser takes the Ch. 2 time ``t`` ``[B]``; the network receives ``path.network_time(t)``
(DDPM step, EDM ``c_noise``, flow ``t * 1000``), see :mod:`diffusion.paths`.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import Tensor, nn

from .paths import AffinePath
from .predictions import validate_prediction_type
from .tensor_utils import as_time

__all__ = ["ConditionedEpsilon", "NetworkDenoiser", "unwrap_output"]


def unwrap_output(out: Any) -> Tensor:
    """Return the tensor of a network output (diffusers' ``UNet2DOutput.sample``, a tuple's head, a tensor)."""
    if isinstance(out, Tensor):
        return out
    sample = getattr(out, "sample", None)
    if isinstance(sample, Tensor):
        return sample
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise TypeError(f"cannot find the prediction tensor in a {type(out).__name__}")


class NetworkDenoiser(nn.Module):
    """``network(x_t, path.network_time(t), **kwargs)`` with a declared ``prediction_type``.

    ``kwargs`` are fixed extra inputs (e.g. ``class_labels``). Being an ``nn.Module`` it moves
    with the network and shows up in module summaries.
    """

    def __init__(
        self,
        network: nn.Module | Callable[..., Any],
        path: AffinePath,
        prediction_type: str,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.network = network
        self.path = path
        self.prediction_type = validate_prediction_type(prediction_type)
        self.kwargs = kwargs

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        t = as_time(t, x_t)
        return unwrap_output(self.network(x_t, self.path.network_time(t), **self.kwargs))


class ConditionedEpsilon:
    """``net(x_t, t, cond)`` as an epsilon denoiser with the condition dict bound.

    For latent models whose network wrapper already maps the sampler's time to its own input
    (Inverse Painting's renderer, the portrait MCDM): the sampler calls ``(x_t, t)``, the
    wrapper receives the bound condition each time. A plain object, not an ``nn.Module``: it is
    built per sampling call and holds no parameters of its own.
    """

    prediction_type = "epsilon"

    def __init__(self, net: Callable[..., Tensor], cond: dict[str, Any]) -> None:
        self.net, self.cond = net, cond

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.net(x_t, t, self.cond)

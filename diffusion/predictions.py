"""Network output parametrizations and exact conversions between them (thesis 000, Ch. 2, §2.2.2).

Every prediction type is a linear function of ``(data, noise)`` at fixed ``t`` and, because
``x_t = data_coef * data + noise_coef * noise`` (Eq. 2.12), every one can be turned back
into ``(data_hat, noise_hat)`` given ``x_t``. The names and what the network outputs:

=================  ===================================================================
``epsilon``        the noise ``X_0`` (epsilon-prediction)
``sample``         the data ``X_1`` (x-prediction)
``v_prediction``   Salimans-Ho ``v = data_coef * noise - noise_coef * data`` (any affine path;
                   digest §1.5 shows this is the ``v`` of the thesis's velocity identity)
``velocity``       the ODE velocity ``dx_t/dt = data_coef' data + noise_coef' noise`` in the
                   Ch. 2 direction (Eq. 2.5: ``data - noise`` on the straight path)
``score``          ``grad log p_t(x_t) = -noise / noise_coef`` (digest §1.6)
``sd3_velocity``   the SD3-direction velocity ``dx/ds`` with ``s = 1 - t``, i.e.
                   ``-velocity`` (``noise - data`` on the straight path). An alias for
                   networks trained with SD3's ``t = 1``-is-noise convention.
=================  ===================================================================

Conversions (digest §1.7, exact for any affine path)::

    data_hat  = A x_t + B pred,   noise_hat = C x_t + D pred     (to_data_and_noise)
    pred      = E data + F noise                                   (from_data_and_noise)

The coefficient form lets samplers fold the whole conversion into per-step constants
computed once before the loop (:func:`conversion_coefficients`).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .paths import AffinePath
from .tensor_utils import as_time, expand_to

__all__ = [
    "PREDICTION_TYPES",
    "validate_prediction_type",
    "conversion_coefficients",
    "target_coefficients",
    "to_data_and_noise",
    "from_data_and_noise",
    "training_target",
    "convert_prediction",
    "SD3DirectionAdapter",
]

PREDICTION_TYPES: tuple[str, ...] = ("epsilon", "sample", "v_prediction", "velocity", "score", "sd3_velocity")


def validate_prediction_type(prediction_type: str) -> str:
    """Return ``prediction_type`` if known, else raise ``ValueError`` naming it and the valid names."""
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(
            f"unknown prediction_type {prediction_type!r}; valid names: {', '.join(PREDICTION_TYPES)}"
        )
    return prediction_type


def conversion_coefficients(
    prediction_type: str, t: Tensor, path: AffinePath
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(A, B, C, D)`` with ``data_hat = A x_t + B pred`` and ``noise_hat = C x_t + D pred``.

    Elementwise in ``t``. Derivation: solve the 2x2 system ``[x_t; pred] = M [data; noise]``
    with the first row ``(data_coef, noise_coef)`` (Eq. 2.12) and the second row the
    prediction's :func:`target_coefficients`. Singular where the prediction carries no
    information beyond ``x_t`` (e.g. ``epsilon`` at ``data_coef = 0``).
    """
    validate_prediction_type(prediction_type)
    t = as_time(t)
    a, b = path.data_coef(t), path.noise_coef(t)
    if prediction_type == "epsilon":
        inv_a = 1.0 / a
        return inv_a, -b * inv_a, torch.zeros_like(a), torch.ones_like(a)
    if prediction_type == "sample":
        inv_b = 1.0 / b
        return torch.zeros_like(a), torch.ones_like(a), inv_b, -a * inv_b
    if prediction_type == "score":
        inv_a = 1.0 / a
        return inv_a, b * b * inv_a, torch.zeros_like(a), -b
    e, f = target_coefficients(prediction_type, t, path)
    det = a * f - b * e
    return f / det, -b / det, -e / det, a / det


def target_coefficients(prediction_type: str, t: Tensor, path: AffinePath) -> tuple[Tensor, Tensor]:
    """``(E, F)`` with ``pred = E data + F noise`` for the clean pair ``(data, noise)``."""
    validate_prediction_type(prediction_type)
    t = as_time(t)
    if prediction_type == "epsilon":
        return torch.zeros_like(t), torch.ones_like(t)
    if prediction_type == "sample":
        return torch.ones_like(t), torch.zeros_like(t)
    if prediction_type == "v_prediction":
        return -path.noise_coef(t), path.data_coef(t)
    if prediction_type == "velocity":
        return path.data_coef_deriv(t), path.noise_coef_deriv(t)
    if prediction_type == "sd3_velocity":
        return -path.data_coef_deriv(t), -path.noise_coef_deriv(t)
    # score
    return torch.zeros_like(t), -1.0 / path.noise_coef(t)


def to_data_and_noise(
    prediction: Tensor, prediction_type: str, x_t: Tensor, t: Tensor, path: AffinePath
) -> tuple[Tensor, Tensor]:
    """Recover ``(data_hat, noise_hat)`` from a network output (digest §1.7 conversions).

    ``t`` has shape ``[B]`` (or is a scalar) and broadcasts over the remaining dimensions.
    """
    t = as_time(t, x_t)
    A, B, C, D = conversion_coefficients(prediction_type, t, path)
    data = expand_to(A, x_t) * x_t + expand_to(B, x_t) * prediction
    noise = expand_to(C, x_t) * x_t + expand_to(D, x_t) * prediction
    return data, noise


def from_data_and_noise(
    data: Tensor, noise: Tensor, x_t: Tensor | None, t: Tensor, path: AffinePath, prediction_type: str
) -> Tensor:
    """Express a ``(data, noise)`` pair in ``prediction_type`` at time ``t``.

    ``x_t`` is accepted for symmetry with :func:`to_data_and_noise`; every supported type is a
    function of ``(data, noise)`` alone.
    """
    t = as_time(t, data)
    E, F = target_coefficients(prediction_type, t, path)
    return expand_to(E, data) * data + expand_to(F, noise) * noise


def training_target(
    prediction_type: str, x_data: Tensor, noise: Tensor, t: Tensor, path: AffinePath
) -> Tensor:
    """The regression target for ``prediction_type`` (Eq. 2.6 / 2.15 / 2.17 all regress one of these)."""
    return from_data_and_noise(x_data, noise, None, t, path, prediction_type)


def convert_prediction(
    prediction: Tensor, from_type: str, to_type: str, x_t: Tensor, t: Tensor, path: AffinePath
) -> Tensor:
    """Re-express a network output of ``from_type`` as ``to_type`` at the same ``(x_t, t)``."""
    validate_prediction_type(to_type)
    if from_type == to_type:
        validate_prediction_type(from_type)
        return prediction
    data, noise = to_data_and_noise(prediction, from_type, x_t, t, path)
    return from_data_and_noise(data, noise, x_t, t, path, to_type)


class SD3DirectionAdapter:
    """Make a network trained in the SD3 direction a Ch. 2 denoiser.

    SD3 (and the thesis's Ch. 7) writes ``z_s = (1 - s) data + s noise`` with ``s = 1`` noise
    and trains ``u = noise - data``. With ``s = 1 - t`` that is the straight path of Eq. 2.4 and
    ``u = -dx_t/dt``. The adapter calls ``sd3_model(x_t, s)`` with ``s = 1 - t`` (times
    ``time_scale``, default 1: pass 1000 for a raw diffusers SD3 transformer timestep) and
    returns ``-u``, the Ch. 2 ODE velocity; its ``prediction_type`` is ``velocity``.

    :meth:`to_sd3` does the inverse (a Ch. 2 velocity model seen from SD3 code).
    """

    prediction_type = "velocity"

    def __init__(self, sd3_model: Callable[[Tensor, Tensor], Tensor], time_scale: float = 1.0) -> None:
        self.sd3_model = sd3_model
        self.time_scale = float(time_scale)

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        s = (1.0 - as_time(t, x_t)) * self.time_scale
        return -self.sd3_model(x_t, s)

    @staticmethod
    def to_sd3(velocity_model: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
        """Wrap a Ch. 2 velocity model ``v(x, t)`` as an SD3 model ``u(z, s) = -v(z, 1 - s)``."""

        def sd3_model(z: Tensor, s: Tensor) -> Tensor:
            return -velocity_model(z, 1.0 - as_time(s, z))

        return sd3_model

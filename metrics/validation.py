"""Input checks shared by the metrics: clear errors that say what was expected and what came in."""
from __future__ import annotations

import os
from typing import Optional, Sequence

import torch
from torch import Tensor

#: Slack on the value-range check, so images that went through a resize or a
#: float round trip (values like 1.0000001) are accepted.
RANGE_TOLERANCE = 1e-3


def check_images(
    images: Tensor,
    name: str = "images",
    *,
    ndim: int = 4,
    channels: Optional[Sequence[int]] = None,
    value_range: Optional[tuple[float, float]] = (-1.0, 1.0),
    allow_empty: bool = False,
) -> Tensor:
    """Check that ``images`` is a float tensor of rank ``ndim`` with values in ``value_range``.

    Raises ``TypeError`` / ``ValueError`` whose message states the expected
    dtype, shape or range next to what was received. Returns ``images``.
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, received {type(images).__name__}")
    if not images.is_floating_point():
        lo, hi = value_range if value_range is not None else ("any", "any")
        raise TypeError(
            f"{name}: expected a floating-point tensor with values in [{lo}, {hi}], received dtype "
            f"{images.dtype}; convert uint8 images with `x.float() / 127.5 - 1`"
        )
    if images.ndim != ndim:
        layout = {4: "[B, C, H, W]", 5: "[B, T, C, H, W]", 3: "[B, H, W]", 2: "[B, D]"}.get(ndim, f"{ndim} dims")
        raise ValueError(f"{name}: expected shape {layout}, received shape {tuple(images.shape)}")
    if channels is not None:
        channel_dim = 2 if ndim == 5 else 1
        if images.shape[channel_dim] not in tuple(channels):
            raise ValueError(
                f"{name}: expected {' or '.join(str(c) for c in channels)} channels at dim {channel_dim}, "
                f"received shape {tuple(images.shape)}"
            )
    if images.numel() == 0:
        if allow_empty:
            return images
        raise ValueError(f"{name}: received an empty tensor of shape {tuple(images.shape)}")
    if value_range is not None:
        lo, hi = value_range
        found_lo, found_hi = float(images.min()), float(images.max())
        if found_lo < lo - RANGE_TOLERANCE or found_hi > hi + RANGE_TOLERANCE:
            raise ValueError(
                f"{name}: expected values in [{lo}, {hi}], received values in [{found_lo:.4g}, {found_hi:.4g}]"
                + ("; images in [0, 1] must be mapped with `2 * x - 1`" if lo == -1.0 and found_lo >= 0 else "")
            )
    return images


def check_same_shape(a: Tensor, b: Tensor, name_a: str = "preds", name_b: str = "target") -> None:
    """Raise ``ValueError`` naming both shapes when two paired inputs differ in shape."""
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, received {tuple(a.shape)} and {tuple(b.shape)}")


def check_mask(mask: Tensor, like: Tensor, name: str = "mask") -> Tensor:
    """Check a foreground mask ``[B, 1, H, W]`` or ``[B, H, W]`` (bool or {0,1}) against images ``like``.

    Returns a float mask ``[B, 1, H, W]``.
    """
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, received {type(mask).__name__}")
    if mask.ndim == 3:
        mask = mask.unsqueeze(1)
    expected = (like.shape[0], 1, like.shape[-2], like.shape[-1])
    if mask.ndim != 4 or tuple(mask.shape) != expected:
        raise ValueError(f"{name}: expected shape {expected} (or without the channel dim), received {tuple(mask.shape)}")
    mask = mask.float()
    if mask.numel() and (float(mask.min()) < 0 or float(mask.max()) > 1):
        raise ValueError(f"{name}: expected values in {{0, 1}}, received values in [{float(mask.min())}, {float(mask.max())}]")
    return mask


def require_weights_file(
    path: Optional[str | os.PathLike],
    *,
    config_key: str,
    expected: str,
    source: str,
) -> Optional[str]:
    """Return ``path`` as a string if it is ``None`` or an existing file; otherwise fail at once.

    The error names the config key to set, the file that is expected there
    and where that file comes from, because nothing is downloaded at run time.
    """
    if path is None:
        return None
    path = os.path.expanduser(os.fspath(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{config_key}: weight file not found at {path!r}. Expected {expected}, which comes from {source}. "
            f"Download it once, then set `{config_key}` to its local path "
            f"(or to null for random weights, which only suit tests)."
        )
    return path


__all__ = ["check_images", "check_same_shape", "check_mask", "require_weights_file", "RANGE_TOLERANCE"]

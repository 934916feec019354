"""Progressive latent fusion: a long video denoised as overlapping windows, fused every step.

Thesis 000, Ch. 4, §4.4 (seed lines ~830-845; digest §3.5): inference uses MimicMotion's
progressive latent fusion [327] with 4 overlapping frames between segments. At every sampler
step each window of ``window`` frames is denoised on its own and the per-frame outputs are
averaged with triangular weights ([EXT], MimicMotion: ``w_k = min((k + 1/2) 2/L, 2 - (k + 1/2) 2/L)``
for the ``L`` non-prefix frames of a window), so segment borders blend smoothly.

Here this is a *denoiser wrapper*: ``ProgressiveLatentFusion(window_fn, ...)`` is itself a
denoiser ``(x_t [B, F, ...], t) -> output`` with the inner prediction type, usable by any sampler
of :mod:`diffusion.samplers`. Fusing the raw outputs is exact for every prediction type because
all windows see the same ``t`` and every conversion is affine in the output at fixed ``(x_t, t)``
with per-frame identical coefficients.

``prefix`` frames (the Fit-Check front / back references, frames 0 and 1) are prepended to
every window ([GAP]: the thesis only says MimicMotion's fusion is used; MimicMotion prefixes its
single reference frame, and prefixing both references is the natural extension, digest §3.5).
``prefix_weighting="one"``: prefix frames get weight 1 in every window (their fused output is the
mean over windows); ``"triangular"``: the triangle spans the whole window, prefix included, as in
MimicMotion's pipeline (its reference frame 0 takes the first tile position's weight ``1/L``).

``window_fn(x_window, t, frames)`` receives the window's latents ``[B, L, ...]`` and the frame
indices ``frames`` (``LongTensor [L]``, prefix first) so the caller can slice per-frame
conditions (poses). With a single window covering every frame the wrapper returns exactly
``window_fn(x, t, arange(F))``: plain sampling.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["ProgressiveLatentFusion", "fusion_windows", "triangular_weights"]


def triangular_weights(length: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """MimicMotion's per-frame window weights ``min((k + 1/2) 2/L, 2 - (k + 1/2) 2/L)``, ``k < L``."""
    if length < 1:
        raise ValueError(f"window length must be >= 1, got {length}")
    k = torch.arange(length, dtype=torch.float64) + 0.5
    return torch.minimum(k * 2 / length, 2 - k * 2 / length).to(dtype)


def fusion_windows(num_frames: int, window: int, overlap: int, prefix: Sequence[int] = ()) -> list[list[int]]:
    """Frame indices of each window (prefix first), covering every non-prefix frame.

    Non-prefix frames are split into windows of ``window - len(prefix)`` frames with stride
    ``window - len(prefix) - overlap``; the last window is aligned to end on the last frame (so
    every window has full length when there are enough frames).
    """
    prefix = [int(p) for p in prefix]
    body = [f for f in range(num_frames) if f not in set(prefix)]
    span = window - len(prefix)
    if span < 1:
        raise ValueError(f"window={window} leaves no frame after the {len(prefix)} prefix frames")
    if not 0 <= overlap < span:
        raise ValueError(f"overlap must be in [0, {span}), got {overlap}")
    if len(body) <= span:
        return [prefix + body]
    stride = span - overlap
    starts = list(range(0, len(body) - span + 1, stride))
    if starts[-1] + span < len(body):
        starts.append(len(body) - span)
    return [prefix + body[s : s + span] for s in starts]


class ProgressiveLatentFusion:
    """A denoiser that evaluates overlapping frame windows and fuses them with triangular weights.

    Args:
        window_fn: ``(x_window, t, frames) -> output`` with the same shape as ``x_window``.
        prediction_type: the prediction type of ``window_fn``'s output.
        window: frames per network call, prefix included (``T + 2``: 8 in training, 16-24 at test).
        overlap: frames shared by consecutive windows (4 in the thesis).
        prefix: frame indices prepended to every window (the references).
        frame_dim: the frame axis of ``x_t`` (1 for ``[B, F, C, H, W]``).
        prefix_weighting: ``"one"`` (prefix weight 1) or ``"triangular"`` (MimicMotion: one
            triangle over the whole window, prefix positions included).
    """

    def __init__(
        self,
        window_fn: Callable[[Tensor, Tensor, Tensor], Tensor],
        prediction_type: str,
        window: int,
        overlap: int = 4,
        prefix: Sequence[int] = (0, 1),
        frame_dim: int = 1,
        prefix_weighting: str = "one",
    ) -> None:
        if prefix_weighting not in ("one", "triangular"):
            raise ValueError(f"prefix_weighting must be 'one' or 'triangular', got {prefix_weighting!r}")
        self.prefix_weighting = prefix_weighting
        self.window_fn = window_fn
        self.prediction_type = prediction_type
        self.window = int(window)
        self.overlap = int(overlap)
        self.prefix = tuple(int(p) for p in prefix)
        self.frame_dim = int(frame_dim)

    def windows(self, num_frames: int) -> list[list[int]]:
        return fusion_windows(num_frames, self.window, self.overlap, self.prefix)

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        num_frames = x_t.shape[self.frame_dim]
        windows = self.windows(num_frames)
        if len(windows) == 1 and windows[0] == list(range(num_frames)):
            return self.window_fn(x_t, t, torch.arange(num_frames, device=x_t.device))
        total = None
        weight_sum = torch.zeros(num_frames, dtype=torch.float32, device=x_t.device)
        shape = [1] * x_t.ndim
        for frames in windows:
            index = torch.tensor(frames, dtype=torch.long, device=x_t.device)
            out = self.window_fn(x_t.index_select(self.frame_dim, index), t, index)
            body = len(frames) - len(self.prefix)
            if self.prefix_weighting == "triangular":
                w = triangular_weights(len(frames)).to(x_t.device)
            else:
                w = torch.cat([torch.ones(len(self.prefix)), triangular_weights(body)]).to(x_t.device)
            shape[self.frame_dim] = len(frames)
            weighted = out.float() * w.view(shape)
            if total is None:
                full = list(out.shape)
                full[self.frame_dim] = num_frames
                total = torch.zeros(full, dtype=torch.float32, device=x_t.device)
            total.index_add_(self.frame_dim, index, weighted)
            weight_sum.index_add_(0, index, w)
        assert total is not None
        shape[self.frame_dim] = num_frames
        return (total / weight_sum.view(shape)).to(x_t.dtype)

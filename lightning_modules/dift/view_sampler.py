"""View-wise sampling vs DPF-style uniform pair sampling (thesis 001 Ch. 4 §4.3.1, Fig. 4.2b-c).

* ``view_wise`` (DiFT): take ``n`` whole views of the field (n = 8 by default, Table 4.3).
  ``order="consecutive"`` takes a random run of ``n`` consecutive views (video and game: the
  sliding-window autoregression of §4.3.2 needs neighbouring frames; our choice, the thesis
  says "n random views" for T >> 16), ``order="random"`` takes ``n`` distinct random views (3D).
* ``uniform_pairs`` (the DPF baseline, Zhuang et al. 2023): every view of the field is kept and
  a uniform random subset of ``pair_fraction`` of all its tokens is denoised and attended over,
  so cost grows with the field (the curve of ``benchmarks/perf_dift.py``). DPF's separate
  context-pair cross-attention is folded into that one token set (our simplification).
* ``consistent_noise`` (Table 4.3's "cross-view consistent noise"; digest §3.3 [inferred]): one
  noise sample ``[C, h, w]`` is shared by the n views of an example.
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch
from torch import Tensor

__all__ = ["SAMPLING_MODES", "ViewSampler", "select_views"]

SAMPLING_MODES = ("view_wise", "uniform_pairs")
_PER_VIEW_KEYS = ("views", "frame_index", "camera", "intrinsics", "actions")


def select_views(batch: Mapping[str, Tensor], index: Tensor) -> dict[str, Tensor]:
    """The per-view entries of ``batch`` at ``index [B, n]`` (other keys pass through)."""
    out = dict(batch)
    for key in _PER_VIEW_KEYS:
        value = batch.get(key)
        if isinstance(value, Tensor):
            idx = index.to(value.device).reshape(*index.shape, *([1] * (value.dim() - 2)))
            out[key] = value.gather(1, idx.expand(*index.shape, *value.shape[2:]))
    return out


class ViewSampler:
    """Pick the training views (or tokens) of each field.

    Args:
        mode: ``view_wise`` or ``uniform_pairs``.
        num_views: n.
        order: ``consecutive`` or ``random`` (view-wise only).
        consistent_noise: share one noise sample across the n views.
        pair_fraction: share of the field's tokens kept by ``uniform_pairs``.
    """

    def __init__(
        self,
        mode: str = "view_wise",
        num_views: int = 8,
        order: str = "consecutive",
        consistent_noise: bool = True,
        pair_fraction: float = 0.25,
    ) -> None:
        if mode not in SAMPLING_MODES:
            raise ValueError(f"view sampling mode {mode!r} is not one of {list(SAMPLING_MODES)}")
        if order not in ("consecutive", "random"):
            raise ValueError(f"view order {order!r} is not 'consecutive' or 'random'")
        if int(num_views) < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}")
        if not 0.0 < pair_fraction <= 1.0:
            raise ValueError(f"pair_fraction must be in (0, 1], got {pair_fraction}")
        self.mode, self.num_views, self.order = mode, int(num_views), order
        self.consistent_noise, self.pair_fraction = bool(consistent_noise), float(pair_fraction)

    def view_index(self, batch_size: int, available: int, device=None, generator: Optional[torch.Generator] = None) -> Tensor:
        """``[B, n]`` view indices (view-wise mode)."""
        n = self.num_views
        if n > available:
            raise ValueError(f"model.num_views={n} is more than the {available} views each field of the batch has")
        where = generator.device if generator is not None else None  # draw where the generator lives
        if self.order == "consecutive":
            start = torch.randint(0, available - n + 1, (batch_size, 1), generator=generator, device=where)
            index = start + torch.arange(n, device=where)
        else:
            index = torch.stack([torch.randperm(available, generator=generator, device=where)[:n] for _ in range(batch_size)])
        return index.to(device)

    def token_index(self, batch_size: int, total_tokens: int, device=None, generator: Optional[torch.Generator] = None) -> Tensor:
        """``[B, L]`` uniformly sampled token indices of the whole field (uniform-pairs mode)."""
        count = max(1, int(round(self.pair_fraction * total_tokens)))
        where = generator.device if generator is not None else None
        index = torch.stack([torch.randperm(total_tokens, generator=generator, device=where)[:count] for _ in range(batch_size)])
        return index.sort(dim=1).values.to(device)

    def noise(self, shape: tuple[int, ...], device=None, dtype=None, generator: Optional[torch.Generator] = None) -> Tensor:
        """Noise ``[B, V, C, h, w]``; with ``consistent_noise`` one draw per example shared across views."""
        if self.consistent_noise and self.mode == "view_wise":
            one = torch.randn((shape[0], 1, *shape[2:]), device=device, dtype=dtype, generator=generator)
            return one.expand(shape).contiguous()
        return torch.randn(shape, device=device, dtype=dtype, generator=generator)

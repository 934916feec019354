"""D2SM: deep semantic statistics matching as a restoration loss (thesis 001, Ch. 9, §9.3).

For restored images G(x) and clean images y, a frozen extractor Phi maps samples to
flattened, L2-normalised features f^x_i = Phi(G(x_i)), f^y_i = Phi(y_i). With the cosine
kernel of Eq. 9.5, K(a, b) = (a.b / (|a||b|) + 1) / 2, each sample i defines a neighbour
distribution over the others (Eqs. 9.3 / 9.4)::

    g'_{j|i} = K(f^x_j, f^x_i) / sum_{k != i} K(f^x_k, f^x_i)     (restored set, G')
    g_{j|i}  = K(f^y_j, f^y_i) / sum_{k != i} K(f^y_k, f^y_i)     (clean set, G)

and the loss is KL(G' || G) (Eq. 9.2, weighted by the restored distribution, Eq. 9.6);
``divergence="ikl"`` gives KL(G || G') and ``"jsd"`` the thesis's Eq. 9.10,
(KL(G'||G) + KL(G||G')) / 2 (Table 9.4).

Samples (§9.3.3, Eq. 9.9): with ``internal=True`` a K x K sliding window with stride s cuts
every image into patches, and the patches are the samples (224 / 56 in the code: 36 patches
from a 512 crop); with ``internal=False`` ("w/o internal") each whole image is one sample.

Memorised historic sampling (§9.3.2, Eqs. 9.7 / 9.8): two FIFO queues (restored, clean) of
``queue_size`` q features live in registered buffers with a write pointer. A step's N current
features (differentiable) are joined by the newest q - N queue entries (detached), the
probabilities are taken over those q samples, and then the current features are written,
detached, over the oldest entries. The authors' public code enqueues under ``torch.no_grad``
*before* computing the loss, which cuts the gradient; here only the historic part is detached.
``queue_size=0`` uses the current samples only. Writing with modular indices means q need not
be a multiple of N (the code's restriction); q must hold at least one step's N samples.

Documented choices where the thesis and code differ: the diagonal is excluded (thesis Eqs.
9.3 / 9.4; ``include_diagonal=True`` gives the code's normalisation); ``reduction="mean"``
averages over the pairs that enter the sum (the code's ``mean``; the code's weight 1 for the
loss goes with it), ``"sum"`` is Eq. 9.2 literally; ``eps`` (0 by default: exact KL, which is
non-negative) adds the code's 1e-6 smoothing inside the log.
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Divergence = Literal["kl", "ikl", "jsd"]
_DIVERGENCES = ("kl", "ikl", "jsd")
_REDUCTIONS = ("mean", "sum")


def sliding_patches(images: Tensor, window: int, stride: int) -> Tensor:
    """``[B, C, H, W]`` -> ``[B * P, C, window, window]``, P = positions of a ``window`` grid with ``stride``.

    Positions are ``0, stride, ...`` while the window fits (⌊(H - K) / s⌋ + 1 per axis), as
    ``Tensor.unfold``; a 512 crop with 224 / 56 gives 6 x 6 = 36 patches.
    """
    if images.dim() != 4:
        raise ValueError(f"D2SM expects images [B, C, H, W], received shape {tuple(images.shape)}")
    height, width = images.shape[-2:]
    if window > height or window > width:
        raise ValueError(f"D2SM window ({window}) is larger than the image ({height}x{width}); "
                         "lower d2sm window or train on larger crops")
    patches = images.unfold(2, window, stride).unfold(3, window, stride)  # [B, C, nH, nW, K, K]
    b, c, nh, nw = patches.shape[:4]
    return patches.permute(0, 2, 3, 1, 4, 5).reshape(b * nh * nw, c, window, window)


def cosine_kernel(features: Tensor) -> Tensor:
    """Eq. 9.5 on L2-normalised rows: ``(f f^T + 1) / 2`` in [0, 1]."""
    return (features @ features.T + 1.0) * 0.5


def neighbour_probabilities(kernel: Tensor, include_diagonal: bool = False) -> Tensor:
    """Row i = g_{.|i} of Eqs. 9.3 / 9.4: the kernel row normalised over k (k != i unless included).

    The diagonal entries of the result are 0 when excluded (they are not part of Eq. 9.2's sum).
    """
    if not include_diagonal:
        kernel = kernel * (1.0 - torch.eye(kernel.shape[0], device=kernel.device, dtype=kernel.dtype))
    return kernel / kernel.sum(1, keepdim=True).clamp_min(1e-12)


def kl_rows(p: Tensor, q: Tensor, eps: float = 0.0) -> Tensor:
    """Elementwise p log(p / q) (0 where p = 0); ``eps`` > 0 is the code's log((p + eps) / (q + eps))."""
    if eps > 0:
        return p * torch.log((p + eps) / (q + eps))
    # clamped logs keep the gradient finite at p = 0 (the masked diagonal): xlogy's would be -inf there
    return p * (torch.log(p.clamp_min(1e-30)) - torch.log(q.clamp_min(1e-30)))


class D2SMLoss(nn.Module):
    """Deep semantic statistics matching with memorised historic sampling.

    Args:
        feature_extractor: frozen Phi (``[B, 3, K, K]`` in [-1, 1] -> feature maps), e.g.
            :func:`lightning_modules.components.semantic_features.build_vgg19_features`.
            Its parameters are frozen here.
        queue_size: q of Eqs. 9.7 / 9.8 (0: current samples only). The face-SR setting uses 256.
        window: sliding-window size K (224 in the code; also the sample size when
            ``internal=False``, where the queue needs a fixed feature size).
        stride: sliding-window stride s (56 in the code).
        internal: patches of each image are the samples (§9.3.3); False: whole images.
        divergence: ``"kl"`` (KL(G'||G), the thesis), ``"ikl"`` or ``"jsd"`` (Table 9.4).
        include_diagonal: normalise with k = i included (the public code); default excluded (thesis).
        reduction: ``"mean"`` over the summed pairs (code) or ``"sum"`` (Eq. 9.2).
        eps: smoothing inside the log (code: 1e-6); 0 = exact KL.
        register_extractor: register Phi as a child module; False holds it by reference only,
            for an owner that registers it itself (e.g. as a frozen part kept out of checkpoints).
        feature_dim: size of one flattened feature; ``None`` measures it with one forward of a
            ``window`` x ``window`` zero image (needed to size the queues).
    """

    def __init__(
        self,
        feature_extractor: nn.Module,
        queue_size: int = 256,
        window: int = 224,
        stride: int = 56,
        internal: bool = True,
        divergence: Divergence = "kl",
        include_diagonal: bool = False,
        reduction: str = "mean",
        eps: float = 0.0,
        register_extractor: bool = True,
        feature_dim: Optional[int] = None,
    ) -> None:
        super().__init__()
        if divergence not in _DIVERGENCES:
            raise ValueError(f"d2sm divergence must be one of {_DIVERGENCES}, received {divergence!r}")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"d2sm reduction must be one of {_REDUCTIONS}, received {reduction!r}")
        if int(queue_size) < 0:
            raise ValueError(f"d2sm queue_size must be >= 0, received {queue_size}")
        if int(window) < 1 or int(stride) < 1:
            raise ValueError(f"d2sm window and stride must be >= 1, received {window} and {stride}")
        feature_extractor.requires_grad_(False).eval()
        if register_extractor:
            self.phi = feature_extractor
        else:
            self.__dict__["phi"] = feature_extractor  # borrowed: the owner registers (and moves) it
        self.queue_size, self.window, self.stride = int(queue_size), int(window), int(stride)
        self.internal, self.divergence = bool(internal), divergence
        self.include_diagonal, self.reduction, self.eps = bool(include_diagonal), reduction, float(eps)
        if feature_dim is None and self.queue_size > 0:
            feature_dim = self._measure_dim(feature_extractor)
        self.feature_dim = int(feature_dim or 0)
        self.register_buffer("queue_restored", torch.zeros(self.queue_size, self.feature_dim))
        self.register_buffer("queue_clean", torch.zeros(self.queue_size, self.feature_dim))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))

    def _measure_dim(self, phi: nn.Module) -> int:
        param = next(iter(phi.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            out = phi(torch.zeros(1, 3, self.window, self.window, device=device))
        return int(out[0].numel())

    # ------------------------------------------------------------------ features
    def samples(self, images: Tensor) -> Tensor:
        """Images -> the samples fed to Phi (patches, or the images themselves)."""
        if self.internal:
            return sliding_patches(images, self.window, self.stride)
        if self.queue_size > 0 and tuple(images.shape[-2:]) != (self.window, self.window):
            raise ValueError(f"d2sm internal=False with a queue needs {self.window}x{self.window} images "
                             f"(window), received {tuple(images.shape[-2:])}")
        return images

    def features(self, images: Tensor) -> Tensor:
        """Flattened, L2-normalised Phi features ``[N, D]`` (float32)."""
        return F.normalize(self.phi(self.samples(images)).flatten(1).float(), dim=1)

    # ------------------------------------------------------------------ divergence
    def divergence_of(self, restored: Tensor, clean: Tensor) -> Tensor:
        """The divergence between the neighbour distributions of two feature sets ``[N, D]``."""
        n = restored.shape[0]
        if n < 2:
            raise ValueError("D2SM needs at least 2 samples per step (raise the batch, or use internal patches)")
        p_restored = neighbour_probabilities(cosine_kernel(restored), self.include_diagonal)
        p_clean = neighbour_probabilities(cosine_kernel(clean), self.include_diagonal)
        if self.divergence == "kl":
            terms = kl_rows(p_restored, p_clean, self.eps)
        elif self.divergence == "ikl":
            terms = kl_rows(p_clean, p_restored, self.eps)
        else:
            terms = 0.5 * (kl_rows(p_restored, p_clean, self.eps) + kl_rows(p_clean, p_restored, self.eps))
        if not self.include_diagonal:
            terms = terms * (1.0 - torch.eye(n, device=terms.device, dtype=terms.dtype))
        total = terms.sum()
        if self.reduction == "sum":
            return total
        pairs = n * n if self.include_diagonal else n * (n - 1)
        return total / pairs

    # ------------------------------------------------------------------ queue
    def historic(self, count: int) -> tuple[Tensor, Tensor]:
        """The newest ``count`` queue entries (restored, clean), detached, newest first."""
        available = min(int(self.queue_filled), count)
        if available == 0:
            empty = self.queue_restored[:0]
            return empty, empty
        index = (int(self.queue_ptr) - 1 - torch.arange(available, device=self.queue_ptr.device)) % self.queue_size
        return self.queue_restored[index].detach(), self.queue_clean[index].detach()

    @torch.no_grad()
    def enqueue(self, restored: Tensor, clean: Tensor) -> None:
        """Write the current features over the oldest entries (Eq. 9.8) and advance the pointer."""
        n = restored.shape[0]
        index = (int(self.queue_ptr) + torch.arange(n, device=self.queue_ptr.device)) % self.queue_size
        self.queue_restored[index] = restored.detach().to(self.queue_restored.dtype)
        self.queue_clean[index] = clean.detach().to(self.queue_clean.dtype)
        self.queue_ptr.fill_((int(self.queue_ptr) + n) % self.queue_size)
        self.queue_filled.fill_(min(int(self.queue_filled) + n, self.queue_size))

    def reset_queue(self) -> None:
        self.queue_ptr.zero_()
        self.queue_filled.zero_()

    # ------------------------------------------------------------------ forward
    def forward(self, restored: Tensor, clean: Tensor, update_queue: Optional[bool] = None) -> Tensor:
        """D2SM between restored and clean image batches (``[B, 3, H, W]`` in [-1, 1]).

        ``update_queue`` defaults to ``self.training`` (validation does not write the queue).
        """
        if restored.shape != clean.shape:
            raise ValueError(f"restored and clean batches differ in shape: {tuple(restored.shape)} vs {tuple(clean.shape)}")
        f_restored = self.features(restored)
        with torch.no_grad():
            f_clean = self.features(clean)
        if self.queue_size == 0:
            return self.divergence_of(f_restored, f_clean)
        n = f_restored.shape[0]
        if n > self.queue_size:
            raise ValueError(f"d2sm queue_size ({self.queue_size}) is smaller than the samples of one step "
                             f"({n} = batch x patches); raise queue_size to at least {n} or set it to 0")
        if f_restored.shape[1] != self.feature_dim:
            raise ValueError(f"D2SM features have {f_restored.shape[1]} values but the queue holds {self.feature_dim}")
        old_restored, old_clean = self.historic(self.queue_size - n)
        loss = self.divergence_of(torch.cat([f_restored, old_restored]), torch.cat([f_clean, old_clean]))
        write = self.training if update_queue is None else update_queue
        if write:
            self.enqueue(f_restored, f_clean)
        return loss

    def train(self, mode: bool = True) -> "D2SMLoss":
        super().train(mode)
        self.phi.eval()  # Phi stays frozen (no batch-norm / dropout updates)
        return self


__all__ = ["D2SMLoss", "cosine_kernel", "kl_rows", "neighbour_probabilities", "sliding_patches"]

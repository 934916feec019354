"""Top-k identification accuracy of restored probes against a clean gallery (thesis 001 Ch. 6, Tables 6.2-6.4).

Each probe's face embedding is ranked against the gallery embeddings by cosine similarity; the
probe counts as correct at k when a gallery item of its identity is among the k most similar.
Accuracy in percent, as the tables print it. Identities are strings (id prefixes of the file
names, :mod:`datamodules.ltt_gan.identity`).
"""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor


def top_k_accuracy(probe: Tensor, probe_ids: Sequence[str], gallery: Tensor, gallery_ids: Sequence[str],
                   ks: Sequence[int] = (1, 3, 5)) -> dict[str, float]:
    """``{"Top-1": %, "Top-3": %, ...}`` for ``[P, D]`` probe and ``[G, D]`` gallery embeddings."""
    if probe.shape[0] != len(probe_ids) or gallery.shape[0] != len(gallery_ids):
        raise ValueError("top_k_accuracy: one identity per embedding is needed")
    missing = sorted(set(probe_ids) - set(gallery_ids))
    if missing:
        raise ValueError(f"probe identities {missing[:5]} have no gallery image")
    similarity = F.normalize(probe.double(), dim=1) @ F.normalize(gallery.double(), dim=1).T
    order = similarity.argsort(dim=1, descending=True)
    ids = list(gallery_ids)
    results = {}
    for k in ks:
        hits = sum(probe_ids[p] in {ids[int(j)] for j in order[p, :k]} for p in range(len(probe_ids)))
        results[f"Top-{k}"] = 100.0 * hits / max(1, len(probe_ids))
    return results


def mean_cosine_percent(a: Tensor, b: Tensor) -> float:
    """Deg. (%): mean cosine x 100 of paired embeddings."""
    return float(100.0 * F.cosine_similarity(a.double(), b.double(), dim=1).mean())


__all__ = ["mean_cosine_percent", "top_k_accuracy"]

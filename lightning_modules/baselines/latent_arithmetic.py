"""Latent vector arithmetic, Radford et al. 2016 Sec. 6.3 and Fig. 7 (lecture seed 002 lines 786-800,
"Vector Space Arithmetic ... smiling woman").

The paper averages the ``z`` of three exemplars per concept ("single samples were unstable", Sec. 6.3),
forms ``Y = mean(z_a) - mean(z_b) + mean(z_c)`` (smiling woman - neutral woman + neutral man), decodes
``Y`` and eight neighbours ``Y + U(-0.25, 0.25)`` (the Fig. 7 caption). The embedded digits carry class
labels, not face attributes, so a concept here is a class label: the exemplars of a concept are the
generated samples the suite's digits classifier scores highest for that class (:func:`select_exemplars`;
a random-weight classifier in the tiny configs is a stand-in that exercises the plumbing only), or the
rows of a user's ``.npz`` of ``z`` and ``label`` (:func:`load_exemplar_file`). Choosing the most
confident candidates rather than "the first three the classifier agrees on" always yields exemplars,
also for a weak classifier; the manifest records their probabilities so a reader can judge them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor


def arithmetic_vector(z_a: Tensor, z_b: Tensor, z_c: Tensor) -> Tensor:
    """``mean(z_a) - mean(z_b) + mean(z_c)`` over the exemplar axis: ``[k, D]`` each -> ``[D]``."""
    for name, z in (("z_a", z_a), ("z_b", z_b), ("z_c", z_c)):
        if z.ndim != 2 or z.shape[0] < 1:
            raise ValueError(f"arithmetic_vector: {name} must be [k >= 1, D], got shape {tuple(z.shape)}")
    if not z_a.shape[1] == z_b.shape[1] == z_c.shape[1]:
        raise ValueError(f"arithmetic_vector: latent sizes differ ({z_a.shape[1]}, {z_b.shape[1]}, {z_c.shape[1]})")
    return z_a.mean(0) - z_b.mean(0) + z_c.mean(0)


def neighbours(y: Tensor, count: int, scale: float, generator: Optional[torch.Generator] = None) -> Tensor:
    """``y`` followed by ``count`` copies with uniform noise in ``[-scale, scale]`` (Fig. 7): ``[1 + count, D]``."""
    noise = (torch.rand(count, y.shape[0], generator=generator, device=y.device) * 2 - 1) * scale
    return torch.cat([y[None], y[None] + noise])


def select_exemplars(z: Tensor, probabilities: Tensor, concept: int, count: int) -> tuple[Tensor, Tensor]:
    """The ``count`` rows of ``z`` whose classifier probability of ``concept`` is highest.

    Returns the chosen ``z`` ``[count, D]`` and their probabilities ``[count]``.
    """
    if not 0 <= concept < probabilities.shape[1]:
        raise ValueError(f"model.arithmetic: concept {concept} is not a class of the classifier (0..{probabilities.shape[1] - 1})")
    if count > z.shape[0]:
        raise ValueError(f"model.arithmetic_exemplars={count} exceeds the {z.shape[0]} candidates")
    scores, index = probabilities[:, concept].topk(count)
    return z[index], scores


def load_exemplar_file(path: str | Path, concepts: Sequence[int], count: int, latent_dim: int) -> list[Tensor]:
    """The first ``count`` rows of ``z`` per concept from a user's ``.npz`` holding ``z`` [N, D] and ``label`` [N]."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.arithmetic_exemplars_file: {path} does not exist")
    with np.load(path, allow_pickle=False) as data:
        missing = {"z", "label"} - set(data.files)
        if missing:
            raise KeyError(f"model.arithmetic_exemplars_file: {path} lacks array(s) {sorted(missing)} (has {data.files})")
        z, labels = torch.as_tensor(data["z"], dtype=torch.float32), torch.as_tensor(data["label"]).long()
    if z.ndim != 2 or z.shape[1] != latent_dim or labels.shape != (z.shape[0],):
        raise ValueError(f"model.arithmetic_exemplars_file: {path} needs z [N, {latent_dim}] and label [N], "
                         f"got z {tuple(z.shape)} and label {tuple(labels.shape)}")
    groups = []
    for concept in concepts:
        rows = z[labels == concept][:count]
        if len(rows) == 0:
            raise ValueError(f"model.arithmetic_exemplars_file: {path} has no z with label {concept}")
        groups.append(rows)
    return groups


__all__ = ["arithmetic_vector", "load_exemplar_file", "neighbours", "select_exemplars"]

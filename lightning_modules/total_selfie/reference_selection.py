"""Automatic target-pose selection and the pose / mask derived from the reference (thesis 000, Ch. 3,
§3.2.2 and supplement §3.5.3).

* Selfie label sets: parse ``I_u``, ``I_l``, ``I_s``; drop labels covering fewer than **21** pixels
  and labels outside the selfie's garment group (upper clothes / lower clothes / shoes) ->
  ``P_u, P_l, P_s``.
* Reference label set: parse each full-body photo of the collection; drop labels under **5**
  pixels and labels outside upper, lower and shoes -> ``P_r``.
* Score ``|P_r ∩ (P_u ∪ P_l ∪ P_s)|``; candidates are ranked by it, higher first (ties keep the
  collection's order, [GAP]).
* Mask ``M``: the bounding box of the person in ``I_r`` scaled by **1.1** about its centre.
* Target pose ``I_t``: Canny edges of the *semantic map* of ``I_r`` (not of its RGB, so clothing
  texture does not leak into the pose).

[GAP] "Full-body photo" is not defined in the thesis: here a photo is full-body when its parsing
holds an upper-garment label and a shoe label (each above the 5-pixel threshold); a collection
without one is a user error naming the folder.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

SELFIE_MIN_PIXELS = 21
REFERENCE_MIN_PIXELS = 5
MASK_SCALE = 1.1
SELFIE_GROUPS = {"upper": "upper", "lower": "lower", "shoes": "shoes"}


def label_set(label_map: Tensor, allowed: set[int], min_pixels: int) -> set[int]:
    """Labels of ``label_map`` in ``allowed`` covering at least ``min_pixels`` pixels."""
    values, counts = torch.unique(label_map.flatten(), return_counts=True)
    return {int(v) for v, c in zip(values.tolist(), counts.tolist()) if int(v) in allowed and int(c) >= min_pixels}


def selfie_label_sets(selfie_maps: Mapping[str, Tensor], groups: Mapping[str, set[int]],
                      min_pixels: int = SELFIE_MIN_PIXELS) -> dict[str, set[int]]:
    """``{"upper": P_u, "lower": P_l, "shoes": P_s}`` from the parsing maps of the three body selfies."""
    return {name: label_set(selfie_maps[name], set(groups[group]), min_pixels) for name, group in SELFIE_GROUPS.items()}


def reference_label_set(label_map: Tensor, groups: Mapping[str, set[int]], min_pixels: int = REFERENCE_MIN_PIXELS) -> set[int]:
    """``P_r``: labels of the upper, lower and shoe groups with at least ``min_pixels`` pixels."""
    allowed = set(groups["upper"]) | set(groups["lower"]) | set(groups["shoes"])
    return label_set(label_map, allowed, min_pixels)


def is_full_body(label_map: Tensor, groups: Mapping[str, set[int]], min_pixels: int = REFERENCE_MIN_PIXELS) -> bool:
    """The [GAP] rule of the module docstring: an upper-garment and a shoe label are visible."""
    return bool(label_set(label_map, set(groups["upper"]), min_pixels)) and bool(
        label_set(label_map, set(groups["shoes"]), min_pixels))


@dataclass
class RankedReference:
    index: int
    score: int
    labels: tuple[int, ...]


def rank_references(selfie_sets: Mapping[str, set[int]], candidate_maps: Sequence[Tensor],
                    groups: Mapping[str, set[int]], min_pixels: int = REFERENCE_MIN_PIXELS,
                    names: Optional[Sequence[str]] = None) -> list[RankedReference]:
    """Full-body candidates ranked by ``|P_r ∩ (P_u ∪ P_l ∪ P_s)|`` (stable, higher first).

    Raises ``ValueError`` naming the candidates when none is a full-body photo.
    """
    wanted = set().union(*selfie_sets.values()) if selfie_sets else set()
    ranked = []
    for index, label_map in enumerate(candidate_maps):
        if not is_full_body(label_map, groups, min_pixels):
            continue
        p_r = reference_label_set(label_map, groups, min_pixels)
        ranked.append(RankedReference(index, len(p_r & wanted), tuple(sorted(p_r))))
    if not ranked:
        listed = ", ".join(names) if names else f"{len(candidate_maps)} photos"
        raise ValueError(f"no full-body photo in the photo collection ({listed}): reference selection needs a "
                         "photo showing upper clothes and shoes")
    return sorted(ranked, key=lambda r: -r.score)


def person_box(label_map: Tensor) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` (exclusive) of the non-background pixels."""
    fg = label_map > 0
    rows, cols = torch.nonzero(fg.any(1)).flatten(), torch.nonzero(fg.any(0)).flatten()
    if rows.numel() == 0:
        raise ValueError("the parsing map has no person pixels")
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def scaled_box_mask(box: tuple[int, int, int, int], height: int, width: int, scale: float = MASK_SCALE) -> Tensor:
    """``M`` ``[1, H, W]``: the box scaled by ``scale`` about its centre, clipped to the image (1 = inpaint)."""
    top, left, bottom, right = box
    cy, cx = (top + bottom) / 2.0, (left + right) / 2.0
    hh, hw = (bottom - top) * scale / 2.0, (right - left) * scale / 2.0
    t, b = max(0, int(np.floor(cy - hh))), min(height, int(np.ceil(cy + hh)))
    l, r = max(0, int(np.floor(cx - hw))), min(width, int(np.ceil(cx + hw)))
    mask = torch.zeros(1, height, width)
    mask[:, t:b, l:r] = 1.0
    return mask


def parsing_canny(label_map: Tensor, sigma: float = 1.0) -> Tensor:
    """``I_t``: Canny edges of the semantic map, ``[3, H, W]`` in [0, 1] (ControlNet's hint format).

    The map is rendered with one grey level per label id (spread over [0, 1]) and passed to
    scikit-image's Canny; label borders become edges, clothing texture cannot.
    """
    from skimage.feature import canny

    labels = label_map.cpu().numpy().astype(np.float64)
    top = max(1.0, float(labels.max()))
    edges = canny(labels / top, sigma=sigma, low_threshold=0.5 / top / 4, high_threshold=0.5 / top / 2)
    edge = torch.from_numpy(edges.astype(np.float32))
    return edge.unsqueeze(0).expand(3, -1, -1).contiguous()


__all__ = [
    "MASK_SCALE", "REFERENCE_MIN_PIXELS", "RankedReference", "SELFIE_MIN_PIXELS", "is_full_body", "label_set",
    "parsing_canny", "person_box", "rank_references", "reference_label_set", "scaled_box_mask", "selfie_label_sets",
]

"""The published folder layouts of the shadow-removal benchmarks (thesis 001 Ch. 7 §7.4).

Each layout maps a split to three folders (shadow image, mask, shadow-free image); files are
matched by name (stem, after removing the layout's shadow-free suffix). A file present in one
folder and missing from another is an error naming it.

* ``istd`` (Wang et al. 2018): ``<root>/train/train_A`` (shadow), ``train_B`` (mask), ``train_C``
  (shadow-free); ``<root>/test/test_A|B|C``. 1,330 / 540 triplets.
* ``aistd`` (ISTD+, Le & Samaras 2019): the ISTD folders with the colour-adjusted shadow-free
  images ``train_C_fixed_official`` / ``test_C_fixed_official``.
* ``srd`` (Qu et al. 2017): ``<root>/train/shadow``, ``<root>/train/shadow_free`` (files named
  ``<stem>_no_shadow.<ext>`` or ``<stem>_free.<ext>`` are matched to ``<stem>``), and the DHAN
  masks (Cun et al. 2020, SRD has none of its own) in ``<root>/train/mask``; the same under
  ``<root>/test``. 2,680 / 408 pairs.
* ``desoba`` (SOBA images, DESOBA's hand-edited shadow-free ground truth, Hong et al. 2022):
  ``<root>/ShadowImage``, ``<root>/DeshadowedImage``, ``<root>/ShadowMask`` (one instance's
  shadow mask per file, the instance whose shadow was removed), with ``<root>/Train_List.txt`` /
  ``<root>/Test_List.txt`` naming the stems of each split (all files when the list is absent).
  [GAP] The thesis gives no layout; this is the layout of the DESOBA release as read here.
* ``folder``: ``<root>/<split>/shadow``, ``mask``, ``shadow_free`` (the public re-implementation's
  layout), for any other data.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Layout:
    """Folders (relative to the root, ``{split}`` substituted) and name rules of one benchmark."""

    shadow: str
    mask: str
    free: str
    free_suffixes: tuple[str, ...] = ()
    split_names: tuple[tuple[str, str], ...] = (("train", "train"), ("val", "test"), ("test", "test"))
    split_list: Optional[str] = None


LAYOUTS: dict[str, Layout] = {
    "istd": Layout("{s}/{s}_A", "{s}/{s}_B", "{s}/{s}_C"),
    "aistd": Layout("{s}/{s}_A", "{s}/{s}_B", "{s}/{s}_C_fixed_official"),
    "srd": Layout("{s}/shadow", "{s}/mask", "{s}/shadow_free", free_suffixes=("_no_shadow", "_free")),
    "desoba": Layout("ShadowImage", "ShadowMask", "DeshadowedImage", split_list="{S}_List.txt"),
    "folder": Layout("{s}/shadow", "{s}/mask", "{s}/shadow_free"),
}


def _index(folder: Path, strip: tuple[str, ...] = ()) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"shadow dataset folder {folder} does not exist")
    out: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
            continue
        stem = path.stem
        for suffix in strip:
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        if stem in out:
            raise ValueError(f"two files in {folder} map to the name {stem!r}: {out[stem].name} and {path.name}")
        out[stem] = path
    return out


def triplet_paths(root: str | Path, layout: str, split: str) -> list[tuple[str, Path, Path, Path]]:
    """``[(name, shadow, mask, shadow_free)]`` of one split, sorted by name; unmatched names fail."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown shadow dataset layout {layout!r}; valid names: {', '.join(LAYOUTS)}")
    spec = LAYOUTS[layout]
    folder_split = dict(spec.split_names).get(split)
    if folder_split is None:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(dict(spec.split_names))}")
    root = Path(root).expanduser()

    def resolve(template: str) -> Path:
        return root / template.format(s=folder_split, S=folder_split.capitalize())

    shadows = _index(resolve(spec.shadow))
    masks = _index(resolve(spec.mask))
    frees = _index(resolve(spec.free), spec.free_suffixes)
    names = sorted(shadows)
    if spec.split_list is not None and resolve(spec.split_list).is_file():
        listed = [Path(line.strip()).stem for line in resolve(spec.split_list).read_text().splitlines() if line.strip()]
        missing = [n for n in listed if n not in shadows]
        if missing:
            raise FileNotFoundError(f"{resolve(spec.split_list)} names {missing[0]!r}, which has no file in {resolve(spec.shadow)}")
        names = sorted(listed)
    for name in names:
        if name not in masks:
            raise FileNotFoundError(f"shadow image {shadows[name]} has no mask named {name}.* in {resolve(spec.mask)}")
        if name not in frees:
            raise FileNotFoundError(f"shadow image {shadows[name]} has no shadow-free image named {name}.* in {resolve(spec.free)}")
    if spec.split_list is None:
        for kind, table, folder in (("mask", masks, spec.mask), ("shadow-free image", frees, spec.free)):
            extra = sorted(set(table) - set(shadows))
            if extra:
                raise FileNotFoundError(f"{kind} {table[extra[0]]} has no shadow image named {extra[0]}.* in {resolve(spec.shadow)}")
    if not names:
        raise FileNotFoundError(f"no shadow images in {resolve(spec.shadow)}")
    return [(n, shadows[n], masks[n], frees[n]) for n in names]


__all__ = ["LAYOUTS", "Layout", "triplet_paths"]

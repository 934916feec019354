"""Published folder layouts of the Bi-Noising datasets (thesis 001 Ch. 8, §8.4); every path error names the file.

* ``faces``: FFHQ for training and CelebA-HQ (the **first 3,000** files in sorted order) for testing
  (§8.4.1-8.4.2): ``train_root`` and ``test_root`` are folders of images searched recursively;
  the degradation is synthesised (:mod:`datamodules.bi_noising.tasks`).
* ``rain800`` (Zhang, Sindagi & Patel, ID-CGAN release): ``<root>/training/*.jpg`` and
  ``<root>/test_syn/*.jpg``, each file one side-by-side pair. [GAP] Which half is the clean one
  is not stated in the thesis; ``rain800_clean_side`` (default ``left``, as in the ID-CGAN data
  we know of) chooses it.
* ``rain200l`` (JORDER, Yang et al.): ``<root>/rain_data_{train,test}_Light/norain/norain-<n>.png``
  with the rainy ``.../rain/X2/norain-<n>x2.png`` (or ``.../rain/norain-<n>x2.png``); the common
  re-packaging ``<root>/{train,test}/{rain,norain}`` with the same names also works.
* ``pairs``: ``<root>/{train,test}/{input,target}/<name>`` with equal file names (pre-simulated
  turbulence pairs, or any restoration pairs).
"""
from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
LAYOUTS = ("faces", "rain800", "rain200l", "pairs")
CELEBA_HQ_TEST = 3000


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    walk = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in walk if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def face_files(root: str, split: str) -> list[Path]:
    """FFHQ (train) / CelebA-HQ first 3,000 (test) image files."""
    files = list_images(Path(root), recursive=True)
    if not files:
        raise FileNotFoundError(f"face folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files[:CELEBA_HQ_TEST] if split == "test" else files


def _first_dir(candidates: list[Path], what: str) -> Path:
    for c in candidates:
        if c.is_dir():
            return c
    raise FileNotFoundError(f"{what}: none of {[str(c) for c in candidates]} exists")


def rain200l_pairs(root: str, split: str) -> list[tuple[str, Path, Path]]:
    """``(name, rainy, clean)`` of Rain200L (JORDER); a rainy file without its clean one is an error."""
    base = Path(root).expanduser()
    tag = "train" if split == "train" else "test"
    top = _first_dir([base / f"rain_data_{tag}_Light", base / tag], f"Rain200L {split} split under {base}")
    clean_dir = _first_dir([top / "norain"], "Rain200L clean folder")
    rain_dir = _first_dir([top / "rain" / "X2", top / "rain"], "Rain200L rainy folder")
    pairs = []
    for rainy in list_images(rain_dir):
        stem = rainy.stem[:-2] if rainy.stem.endswith("x2") else rainy.stem
        matches = [clean_dir / f"{stem}{ext}" for ext in (rainy.suffix, *IMAGE_SUFFIXES)]
        clean = next((m for m in matches if m.is_file()), None)
        if clean is None:
            raise FileNotFoundError(f"Rain200L: rainy image {rainy} has no clean image {matches[0]}")
        pairs.append((stem, rainy, clean))
    if not pairs:
        raise FileNotFoundError(f"Rain200L: {rain_dir} holds no images")
    return pairs


def rain800_files(root: str, split: str) -> list[Path]:
    base = Path(root).expanduser()
    folder = _first_dir([base / ("training" if split == "train" else "test_syn")], f"Rain800 {split} split under {base}")
    files = list_images(folder)
    if not files:
        raise FileNotFoundError(f"Rain800: {folder} holds no images")
    return files


def paired_files(root: str, split: str) -> list[tuple[str, Path, Path]]:
    """``(name, input, target)`` of the generic ``pairs`` layout."""
    base = Path(root).expanduser() / ("train" if split == "train" else "test")
    inputs, targets = list_images(base / "input"), {p.name: p for p in list_images(base / "target")}
    pairs = []
    for p in inputs:
        if p.name not in targets:
            raise FileNotFoundError(f"pairs layout: input {p} has no target {base / 'target' / p.name}")
        pairs.append((p.stem, p, targets[p.name]))
    if not pairs:
        raise FileNotFoundError(f"pairs layout: {base / 'input'} holds no images")
    return pairs


__all__ = ["CELEBA_HQ_TEST", "IMAGE_SUFFIXES", "LAYOUTS", "face_files", "list_images", "paired_files",
           "rain200l_pairs", "rain800_files"]

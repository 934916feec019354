"""Paired test folders (CelebAHQ100 layout) and identity sets (TubFace89 / LRFID layouts) for LTT-GAN.

* :func:`paired_folder`: ``root/<input>/`` degraded faces and ``root/<target>/`` clean faces with
  the same file stems (CelebAHQ100: the first 100 CelebA-HQ images degraded offline with
  TurbulenceSim_P2S; folder names ``input|lq|degraded`` and ``target|gt|hq`` are recognised).
* :func:`identity_pairs`: ``root/probe/`` restored-to-be turbulence faces and ``root/gallery/``
  clean references, each named ``<identity><sep><anything>.<ext>`` (``sep`` "_": ``0007_left.png``);
  every probe identity must have a gallery image.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from datamodules.predict_inputs import IMAGE_EXTENSIONS

INPUT_NAMES = ("input", "lq", "degraded")
TARGET_NAMES = ("target", "gt", "hq")


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def _find(root: Path, names: Sequence[str], what: str) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise FileNotFoundError(f"{root}: no {what} folder (looked for {list(names)})")


def paired_folder(root: str | Path) -> list[tuple[Path, Path]]:
    """``(degraded, clean)`` file pairs matched by stem; an unmatched stem is an error naming it."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"paired test folder {str(root)!r} does not exist")
    inputs = {p.stem: p for p in _images(_find(root, INPUT_NAMES, "input"))}
    targets = {p.stem: p for p in _images(_find(root, TARGET_NAMES, "target"))}
    unmatched = sorted(set(inputs) ^ set(targets))
    if unmatched:
        raise ValueError(f"{root}: files without a partner in the other folder: {unmatched[:5]}")
    if not inputs:
        raise ValueError(f"{root}: the input folder holds no images")
    return [(inputs[k], targets[k]) for k in sorted(inputs)]


def identity_of(path: Path, separator: str = "_") -> str:
    stem = path.stem
    if separator not in stem:
        raise ValueError(f"{path}: the name has no identity prefix (expected '<id>{separator}<rest>')")
    return stem.split(separator, 1)[0]


def identity_pairs(root: str | Path, separator: str = "_", probe: str = "probe",
                   gallery: str = "gallery") -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """Probe and gallery ``(file, identity)`` lists; probe identities without a gallery image are an error."""
    root = Path(root)
    for name in (probe, gallery):
        if not (root / name).is_dir():
            raise FileNotFoundError(f"identity set {str(root)!r}: missing the {name}/ folder")
    probes = [(p, identity_of(p, separator)) for p in _images(root / probe)]
    galleries = [(p, identity_of(p, separator)) for p in _images(root / gallery)]
    unmatched = sorted({i for _, i in probes} - {i for _, i in galleries})
    if unmatched:
        raise ValueError(f"identity set {str(root)!r}: probe identities {unmatched[:5]} have no gallery image")
    if not probes:
        raise ValueError(f"identity set {str(root)!r}: the probe folder holds no images")
    return probes, galleries


__all__ = ["identity_of", "identity_pairs", "paired_folder"]

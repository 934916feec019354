"""Flatten the published DeepFashion In-shop ``img_highres`` tree into the ``train_highres`` / ``test_highres``
folders that :class:`datamodules.deepfashion.DeepFashionDataModule` reads (the step of the CFLD/DPTN
``generate_fashion_datasets.py``; written anew here).

Usage::

    python -m datamodules.deepfashion_prepare --images path/to/img_highres --root data/deepfashion [--link]

``--images`` is the unzipped ``Img/img_highres.zip`` (the folder holding ``MEN/`` and ``WOMEN/``);
``--root`` holds the split lists ``train.lst`` / ``test.lst`` and the pair / annotation CSVs of the
DPTN release. An image ``MEN/Denim/id_00000080/01_1_front.jpg`` becomes
``fashionMENDenimid0000008001_1front.jpg``: ``"fashion"`` + gender + category + the id without
underscores + the file name with every underscore after the first removed (the names the lists
and CSVs use). Images in neither list are skipped; listed names with no image are reported.
``--link`` hard-links instead of copying (same file system).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Optional, Sequence

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm"}


def flat_name(gender: str, category: str, item: str, file: str) -> str:
    """The release's flattened file name of ``<gender>/<category>/<item>/<file>``."""
    head, _, tail = file.partition("_")
    return "fashion" + gender + category + item.replace("_", "") + head + "_" + tail.replace("_", "")


def read_list(path: Path) -> set[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: --root must hold the DPTN release's train.lst and test.lst")
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def flatten(images: Path, root: Path, link: bool = False) -> dict[str, int]:
    """Copy (or hard-link) every listed image into ``root/{train,test}_highres``; returns counts per split."""
    if not images.is_dir():
        raise FileNotFoundError(f"--images {images} is not a folder (the unzipped img_highres with MEN/ and WOMEN/)")
    splits = {split: read_list(root / f"{split}.lst") for split in ("train", "test")}
    done = {split: 0 for split in splits}
    found: set[str] = set()
    for path in sorted(images.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        parts = path.relative_to(images).parts
        if len(parts) != 4:
            continue  # not <gender>/<category>/<item>/<file>
        name = flat_name(*parts)
        for split, names in splits.items():
            if name not in names:
                continue
            target = root / f"{split}_highres" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                os.link(path, target) if link else shutil.copyfile(path, target)
            done[split] += 1
            found.add(name)
    for split, names in splits.items():
        missing = sorted(names - found)
        if missing:
            print(f"{split}: {len(missing)} listed images not found under {images}, e.g. {missing[:3]}", file=sys.stderr)
    return done


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, type=Path, help="the unzipped img_highres folder (MEN/, WOMEN/)")
    parser.add_argument("--root", required=True, type=Path, help="dataset root with train.lst / test.lst")
    parser.add_argument("--link", action="store_true", help="hard-link instead of copying")
    args = parser.parse_args(argv)
    try:
        counts = flatten(args.images, args.root, args.link)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for split, count in counts.items():
        print(f"{split}_highres: {count} images in {args.root / (split + '_highres')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

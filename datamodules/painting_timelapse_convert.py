"""Convert the official Inverse Painting data layout into the suite's (thesis 000, Ch. 6, §6.7; issue 17.5).

Official layout (``ArmastusChen/inverse_painting``, README "Dataset Pre-Processing")::

    SRC/{train,val}/rgb/<video>/{ind}_{m:ss}.jpg            keyframes
    SRC/{train,val}/rgb/<video>/last_aligned_frame_inv.json {"<target frame>": ["<frame>", ...]}
    SRC/{train,val}/text/<video>/<current frame>.json       {"next_image_name": ..., "next_text": ...}
                                                            (current = "white_<target>" for the white canvas)

Suite layout (``datamodules.painting_timelapse``)::

    DST/{train,val}/<painting>/{ind}_{m:ss}.jpg, target.json, text.json

What the conversion does, per video and per target key of ``last_aligned_frame_inv.json``:

* the frames listed for the target are the canvas candidates; like the official reader
  (``dataset.py``, ``data_processing/run_llava/main.py``) the **first** candidate is dropped ("likely
  white image": the suite's reader puts a white canvas at time 0 instead), the rest and the target
  frame are copied (or linked) under their own names; frames the JSON does not list (removed in
  pre-processing: hands, minimal changes) are not copied;
* ``target.json`` names the target frame;
* ``text.json`` maps each frame to the GT instruction that leads to it: the official text file of the
  canvas before it (``next_image_name`` -> ``next_text``), if the ``text/`` folder exists;
* one folder per (video, target); a video with several target keys gives ``<video>__<target>``.

[choice] The official reader also subsamples videos with more than ``sample_num`` candidates and caps
the first interval at 30 s; the converted folders keep every listed frame and the frames' own
timestamps (the suite's reader takes times from the names, white canvas at 0 s).

Command::

    python -m datamodules.painting_timelapse_convert SRC DST [--text-root ROOT] [--mode copy|symlink|hardlink]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from datamodules.painting_timelapse import parse_frame_name

INDEX_FILE = "last_aligned_frame_inv.json"
MODES = ("copy", "symlink", "hardlink")
SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class ConversionReport:
    """What was written: paintings per split, frames, instructions found and missing."""

    paintings: dict[str, int] = field(default_factory=dict)
    frames: int = 0
    instructions: int = 0
    missing_instructions: int = 0
    skipped: list[str] = field(default_factory=list)


def _frame_file(folder: Path, name: str, source: Path) -> Path:
    for suffix in SUFFIXES:
        path = folder / f"{name}{suffix}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"{source}: lists frame {name!r}, but {folder} has no {name}.jpg")


def _own_name(name: str, file: Path) -> str:
    """The frame's name in the suite layout: its official name, ``.jpeg`` written as ``.jpg``."""
    suffix = file.suffix.lower()
    return f"{name}{'.jpg' if suffix == '.jpeg' else suffix}"


def _place(src: Path, dst: Path, mode: str) -> None:
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    if mode == "copy":
        shutil.copy2(src, dst)
    elif mode == "symlink":
        dst.symlink_to(os.path.abspath(src))
    else:
        os.link(src, dst)


def _instructions(text_folder: Optional[Path]) -> dict[str, str]:
    """``{next frame name: instruction}`` from the official per-canvas text JSONs of one video."""
    found: dict[str, str] = {}
    if text_folder is None or not text_folder.is_dir():
        return found
    for path in sorted(text_folder.glob("*.json")):
        try:
            record = json.loads(path.read_text())
            found[str(record["next_image_name"])] = str(record["next_text"]).strip()
        except (json.JSONDecodeError, KeyError) as error:
            raise ValueError(f"{path}: not an official text instruction file (needs next_image_name, next_text): {error}") from error
    return found


def convert(src: Path, dst: Path, text_root: Optional[Path] = None, mode: str = "copy",
            splits: Sequence[str] = ("train", "val")) -> ConversionReport:
    """Convert ``src`` (official layout) into ``dst`` (suite layout); see the module docstring."""
    if mode not in MODES:
        raise ValueError(f"--mode must be one of {list(MODES)}, got {mode!r}")
    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    text_root = Path(text_root).expanduser() if text_root is not None else src
    report = ConversionReport()
    for split in splits:
        rgb = src / split / "rgb"
        if not rgb.is_dir():
            raise FileNotFoundError(f"{rgb} not found: expected the official layout SRC/{split}/rgb/<video>/{INDEX_FILE}")
        count = 0
        for video in sorted(p for p in rgb.iterdir() if p.is_dir()):
            index_file = video / INDEX_FILE
            if not index_file.is_file():
                report.skipped.append(f"{video} (no {INDEX_FILE})")
                continue
            try:
                index = json.loads(index_file.read_text())
            except json.JSONDecodeError as error:
                raise ValueError(f"{index_file}: not valid JSON ({error})") from error
            if not isinstance(index, dict) or not index:
                raise ValueError(f"{index_file}: expected {{'<target frame>': ['<frame>', ...]}}")
            texts = _instructions(text_root / split / "text" / video.name)
            for target, candidates in index.items():
                names = list(candidates)[1:] + [target]  # the first candidate is dropped, as the official reader does
                for name in names:
                    if parse_frame_name(f"{name}.jpg") is None:
                        raise ValueError(f"{index_file}: frame {name!r} is not named '{{ind}}_{{m:ss}}'")
                if len(names) < 2:
                    report.skipped.append(f"{video} target {target} (fewer than 2 frames)")
                    continue
                out = dst / split / (video.name if len(index) == 1 else f"{video.name}__{target}")
                out.mkdir(parents=True, exist_ok=True)
                text = {}
                for name in names:
                    file = _frame_file(video, name, index_file)
                    _place(file, out / _own_name(name, file), mode)
                    report.frames += 1
                    if name in texts:
                        text[_own_name(name, file)] = texts[name]
                    else:
                        report.missing_instructions += 1
                target_file = _frame_file(video, target, index_file)
                (out / "target.json").write_text(json.dumps({"target": _own_name(target, target_file)}) + "\n")
                (out / "text.json").write_text(json.dumps(text, indent=1) + "\n")
                report.instructions += len(text)
                count += 1
        report.paintings[split] = count
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datamodules.painting_timelapse_convert",
                                     description="Convert the official Inverse Painting data layout into the suite's.")
    parser.add_argument("src", help="official root holding {train,val}/rgb/<video>/ (and {train,val}/text/<video>/)")
    parser.add_argument("dst", help="suite root to write: {train,val}/<painting>/")
    parser.add_argument("--text-root", default=None, help="root of the official text/ folders (default: SRC)")
    parser.add_argument("--mode", choices=MODES, default="copy", help="copy frames (default) or link them")
    parser.add_argument("--splits", nargs="+", default=["train", "val"])
    args = parser.parse_args(argv)
    try:
        report = convert(Path(args.src), Path(args.dst), Path(args.text_root) if args.text_root else None, args.mode, args.splits)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {sum(report.paintings.values())} paintings ({', '.join(f'{k} {v}' for k, v in report.paintings.items())}), "
          f"{report.frames} frames, {report.instructions} instructions ({report.missing_instructions} frames without one) to {args.dst}")
    for line in report.skipped:
        print(f"skipped: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

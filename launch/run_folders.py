"""Run-folder conventions of ``cli.py``: config lookup, run names, versions (``last``: launch/checkpoints.py).

Kept apart from the CLI so the SLURM launcher and tests share one definition of where a
run lives: ``<runs_dir>/<run_name>/version_<n>/{config.yaml, events.*, checkpoints/}``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Sequence

_VERSION = re.compile(r"^version_(\d+)$")


def resolve_config_path(name: str, config_dir: Path) -> Path:
    """Return the file a ``--config`` value names.

    A value that is a file (relative to the working directory) wins; otherwise the value is
    looked up in ``config_dir`` with and without a ``.yaml`` suffix, so ``fitcheck``,
    ``fitcheck.yaml`` and ``tiny/fitcheck.yaml`` all resolve.
    """
    candidates = [Path(name), config_dir / name, config_dir / f"{name}.yaml"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"--config {name!r}: no such file (looked at {looked})")


def resolve_config_argv(argv: Sequence[str], config_dir: Path) -> list[str]:
    """Rewrite every ``--config X`` / ``--config=X`` in ``argv`` to a path that exists.

    Exits with a one-line error naming the value when a config cannot be found.
    """
    out: list[str] = []
    it = iter(range(len(argv)))
    for i in it:
        arg = argv[i]
        if arg in ("--config", "-c") and i + 1 < len(argv):
            out += [arg, _resolved_or_exit(argv[i + 1], config_dir)]
            next(it, None)
        elif arg.startswith("--config="):
            out.append("--config=" + _resolved_or_exit(arg.split("=", 1)[1], config_dir))
        else:
            out.append(arg)
    return out


def _resolved_or_exit(value: str, config_dir: Path) -> str:
    try:
        return str(resolve_config_path(value, config_dir))
    except FileNotFoundError as err:
        raise SystemExit(f"error: {err}") from None


def run_name_from_configs(configs: Iterable[object]) -> str:
    """Default run name: the config stems joined by ``+``, so overlays are part of a run's identity.

    ``fitcheck.yaml`` -> ``fitcheck``; ``fitcheck.yaml`` + ``tiny/fitcheck.yaml`` -> ``fitcheck+tiny``
    (an overlay named like the base config is named by its folder); ``ldm_scaling.yaml`` +
    ``ldm_scaling/dreambooth.yaml`` -> ``ldm_scaling+dreambooth``. A tiny run and a full run of one
    config thus never share a folder, and ``--ckpt_path last`` never loads one into the other.
    """
    parts: list[str] = []
    for config in configs:
        path = Path(str(getattr(config, "relative", None) or getattr(config, "absolute", None) or config))
        if not path.stem:
            continue
        part = path.stem if not parts or path.stem != parts[0] else path.parent.name or path.stem
        if part not in parts:
            parts.append(part)
    return "+".join(parts) or "default"


def versions(run_root: Path) -> list[int]:
    """Existing version numbers under ``run_root``, ascending."""
    if not run_root.is_dir():
        return []
    found = (_VERSION.match(child.name) for child in run_root.iterdir() if child.is_dir())
    return sorted(int(m.group(1)) for m in found if m)


def next_version(run_root: Path) -> int:
    """Number of a new version folder (0 for a new run name)."""
    existing = versions(run_root)
    return existing[-1] + 1 if existing else 0


def version_number(folder_name: str) -> int:
    """``version_7`` -> 7."""
    match = _VERSION.match(folder_name)
    if match is None:
        raise ValueError(f"{folder_name!r} is not a run version folder (version_<n>)")
    return int(match.group(1))

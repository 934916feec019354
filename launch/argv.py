"""The scripts' shared argv convention: ``python -m <script> [own args] -- [cli.py overrides]``."""
from __future__ import annotations


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split at the first ``--``: (the script's own args, the overrides it passes on to ``cli.py``)."""
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]


__all__ = ["split_overrides"]

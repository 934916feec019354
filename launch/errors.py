"""One-line errors for a missing pretrained model (issue 13 §6).

When a module's constructor raises :class:`~lightning_modules.components.pretrained_paths.MissingWeightsError`
inside LightningCLI, jsonargparse tries every member of the ``model`` union type and prints a
~75-line report (traceback, "Does not validate against any of the Union subtypes", the whole
resolved namespace) around the one sentence that matters. jsonargparse keeps the original
exception as the ``__cause__`` of its ``ValueError``; :func:`one_line_errors` walks that chain
and, when it finds a missing-weights error, prints only its message and exits with status 2.
Every other exception propagates untouched.
"""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Optional

__all__ = ["find_missing_weights", "one_line_errors"]

_NAMES = ("MissingWeightsError",)  # the components' class and fitcheck's own of the same name


def find_missing_weights(exc: BaseException) -> Optional[BaseException]:
    """The first missing-weights error in ``exc``'s cause/context chain, if any."""
    seen: set[int] = set()
    node: Optional[BaseException] = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if type(node).__name__ in _NAMES:
            return node
        node = node.__cause__ or node.__context__
    return None


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn a missing-weights failure anywhere below into ``error: <message>`` and exit status 2."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is a missing model
        found = find_missing_weights(exc)
        if found is None:
            raise
        message = " ".join(str(found).split())
        print(f"error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None

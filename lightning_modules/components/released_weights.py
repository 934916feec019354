"""Import the weights a paper's authors released into the suite's module of that paper.

Every importer does the same four things, so they live here once:

1. **read** the file safely (``.safetensors``, or a torch file through :func:`safe_torch_load`,
   never full unpickling), unwrapping the container the authors saved it in
   (``state_dict``, ``params_ema``, ``model``, ``ema`` ...);
2. **rename** the authors' keys to the suite's with an ordered :class:`KeyMap` (prefix strips,
   regex rules, keys to drop), refusing a map under which two source keys land on one name;
3. **check** the renamed dict against the configured network: missing, unexpected and
   wrongly-shaped keys are reported together in one message that names the file, the config
   key it came from and a hint about which setting usually explains it;
4. **load** strictly, so that nothing is left as initialised when the check passes.

A paper's ``released.py`` then only holds its key map and which sub-module it fills. Modules
that take a released checkpoint expose it as ``released_checkpoint`` (a constructor argument
or attribute); :func:`metrics.results_rows.run_provenance` copies it into every results row, so
the leaderboard can show the authors' model reproduced beside the paper's number.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from lightning_modules.components.safe_load import safe_torch_load

#: Containers the authors' scripts commonly wrap a state dict in, tried in this order.
DEFAULT_CONTAINERS: tuple[str, ...] = ("state_dict", "params_ema", "params", "ema", "model", "module", "net")


class ReleasedWeightsError(ValueError):
    """A released checkpoint that does not fit the configured network; the message says why in one place."""


def read_released_state(path: Union[str, Path], key: str = "model.init_args.released_checkpoint",
                        containers: Sequence[str] = DEFAULT_CONTAINERS) -> dict[str, Tensor]:
    """The tensors of ``path``, unwrapped from the first of ``containers`` that holds a mapping.

    Unwrapping repeats (a Lightning ``state_dict`` inside ``model`` ...) until no container
    key is left; non-tensor entries (step counters, optimiser states, config) are dropped.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"{key}={str(path)!r} does not exist")
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: object = load_file(str(file))
    else:
        state = safe_torch_load(file, map_location="cpu", key=key)
    unwrapped = True
    while unwrapped and isinstance(state, Mapping):
        unwrapped = False
        for name in containers:
            inner = state.get(name)
            if isinstance(inner, Mapping) and any(isinstance(v, (Tensor, Mapping)) for v in inner.values()):
                state, unwrapped = inner, True
                break
    if not isinstance(state, Mapping):
        raise ReleasedWeightsError(f"{key}: {file} does not hold a state dict (found {type(state).__name__})")
    tensors = {str(k): v for k, v in state.items() if isinstance(v, Tensor)}
    if not tensors:
        raise ReleasedWeightsError(f"{key}: {file} holds no tensors (keys: {sorted(map(str, state))[:5]})")
    return tensors


@dataclass(frozen=True)
class KeyMap:
    """How the authors' key names become the suite's.

    ``strip_prefixes`` are removed while every key starts with one of them (``module.`` of
    DataParallel, ``model.`` of a Lightning wrapper); ``drop`` are regexes of source keys with
    no counterpart (rebuilt buffers, training-only heads); ``rules`` are ``(regex, replacement)``
    pairs applied in order to every remaining key (``re.sub``, so groups may be reused).
    """

    rules: tuple[tuple[str, str], ...] = ()
    drop: tuple[str, ...] = ()
    strip_prefixes: tuple[str, ...] = ()

    def rename(self, name: str) -> str:
        for pattern, replacement in self.rules:
            name = re.sub(pattern, replacement, name)
        return name

    def apply(self, state: Mapping[str, Tensor], source: str = "checkpoint") -> dict[str, Tensor]:
        items = dict(state)
        stripped = True
        while stripped and items:
            stripped = False
            for prefix in self.strip_prefixes:
                if all(k.startswith(prefix) for k in items):
                    items, stripped = {k[len(prefix):]: v for k, v in items.items()}, True
                    break
        out: dict[str, Tensor] = {}
        origin: dict[str, str] = {}
        for name, value in items.items():
            if any(re.search(pattern, name) for pattern in self.drop):
                continue
            new = self.rename(name)
            if new in out:
                raise ReleasedWeightsError(f"{source}: the key map sends both {origin[new]!r} and {name!r} to {new!r}")
            out[new], origin[new] = value, name
        return out


def _first(names: Sequence[str], count: int = 3) -> str:
    shown = ", ".join(names[:count])
    return shown + (f", ... ({len(names)} in all)" if len(names) > count else "")


def mismatch_report(expected: Mapping[str, Tensor], state: Mapping[str, Tensor]) -> list[str]:
    """Missing / unexpected / shape-mismatched keys of ``state`` against ``expected``, as short phrases."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in sorted(set(expected) & set(state))
              if tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({_first(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected ({_first(unexpected)})")
    if shapes:
        problems.append(f"{len(shapes)} with other shapes (checkpoint vs model: {_first(shapes)})")
    return problems


def check_released_state(target: Union[nn.Module, Mapping[str, Tensor]], state: Mapping[str, Tensor], source: str,
                         what: str, hint: str = "") -> None:
    """Raise one :class:`ReleasedWeightsError` if ``state`` does not fit ``target`` exactly."""
    expected = target.state_dict() if isinstance(target, nn.Module) else target
    problems = mismatch_report(expected, state)
    if problems:
        tail = f" {hint}" if hint else ""
        raise ReleasedWeightsError(f"{source} is not a {what} checkpoint for this configuration: "
                                   + "; ".join(problems) + "." + tail)


def import_released(target: nn.Module, path: Union[str, Path], key_map: KeyMap, what: str,
                    key: str = "model.init_args.released_checkpoint", hint: str = "",
                    containers: Sequence[str] = DEFAULT_CONTAINERS,
                    state: Optional[Mapping[str, Tensor]] = None) -> dict[str, Tensor]:
    """Read ``path`` (or use ``state``), rename with ``key_map``, check, and load into ``target`` strictly.

    Returns the renamed state dict (tests compare it with the loaded parameters).
    """
    source = f"{key}={str(path)!r}"
    raw = dict(state) if state is not None else read_released_state(path, key=key, containers=containers)
    mapped = key_map.apply(raw, source=source)
    check_released_state(target, mapped, source, what, hint)
    own = target.state_dict()
    mapped = {k: v.to(dtype=own[k].dtype) if v.is_floating_point() else v for k, v in mapped.items()}
    with torch.no_grad():
        target.load_state_dict(mapped, strict=True)
    return mapped


__all__ = ["DEFAULT_CONTAINERS", "KeyMap", "ReleasedWeightsError", "check_released_state", "import_released",
           "mismatch_report", "read_released_state"]

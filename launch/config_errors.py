"""Turn jsonargparse's long parse errors into one short message: file, key, value, what was expected.

jsonargparse reports a bad init arg of a subclass-mode model as a nested "Does not validate
against any of the Union subtypes" block (the configured class, then ``NoneType``), after ~65
lines of usage. The user needs the innermost line: which key, which value, what was expected,
and for a misspelled key or class the close matches.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import re
from pathlib import Path
from typing import Iterable, Optional

import yaml

_CLASS = re.compile(r"Problem with given class_path '([\w.]+)'")
_KEY = re.compile(r'Parser key "([\w.]+)"')
_EXPECTED = re.compile(r"Expected an? (.+?)\. Got value: (.+)$")
_NOT_ACCEPTED = re.compile(r"Option '([\w.]+)' is not accepted")
_NO_ATTR = re.compile(r"module ([\w.]+) has no attribute (\w+)")
_NESTED = re.compile(r"NestedArg\(key='([\w.]+)', val='(.*)'\)")
_TYPE = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>")
_TOP_KEY = re.compile(r'Key "([\w.]+)"|key "([\w.]+)"|"--([\w.]+)"')


def _pretty_type(text: str) -> str:
    return _TYPE.sub(lambda m: m.group(1), text)


def _close(word: str, options: Iterable[str]) -> str:
    matches = difflib.get_close_matches(word, list(options), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(matches)}?" if matches else ""


def _init_params(class_path: str) -> list[str]:
    try:
        module_name, _, name = class_path.rpartition(".")
        cls = getattr(importlib.import_module(module_name), name)
        return [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")]
    except Exception:  # noqa: BLE001 - suggestions are a courtesy
        return []


def _module_classes(module_name: str) -> list[str]:
    try:
        module = importlib.import_module(module_name)
    except Exception:  # noqa: BLE001
        return []
    return [n for n in dir(module) if n[:1].isupper()]


def yaml_syntax_error(files: Iterable[str]) -> Optional[str]:
    """The first config file that is not valid YAML, as ``file: line L, column C: problem``."""
    for name in files:
        try:
            yaml.safe_load(Path(name).read_text())
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            return f"{name}: YAML syntax error at {where}{problem}"
        except OSError:
            continue
    return None


def short_message(message: str, config_files: Iterable[str] = ()) -> str:
    """One or two lines for a jsonargparse error ``message`` (unchanged if no pattern fits)."""
    if "Problems parsing config" in message or "while parsing" in message or "while scanning" in message:
        found = yaml_syntax_error(config_files)
        if found:
            return found
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    nested = next((m for m in map(_NESTED.search, lines) if m), None)
    class_path = next((m.group(1) for m in map(_CLASS.search, lines) if m), None)
    keys = [m.group(1) for m in map(_KEY.search, lines) if m]
    head = lines[0] if lines else message
    group = next((m.group(1) or m.group(2) or m.group(3) for m in [_TOP_KEY.search(head)] if m), None)
    where = ".".join(k for k in (group, "init_args" if class_path else None, *keys) if k) or group or "config"
    if nested and nested.group(1) not in where:
        where = ".".join(k for k in (group, "init_args" if class_path else None, nested.group(1)) if k)
    owner = f" of {class_path}" if class_path else ""
    for line in lines:
        m = _EXPECTED.search(line)
        if m:
            return f"--{where}{owner}: expected {_pretty_type(m.group(1))}, got {m.group(2)!r}"
    for line in lines:
        m = _NOT_ACCEPTED.search(line)
        if m:
            options = _init_params(class_path) if class_path else []
            return f"--{where}: {class_path or 'this group'} has no argument {m.group(1)!r}{_close(m.group(1), options)}"
    for line in lines:
        m = _NO_ATTR.search(line)
        if m:
            value = f"{m.group(1)}.{m.group(2)}"
            return f"--{where}: no class {value!r}{_close(m.group(2), _module_classes(m.group(1)))}"
    for line in lines:
        if "does not validate" in line.lower() or line.startswith(("Subtypes", "Errors", "Given value")):
            continue
        if line.startswith("- "):
            return f"--{where}{owner}: {line[2:]}"
    return head

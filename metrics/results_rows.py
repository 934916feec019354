"""Results rows: the one-JSON-object-per-metric records that evaluation writes and the leaderboard reads.

Standard library only, so that the evaluation callback (``callbacks/``) and the
leaderboard (``benchmarks/``) share one schema without a layer importing one
above it; ``benchmarks.results_rows`` re-exports this module.

A row (``results/*.jsonl``, one object per line) has the fields of
``REQUIRED_FIELDS`` (DESIGN.md, "Results are data") plus optional extras
(``step``, ``epoch``, ``num_steps``, ``sampler``, ``stage``, ``protocol``,
``random_weights_reason``...). ``weights`` says whether the networks involved
(the generator's pretrained parts and the evaluator's feature network) had
real pretrained weights; ``data`` whether the data was the embedded stand-in.
"""
from __future__ import annotations

import datetime as _dt
import glob
import json
import math
import os
import pickle
import subprocess
import zipfile
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Optional

REQUIRED_FIELDS = (
    "paper", "method", "dataset", "split", "resolution", "num_samples", "nfe", "guidance",
    "metric", "value", "evaluator", "config", "commit", "date", "weights", "data",
)
WEIGHTS_VALUES = ("random", "pretrained")
DATA_VALUES = ("embedded", "real")


class ResultsRowError(ValueError):
    """A results row that does not follow the schema; the message names the file and line."""


@dataclass
class ResultRow:
    """One metric value with everything needed to interpret it."""

    paper: Optional[str]
    method: str
    dataset: str
    split: str
    resolution: Optional[str]
    num_samples: Optional[int]
    nfe: Optional[int]
    guidance: Optional[float]
    metric: str
    value: float
    evaluator: str
    config: Optional[str]
    commit: str
    date: str
    weights: str
    data: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        row = asdict(self)
        extra = row.pop("extra")
        row.update(extra)
        value = row["value"]
        if isinstance(value, float) and not math.isfinite(value):
            row["value"] = str(value)  # JSON has no inf / nan
        return row

    @classmethod
    def from_json(cls, row: dict[str, Any], where: str = "<row>") -> "ResultRow":
        validate_row(row, where)
        base = {k: row[k] for k in REQUIRED_FIELDS}
        base["value"] = float(base["value"])
        extra = {k: v for k, v in row.items() if k not in REQUIRED_FIELDS}
        return cls(**base, extra=extra)


def validate_row(row: Any, where: str = "<row>") -> None:
    """Raise :class:`ResultsRowError` naming ``where`` and the offending field."""
    if not isinstance(row, dict):
        raise ResultsRowError(f"{where}: expected a JSON object, found {type(row).__name__}")
    missing = [k for k in REQUIRED_FIELDS if k not in row]
    if missing:
        raise ResultsRowError(f"{where}: missing field(s) {missing}")
    for key in ("method", "dataset", "split", "metric", "evaluator", "commit", "date"):
        if not isinstance(row[key], str) or not row[key]:
            raise ResultsRowError(f"{where}: field {key!r} must be a non-empty string, found {row[key]!r}")
    try:
        float(row["value"])
    except (TypeError, ValueError):
        raise ResultsRowError(f"{where}: field 'value' must be a number, found {row['value']!r}") from None
    if row["weights"] not in WEIGHTS_VALUES:
        raise ResultsRowError(f"{where}: field 'weights' must be one of {WEIGHTS_VALUES}, found {row['weights']!r}")
    if row["data"] not in DATA_VALUES:
        raise ResultsRowError(f"{where}: field 'data' must be one of {DATA_VALUES}, found {row['data']!r}")
    for key in ("num_samples", "nfe"):
        if row[key] is not None and not isinstance(row[key], int):
            raise ResultsRowError(f"{where}: field {key!r} must be an integer or null, found {row[key]!r}")
    if row["guidance"] is not None and not isinstance(row["guidance"], (int, float)):
        raise ResultsRowError(f"{where}: field 'guidance' must be a number or null, found {row['guidance']!r}")


def append_rows(path: str, rows: Iterable[ResultRow | dict[str, Any]]) -> int:
    """Append rows to a JSONL file (created with its folder); one ``write`` per call keeps lines whole."""
    lines = []
    for row in rows:
        data = row.to_json() if isinstance(row, ResultRow) else dict(row)
        validate_row(data, path)
        lines.append(json.dumps(data, sort_keys=True) + "\n")
    if not lines:
        return 0
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("".join(lines))
    return len(lines)


def read_rows(paths: Iterable[str]) -> list[ResultRow]:
    """Read and validate rows from JSONL files; errors name the file and line."""
    rows: list[ResultRow] = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ResultsRowError(f"{where}: not valid JSON ({err.msg})") from None
                rows.append(ResultRow.from_json(data, where))
    return rows


def find_results(root: str = "results") -> list[str]:
    """All ``*.jsonl`` files under ``root`` (recursively), sorted."""
    return sorted(glob.glob(os.path.join(root, "**", "*.jsonl"), recursive=True))


def git_commit(cwd: Optional[str] = None) -> str:
    """The checkout's HEAD commit (``+dirty`` when tracked files changed), or ``"unknown"``.

    ``cwd=None`` asks the checkout this file belongs to (the code that made the row), not the
    working directory the command was started in.
    """
    if cwd is None:
        cwd = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return "unknown"
        commit = head.stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, timeout=5)
        return commit + ("+dirty" if status.stdout.strip() else "")
    except Exception:
        return "unknown"


def utc_now() -> str:
    """ISO-8601 UTC timestamp with seconds."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def infer_data_flag(trainer: Any) -> str:
    """``"embedded"`` when the run's datamodule uses the suite's no-download stand-in data, else ``"real"``.

    A datamodule may say so itself (``is_embedded``); otherwise its ``root`` decides (``None``
    selects the embedded default, DESIGN.md); only a datamodule without a ``root`` is judged
    by its class (a subclass of the embedded base).
    """
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is None:
        return "real"
    flag = getattr(datamodule, "is_embedded", None)
    if isinstance(flag, bool):
        return "embedded" if flag else "real"
    if hasattr(datamodule, "root"):
        return "embedded" if getattr(datamodule, "root") is None else "real"
    return "embedded" if any("Embedded" in cls.__name__ for cls in type(datamodule).__mro__) else "real"


def infer_weights_flag(pl_module: Any, metrics: Iterable[Any] = ()) -> str:
    """``"random"`` when the module reports random weights or any metric's feature network has them."""
    if getattr(pl_module, "uses_random_weights", False):
        return "random"
    if any(getattr(getattr(m, "protocol", None), "random_weights", False) for m in metrics):
        return "random"
    return "pretrained"


def run_config_path(trainer: Any) -> Optional[str]:
    """The resolved ``config.yaml`` the CLI wrote into the run folder, if there is one."""
    from lightning_modules.components.run_dir import run_dir  # no collective: callers may be rank 0 only

    log_dir = run_dir(trainer) if trainer is not None else None
    if log_dir and os.path.isfile(os.path.join(log_dir, "config.yaml")):
        return os.path.join(log_dir, "config.yaml")
    return None


class _Stub:
    """Stands for any class named in a checkpoint's pickle; nothing is imported or run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> "_Stub":
        return _Stub()

    def __setitem__(self, key: Any, value: Any) -> None:  # dict subclasses (OrderedDict) are filled item by item
        pass

    def append(self, value: Any) -> None:  # list subclasses
        pass

    def extend(self, values: Any) -> None:
        pass


class _ProgressUnpickler(pickle.Unpickler):
    """Reads a ``torch.save`` zip's ``data.pkl`` without importing classes or loading tensor storages."""

    def find_class(self, module: str, name: str) -> Any:
        return _Stub

    def persistent_load(self, pid: Any) -> None:
        return None


def checkpoint_progress(path: str) -> tuple[Optional[int], Optional[int]]:
    """``(global_step, epoch)`` stored in a Lightning checkpoint file, read cheaply and safely.

    Why not ``torch.load``: in ``test``/``validate`` the trainer restores only the weights, so
    ``trainer.global_step`` is 0 for an 800-step checkpoint; loading the file again would read
    every tensor, and ``weights_only=True`` rejects some hyper-parameter objects. Only the
    pickle of the zip is read, every class replaced by a stub and no storage touched.
    ``(None, None)`` when the file is not a zip checkpoint or has no such keys.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
            if name is None:
                return None, None
            with archive.open(name) as handle:
                data = _ProgressUnpickler(handle).load()
    except (OSError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError, AttributeError, IndexError, TypeError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    step, epoch = data.get("global_step"), data.get("epoch")
    return (int(step) if isinstance(step, int) else None, int(epoch) if isinstance(epoch, int) else None)


def run_provenance(trainer: Any) -> dict[str, Any]:
    """Row extras that say which weights produced a value: ``checkpoint``, ``step``, ``epoch``, ``config_files``.

    During ``fit`` the trainer's own counters are the truth. In ``test``/``validate``/``predict``
    with a checkpoint (``trainer.ckpt_path``) the step and epoch are those stored in that file
    (the trainer's are 0 there). ``config_files`` are the ``--config`` files the suite's CLI was
    given (``trainer.suite_config_files``, set by ``cli.py``); ``run_config`` the resolved
    ``config.yaml`` of the run folder; ``released_checkpoint`` the authors' released weights the
    module was built from (its ``released_checkpoint`` attribute), only when set. Computed on every
    rank (``trainer.log_dir`` is a collective).
    """
    fn = getattr(getattr(getattr(trainer, "state", None), "fn", None), "value", None)
    ckpt = getattr(trainer, "ckpt_path", None)
    step, epoch = int(getattr(trainer, "global_step", 0)), int(getattr(trainer, "current_epoch", 0))
    if ckpt and fn != "fit":
        stored_step, stored_epoch = checkpoint_progress(str(ckpt))
        step = stored_step if stored_step is not None else step
        epoch = stored_epoch if stored_epoch is not None else epoch
    files = getattr(trainer, "suite_config_files", None)
    released = getattr(getattr(trainer, "lightning_module", None), "released_checkpoint", None)
    provenance = {
        "checkpoint": str(ckpt) if ckpt else None,
        "step": step,
        "epoch": epoch,
        "config_files": [str(f) for f in files] if files else None,
        "run_config": run_config_path(trainer),
    }
    if released:
        provenance["released_checkpoint"] = str(released)
    return provenance


def dataset_field(trainer: Any, paper_dataset: Optional[str], data_flag: str) -> tuple[str, dict[str, Any]]:
    """The row's ``dataset`` and extras: the paper's dataset on real data, the stand-in's name on embedded data.

    An embedded-data row must not claim the paper's dataset (it is not comparable); it names
    the stand-in (the datamodule's ``stand_in_name`` or class attribute ``STAND_IN``, else
    ``"embedded stand-in (<class>)"``)
    and keeps the paper's dataset in ``stand_in_for`` so the leaderboard still places it in
    that paper's table, flagged.
    """
    datamodule = getattr(trainer, "datamodule", None)
    cls = type(datamodule).__name__ if datamodule is not None else "unknown"
    if data_flag == "embedded":
        name = (getattr(datamodule, "stand_in_name", None) or getattr(datamodule, "STAND_IN", None)
                or f"embedded stand-in ({cls})")
        return str(name), {"stand_in_for": paper_dataset}
    return paper_dataset or cls, {}


def describe_evaluator(metric: Any) -> str:
    """The ``evaluator`` field of a row: the metric's declared protocol, or its class name."""
    protocol = getattr(metric, "protocol", None)
    return protocol.describe() if protocol is not None else type(metric).__name__


__all__ = ["ResultRow", "ResultsRowError", "REQUIRED_FIELDS", "validate_row", "append_rows", "read_rows",
           "find_results", "git_commit", "utc_now", "infer_data_flag", "infer_weights_flag", "run_config_path",
           "describe_evaluator", "checkpoint_progress", "run_provenance", "dataset_field"]

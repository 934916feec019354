"""Extra leaderboard plots from results rows: the sampling-budget frontier and metric vs training step.

``benchmarks.leaderboard`` already draws one budget curve per metric (value vs NFE when NFE
varies, else vs training step). This adds, beside ``LEADERBOARD.md``:

* ``<paper>__<dataset>__<metric>__frontier.png``: for rows that name their ``sampler`` (every
  ``EvaluationCallback`` row, and ``benchmarks.sampling_budget``'s sweep) at two or more NFEs:
  value vs NFE per (method, sampler) at the **best guidance** of each point, and the frontier
  (thesis 001 Ch. 2's comparison at equal sampling cost), drawn by
  :func:`benchmarks.sampling_budget.plot_frontier`;
* ``<paper>__<dataset>__<metric>__training_step.png``: value vs the checkpoint's training step
  per (method, NFE, guidance) when NFE varies too (the base plot then shows NFE only).

Rows are read defensively: a missing or non-numeric ``nfe``, ``step``, ``guidance`` or ``sampler``
just keeps a row out of the plot that needs it; non-finite values are skipped.
"""
from __future__ import annotations

import math
import os
import re
from typing import Any, Iterable, Optional

__all__ = ["higher_is_better", "extra_plot_lines"]

_LOWER = re.compile(r"fid|fvd|kid|lpips|rmse|mse|mae|niqe|error|loss|dts|ddc|nrmse", re.IGNORECASE)


def higher_is_better(metric: str, directions: Optional[dict[str, str]] = None) -> bool:
    """From a table's ``metric_directions`` when given, else by name (FID/LPIPS/RMSE/... are lower-better)."""
    for name, direction in (directions or {}).items():
        if name.lower() == metric.lower():
            return direction == "higher"
    return not _LOWER.search(metric)


def _number(value: Any) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "x"


def _budget_points(rows: Iterable[Any], metric: str) -> list[dict]:
    points = []
    for r in rows:
        extra = getattr(r, "extra", None) or {}
        nfe, value, sampler = _number(getattr(r, "nfe", None)), _number(getattr(r, "value", None)), extra.get("sampler")
        if getattr(r, "metric", None) != metric or nfe is None or value is None or not isinstance(sampler, str):
            continue
        steps = _number(extra.get("num_steps"))
        points.append({"model": getattr(r, "method", "?"), "sampler": sampler, "steps": int(steps) if steps else int(nfe),
                       "nfe": nfe, "guidance": _number(getattr(r, "guidance", None)), "value": value})
    return points


def _step_series(rows: Iterable[Any], metric: str) -> dict[str, list[tuple[float, float]]]:
    series: dict[str, dict[float, float]] = {}
    for r in rows:
        extra = getattr(r, "extra", None) or {}
        step, value = _number(extra.get("step")), _number(getattr(r, "value", None))
        if getattr(r, "metric", None) != metric or step is None or value is None:
            continue
        nfe, guidance = _number(getattr(r, "nfe", None)), _number(getattr(r, "guidance", None))
        label = f"{getattr(r, 'method', '?')} NFE {nfe:g}" if nfe is not None else str(getattr(r, "method", "?"))
        label += f" guidance {guidance:g}" if guidance is not None else ""
        series.setdefault(label, {})[step] = value
    return {k: sorted(v.items()) for k, v in sorted(series.items()) if len(v) >= 2}


def _write_step_plot(path: str, title: str, metric: str, series: dict[str, list[tuple[float, float]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    for label, points in series.items():
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def extra_plot_lines(paper_id: str, dataset: str, rows: list[Any], plots_dir: Optional[str],
                     plots_link: str = "leaderboard_plots", directions: Optional[dict[str, str]] = None) -> list[str]:
    """Markdown image lines for the frontier and training-step plots of these rows (written when ``plots_dir``)."""
    from benchmarks.sampling_budget import best_guidance, frontier_points, plot_frontier

    lines: list[str] = []
    for metric in sorted({str(getattr(r, "metric", "")) for r in rows if getattr(r, "metric", None)}):
        stem = f"{_slug(paper_id)}__{_slug(dataset)}__{_slug(metric)}"
        points = _budget_points(rows, metric)
        nfes = {p["nfe"] for p in points}
        if len(nfes) >= 2:
            higher = higher_is_better(metric, directions)
            best = best_guidance(points, higher)
            front = frontier_points(best, higher)
            name = f"{stem}__frontier.png"
            if plots_dir is not None:
                plot_frontier(os.path.join(plots_dir, name), best, front, metric,
                              f"{paper_id} / {dataset}: {metric} vs NFE, best guidance")
            lines.append(f"![{metric} frontier vs NFE]({plots_link}/{name})")
        all_nfe = {_number(getattr(r, "nfe", None)) for r in rows if getattr(r, "metric", None) == metric}
        series = _step_series(rows, metric)
        if len(all_nfe - {None}) >= 2 and series:  # the base plot drew NFE only
            name = f"{stem}__training_step.png"
            if plots_dir is not None:
                _write_step_plot(os.path.join(plots_dir, name), f"{paper_id} / {dataset}: {metric} vs training step",
                                 metric, series)
            lines.append(f"![{metric} vs training step]({plots_link}/{name})")
    return lines

"""Sampling-budget sweep for any module: quality vs NFE at the best guidance (thesis 001, Ch. 2, Sec. 2.3.3-2.3.4).

    python -m benchmarks.sampling_budget --config ddpm_digits_cfg.yaml --ckpt_path last \\
        --samplers ddim ddpm --steps 10 25 50 100 --guidance 1 2 4 --num_samples 1000
    python -m benchmarks.sampling_budget --config ldm_scaling.yaml --ckpt_path runs/.../last.ckpt \\
        --samplers ddim dpm_solver++ --steps 10 20 50 --guidance 1.5 3 5 7.5 -- --data.init_args.root data/coco

Thesis 001 Ch. 2 evaluates every model at several samplers x steps x CFG scales, keeps the
**best CFG scale** per (sampler, steps) and compares models at equal sampling cost. This does
that for any config of the suite, through the real objects: the module, datamodule and trainer
``cli.py`` builds from the same ``--config`` files (``launch.from_config``), the checkpoint
loaded by Lightning's test loop (``trainer.test(ckpt_path=...)``, so the EMA average of
``EMACallback`` is swapped in as in ``cli.py test``), and the scoring of the config's own
:class:`~callbacks.evaluation.EvaluationCallback` (its metrics, real data and row fields). A
config without a test-stage evaluation callback gets one with FID on ``--features``.

For every (sampler, steps, guidance) one test run is made and its rows are kept with
``nfe``, ``guidance``, ``sampler``, ``num_steps`` and ``sweep: sampling_budget``; NFE counts
network evaluations per sample (``Sampler.num_evaluations`` of the module's grid; a guided
step counts 2, the conditional and unconditional halves of the batched call), or the module's
own ``nfe(...)`` where it defines one. Written to ``--out``: ``rows.jsonl`` (every row),
``frontier.md`` (best guidance per point, and the frontier: the best value reachable within
each NFE) and ``frontier.png`` (quality vs NFE per sampler at its best guidance, plus the
frontier); the rows are also appended under ``--results_dir`` (``sampling_budget/<run>.jsonl``)
so ``python -m benchmarks.leaderboard`` plots them.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import warnings

import torch

from launch.errors import one_line_errors
from launch.from_config import build_cli, check_fits, resolve_ckpt_path
from launch.argv import split_overrides

log = logging.getLogger("sampling_budget")

__all__ = ["best_guidance", "frontier_points", "frontier_markdown", "plot_frontier", "module_nfe", "run_sweep", "main"]


# ------------------------------------------------------------------------------------ the frontier
def _score(point: dict, higher_is_better: bool) -> float:
    value = float(point["value"])
    return -value if higher_is_better else value


def best_guidance(points: Iterable[dict], higher_is_better: bool = False) -> list[dict]:
    """The best-guidance point per (model, sampler, steps): Sec. 2.3.3's "best CFG scale" rule.

    ``points`` are dicts with ``sampler``, ``steps``, ``guidance``, ``nfe``, ``value`` (and optionally
    ``model``); non-finite values never win.
    """
    chosen: dict[tuple, dict] = {}
    for p in points:
        if not math.isfinite(float(p["value"])):
            continue
        key = (p.get("model"), p["sampler"], p["steps"])
        if key not in chosen or _score(p, higher_is_better) < _score(chosen[key], higher_is_better):
            chosen[key] = p
    return sorted(chosen.values(), key=lambda p: (str(p.get("model")), p["sampler"], p["nfe"]))


def frontier_points(points: Iterable[dict], higher_is_better: bool = False, cost_key: str = "nfe") -> list[dict]:
    """The points that improve on every cheaper one: the best value reachable within each budget."""
    out: list[dict] = []
    best: Optional[dict] = None
    for p in sorted(points, key=lambda q: (float(q[cost_key]), _score(q, higher_is_better))):
        if best is None or _score(p, higher_is_better) < _score(best, higher_is_better):
            best = p
            out.append(p)
    return out


def frontier_markdown(best: list[dict], front: list[dict], metric: str, cost_key: str = "nfe") -> str:
    """The best-guidance table and the frontier table."""
    lines = [f"# {metric} vs {cost_key.upper() if cost_key == 'nfe' else cost_key} at the best guidance", "",
             f"| model | sampler | steps | {cost_key} | best guidance | {metric} |", "| --- | --- | --- | --- | --- | --- |"]
    for p in best:
        lines.append(f"| {p.get('model', '-')} | {p['sampler']} | {p['steps']} | {p[cost_key]:g} | "
                     f"{_fmt_guidance(p.get('guidance'))} | {float(p['value']):.4g} |")
    lines += ["", f"## Frontier (best {metric} within each {cost_key})", "",
              f"| {cost_key} | {metric} | model | sampler | steps | guidance |", "| --- | --- | --- | --- | --- | --- |"]
    for p in front:
        lines.append(f"| {p[cost_key]:g} | {float(p['value']):.4g} | {p.get('model', '-')} | {p['sampler']} | "
                     f"{p['steps']} | {_fmt_guidance(p.get('guidance'))} |")
    return "\n".join(lines) + "\n"


def _fmt_guidance(value: Any) -> str:
    return "-" if value is None else f"{float(value):g}"


def plot_frontier(path: str | Path, best: list[dict], front: list[dict], metric: str, title: str = "",
                  cost_key: str = "nfe", log_x: bool = True) -> None:
    """Quality vs cost per (model, sampler) at the best guidance, and the frontier (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    series: dict[str, list[dict]] = {}
    for p in best:
        label = p["sampler"] if p.get("model") is None else f"{p['model']} / {p['sampler']}"
        series.setdefault(label, []).append(p)
    for label, pts in sorted(series.items()):
        pts = sorted(pts, key=lambda q: q[cost_key])
        ax.plot([q[cost_key] for q in pts], [q["value"] for q in pts], "o-", ms=4, label=label)
    if front:
        xs, ys = [q[cost_key] for q in front], [q["value"] for q in front]
        ax.step(xs, ys, "k--", where="post", lw=1)
        ax.plot(xs, ys, "kx", ms=7, label="frontier")
    if log_x and best and all(float(p[cost_key]) > 0 for p in best):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("NFE (network evaluations per sample)" if cost_key == "nfe" else cost_key)
    ax.set_ylabel(f"{metric} (best guidance)")
    ax.set_title(title or f"{metric} vs {cost_key}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(path), metadata={"Software": None})
    plt.close(fig)


# ------------------------------------------------------------------------------------ the sweep
def build_sampler(name: str) -> Any:
    """Core samplers, DPM-Solver++ (2M) and ``consistency`` (multistep consistency sampling of distilled
    modules, e.g. CoDi: thesis 001 Sec. 2.3.5's 4-step distilled curve), by name."""
    if name == "consistency":
        from lightning_modules.components.consistency_sampler import ConsistencyMultistepSampler

        return ConsistencyMultistepSampler()
    if name in ("dpm_solver++", "dpmpp_2m", "dpm_solver_pp"):
        from diffusion.dpm_solver import DPMSolverPlusPlusSampler

        return DPMSolverPlusPlusSampler()
    from diffusion.samplers import build_sampler as core

    return core(name)


def is_conditional(module: Any) -> bool:
    """Whether guidance changes anything: class-conditional (``num_classes``) or text-conditional (``context``)."""
    return getattr(module, "num_classes", None) is not None or callable(getattr(module, "context", None))


def module_nfe(module: Any, sampler: Any, steps: int, guidance: float) -> int:
    """Network evaluations per sample (module docstring)."""
    own = getattr(module, "nfe", None)
    if callable(own):
        try:
            return int(own(steps, sampler, guidance))
        except TypeError:
            pass  # a module's nfe() with another signature: count here
    grid = module.sampling_grid(int(steps), torch.device("cpu"))
    count = int(sampler.num_evaluations(grid)) if hasattr(sampler, "num_evaluations") else int(steps)
    guided = float(guidance) != 1.0 and is_conditional(module)
    return count * (2 if guided else 1)


def _evaluation_callback(trainer: Any, args: argparse.Namespace) -> Any:
    from callbacks.evaluation import EvaluationCallback

    found = [cb for cb in trainer.callbacks if isinstance(cb, EvaluationCallback) and "test" in cb.stages]
    if found:
        cb = found[0]
    else:
        from metrics.feature_extractors import build_feature_extractor
        from metrics.fid import FrechetInceptionDistance

        name, random = args.features, False
        if name.endswith("-random") and name != "inception-random":
            name, random = name[: -len("-random")], True  # e.g. digits-random: random-weight stand-in
        extractor = build_feature_extractor(name, random_weights=True) if random else build_feature_extractor(name)
        cb = EvaluationCallback({"fid": FrechetInceptionDistance(feature_extractor=extractor)}, stages=("test",),
                                progress_bar=False)
        trainer.callbacks.append(cb)
        log.info("the config has no test EvaluationCallback: scoring FID on %s features", args.features)
    if args.num_samples is not None:
        cb.num_samples = int(args.num_samples)
    if args.batch_size is not None:
        cb.batch_size = int(args.batch_size)
    for field in ("paper", "method", "dataset"):
        if getattr(args, field) is not None:
            setattr(cb, field, getattr(args, field))
    cb.write_results = False  # the sweep writes its rows itself (with the sweep fields)
    return cb


def run_sweep(configs: Sequence[str], ckpt_path: str | Path, samplers: Sequence[str], steps: Sequence[int],
              guidance: Sequence[float], args: argparse.Namespace, overrides: Sequence[str] = (),
              extra: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """One test run per (sampler, steps, guidance) through Lightning; returns rows and the frontier points."""
    # every test run restores the checkpoint's ModelCheckpoint state, which only warns that the run folder moved
    warnings.filterwarnings("ignore", message="The dirpath has changed")
    suite = build_cli(configs, overrides)
    module, datamodule, trainer = suite.model, suite.datamodule, suite.trainer
    if len(set(guidance)) > 1 and not is_conditional(module):
        raise SystemExit(f"error: --guidance {list(guidance)}: {type(module).__name__} is unconditional, "
                         "guidance has no effect; pass --guidance 1")
    cb = _evaluation_callback(trainer, args)
    if cb.config is None:
        cb.config = " + ".join(str(c) for c in configs)  # no run folder, so no resolved config.yaml
    saved = torch.load(str(ckpt_path), map_location="cpu", weights_only=True, mmap=True)
    check_fits(module, saved.get("state_dict") or {}, ckpt_path)  # one line instead of Lightning's size-mismatch list
    trained = {"step": int(saved.get("global_step", 0)), "epoch": int(saved.get("epoch", 0))}
    del saved
    rows: list[Any] = []
    points: list[dict] = []
    metric = args.metric
    for sampler_name in samplers:
        sampler = build_sampler(sampler_name)
        for n in steps:
            for g in guidance:
                module.sampler = sampler
                cb.sampler, cb.num_steps, cb.guidance_scale = None, int(n), float(g)
                cb.nfe = module_nfe(module, sampler, int(n), float(g))
                trainer.test(module, datamodule=datamodule, ckpt_path=str(ckpt_path), verbose=False)
                for row in cb.last_rows:
                    row.extra.update({"sweep": "sampling_budget", "sampler": sampler_name, "num_steps": int(n),
                                      "checkpoint": str(ckpt_path), "configs": list(configs), **trained,
                                      **(extra or {})})
                    rows.append(row)
                chosen = [r for r in cb.last_rows if metric is None or r.metric == metric]
                if not chosen:
                    raise SystemExit(f"error: --metric {metric}: the evaluation produced {[r.metric for r in cb.last_rows]}")
                metric = chosen[0].metric
                points.append({"sampler": sampler_name, "steps": int(n), "guidance": float(g), "nfe": cb.nfe,
                               "value": chosen[0].value, **({"model": extra["model"]} if extra and "model" in extra else {})})
                log.info("%s %d steps guidance %g (NFE %d): %s = %.4g", sampler_name, n, g, cb.nfe, metric,
                         chosen[0].value)
    source = cb.metrics.get(metric) if metric in cb.metrics else next(iter(cb.metrics.values()))
    higher = bool(getattr(source, "higher_is_better", False))
    return {"rows": rows, "points": points, "metric": metric, "higher_is_better": higher, "module": module}


def write_outputs(out: Path, rows: list[Any], points: list[dict], metric: str, higher: bool, title: str,
                  results_path: Optional[Path] = None, cost_key: str = "nfe",
                  distilled: Sequence[dict] = ()) -> dict[str, Any]:
    """``rows.jsonl``, ``frontier.md`` and ``frontier.png`` in ``out`` (and the rows appended to ``results_path``).

    ``distilled``: points of a second curve (thesis 001 Fig. 2.13's distilled members), shown at their best
    guidance beside the others and listed in their own table, but not part of the frontier."""
    from metrics.results_rows import append_rows

    out.mkdir(parents=True, exist_ok=True)
    (out / "rows.jsonl").unlink(missing_ok=True)
    append_rows(str(out / "rows.jsonl"), rows)
    if results_path is not None:
        append_rows(str(results_path), rows)
    best = best_guidance(points, higher)
    front = frontier_points(best, higher, cost_key)
    best_distilled = best_guidance(distilled, higher)
    text = frontier_markdown(best, front, metric, cost_key)
    if best_distilled:
        text += "\n## Distilled curve (best guidance; not in the frontier above)\n\n" + "\n".join(
            frontier_markdown(best_distilled, [], metric, cost_key).splitlines()[2:-4]) + "\n"
    (out / "frontier.md").write_text(text)
    plot_frontier(out / "frontier.png", best + best_distilled, front, metric, title, cost_key)
    (out / "points.json").write_text(json.dumps({"metric": metric, "higher_is_better": higher, "points": points,
                                                  "best": best, "frontier": front, "distilled": list(distilled),
                                                  "best_distilled": best_distilled}, indent=2) + "\n")
    return {"best": best, "frontier": front, "best_distilled": best_distilled}


def parse_args(argv: Optional[Sequence[str]] = None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Arguments after `--` go to the config parser (e.g. --data.init_args.root x).")
    p.add_argument("--config", action="append", required=True, help="config files as for cli.py (repeatable)")
    p.add_argument("--ckpt_path", required=True, help="a Lightning checkpoint, or `last` (newest of the run)")
    p.add_argument("--samplers", nargs="+", default=["ddim"], help="core sampler names or dpm_solver++")
    p.add_argument("--steps", nargs="+", type=int, required=True)
    p.add_argument("--guidance", nargs="+", type=float, default=[1.0])
    p.add_argument("--num_samples", type=int, default=None, help="generated samples per point (default: the callback's)")
    p.add_argument("--batch_size", type=int, default=None)
    p.add_argument("--metric", default=None, help="metric of the frontier (default: the first one evaluated)")
    p.add_argument("--features", default="inception",
                   help="FID features when the config has no test EvaluationCallback (digits-random: stand-in)")
    p.add_argument("--paper", default=None)
    p.add_argument("--method", default=None)
    p.add_argument("--dataset", default=None)
    p.add_argument("--out", default=None, help="default: runs/sampling_budget/<run name>")
    p.add_argument("--results_dir", default="results", help="rows are appended to <results_dir>/sampling_budget/")
    p.add_argument("--no_results", action="store_true", help="write rows only into --out")
    p.add_argument("--runs_dir", default="runs")
    p.add_argument("--run_name", default=None)
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, overrides = split_overrides(argv)
    return p.parse_args(argv), overrides


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("lightning.pytorch").propagate = False
    args, overrides = parse_args(argv)
    from launch.run_folders import run_name_from_configs

    name = args.run_name or run_name_from_configs(args.config)
    with one_line_errors():
        ckpt = resolve_ckpt_path(args.ckpt_path, args.config, args.runs_dir, args.run_name)
        result = run_sweep(args.config, ckpt, args.samplers, args.steps, args.guidance, args, overrides)
    out = Path(args.out or Path(args.runs_dir) / "sampling_budget" / name)
    results = None if args.no_results else Path(args.results_dir) / "sampling_budget" / f"{name}.jsonl"
    written = write_outputs(out, result["rows"], result["points"], result["metric"], result["higher_is_better"],
                            f"{name}: {result['metric']} vs NFE (best guidance)", results)
    print(frontier_markdown(written["best"], written["frontier"], result["metric"]))
    print(f"{len(result['rows'])} rows, frontier.md and frontier.png written to {out}"
          + (f"; rows appended to {results}" if results else ""))
    return {**result, **written, "out": str(out)}


if __name__ == "__main__":
    main()

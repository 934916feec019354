"""Training-compute curves of the LDM scaling study (thesis 001, Ch. 2, Fig. 2.3) from logged results rows.

Fig. 2.3 plots each size's text-to-image quality against its **training compute** =
``normalised cost x training iterations`` (``CostModel.training_compute``; one unit = one training
iteration of the 866M UNet, Sec. 2.3.3). The points come from the rows the suite already writes: every
``benchmarks.scaling_sweep --config ... --checkpoints WIDTH=PATH`` (or ``cli.py test``) row carries the
member's ``width`` and the checkpoint's real training ``step`` (``metrics.results_rows.run_provenance``).
Evaluating several checkpoints of one run (e.g. every 50K steps) gives that size's curve. As in the sweep,
each (width, step) keeps its **best value over CFG scales** (the thesis's optimal-CFG selection), for the
chosen sampler and number of steps (50-step DDIM, Table 2.1's protocol, by default).

    python -m benchmarks.scaling_training_curves --results results --out scaling_curves \\
        [--metric FID] [--sampler ddim] [--num-steps 50]

Writes ``training_curves.csv`` (width, step, training_compute, value, guidance) and ``training_curves.png``.
"""
from __future__ import annotations

import argparse
import csv
import os
from typing import Iterable, Optional

from lightning_modules.ldm_scaling.cost import CostModel

HIGHER_IS_BETTER = {"CLIP", "CLIPScore"}


def training_curves(rows: Iterable, cost: Optional[CostModel] = None, metric: str = "FID",
                    sampler: Optional[str] = "ddim", num_steps: Optional[int] = 50) -> dict[int, list[dict]]:
    """``{width: [{step, training_compute, value, guidance}, ...]}`` sorted by step (best CFG per point).

    The normalised cost is the row's own ``normalised_cost`` (written by the sweep, FLOPs measured at the
    run's latent size) or else ``cost`` (default: Table 2.1's GFLOPs column).
    """
    cost = cost or CostModel.from_table_2_1()
    higher = metric in HIGHER_IS_BETTER
    best: dict[tuple[int, int], dict] = {}
    for r in rows:
        extra = r.extra
        if r.metric != metric or "width" not in extra or extra.get("step") is None:
            continue
        if sampler is not None and extra.get("sampler") not in (None, sampler):
            continue
        if num_steps is not None and extra.get("num_steps", r.nfe) not in (None, num_steps):
            continue
        width, step = int(extra["width"]), int(extra["step"])
        normalised = extra.get("normalised_cost")
        compute = float(normalised) * step if normalised is not None else cost.training_compute(width, step)
        point = {"step": step, "training_compute": compute, "value": float(r.value), "guidance": r.guidance}
        key = (width, step)
        if key in best:
            old = best[key]["value"]
            if not (point["value"] > old if higher else point["value"] < old):
                continue
        best[key] = point
    curves: dict[int, list[dict]] = {}
    for (width, _), point in sorted(best.items()):
        curves.setdefault(width, []).append(point)
    return curves


def write_curves(curves: dict[int, list[dict]], out: str, metric: str) -> list[str]:
    os.makedirs(out, exist_ok=True)
    table = os.path.join(out, "training_curves.csv")
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["width", "step", "training_compute", metric, "guidance"])
        for width, points in curves.items():
            for p in points:
                writer.writerow([width, p["step"], f"{p['training_compute']:.6g}", f"{p['value']:.6g}", p["guidance"]])
    written = [table]
    if curves:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
        for width, points in curves.items():
            ax.plot([p["training_compute"] for p in points], [p["value"] for p in points], marker="o", label=f"c={width}")
        ax.set_xscale("log")
        ax.set_xlabel("training compute (866M-UNet iterations)")
        ax.set_ylabel(metric)
        ax.set_title("Fig. 2.3: quality vs training compute", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        figure = os.path.join(out, "training_curves.png")
        fig.savefig(figure, metadata={"Software": None})
        plt.close(fig)
        written.append(figure)
    return written


def main(argv: Optional[list[str]] = None) -> int:
    from metrics.results_rows import find_results, read_rows

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default="results", help="folder (or file) of results rows")
    p.add_argument("--out", default="scaling_curves")
    p.add_argument("--metric", default="FID")
    p.add_argument("--sampler", default="ddim", help="'any' keeps every sampler")
    p.add_argument("--num-steps", type=int, default=50, help="0 keeps every step count")
    args = p.parse_args(argv)
    rows = [r for r in read_rows(find_results(args.results)) if r.paper == "ldm_scaling"]
    curves = training_curves(rows, None, args.metric, None if args.sampler == "any" else args.sampler,
                             args.num_steps or None)
    for path in write_curves(curves, args.out, args.metric):
        print(path)
    if not curves:
        print(f"no ldm_scaling {args.metric} rows with width and step under {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

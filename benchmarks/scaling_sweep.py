"""Sampling-efficiency sweep of the LDM scaling study (thesis 001, Ch. 2, Sec. 2.3.3-2.3.5, Figs. 2.8-2.13).

For every family member (base width ``c``): sample with each sampler (DDIM, DDPM, DPM-Solver++) x number
of steps x CFG scale, compute FID, keep the **best-FID CFG scale** per (model, sampler, steps), convert
steps to **sampling cost = normalised cost x steps** (:class:`lightning_modules.ldm_scaling.CostModel`,
normalised by the reference member's FLOPs; ``--cfg-factor 2`` counts guidance's second pass), and write
the FID-versus-cost frontier naming the **winning size at each budget**. With ``--config ... --distill``
each member is also distilled through ``cli.py fit`` by the CoDi module (Eqs. 5.5-5.6, own PF-ODE + EMA
target; ``task: t2i``, the text-to-image case of Sec. 2.3.5; ``configs/ldm_scaling/distill.yaml``) from
its checkpoint, and swept with the ``consistency`` sampler at 4 steps over the CFG grid (best CFG as for
the members): the second curve, rows flagged ``distilled: true``.

Two ways to run it:

* **On the suite's own runs** (``--config``; the shared path of ``benchmarks.sampling_budget``):
  every member is the real ``ScaledLDM`` of the config (``--model.init_args.width c``), its
  checkpoint comes from ``--checkpoints WIDTH=PATH`` (any ``cli.py fit`` checkpoint of that
  config) or is trained here through ``cli.py fit`` for ``--train-steps`` steps; each point is
  a Lightning test run with the config's datamodule and evaluation (``EMACallback`` average
  swapped in), and every point becomes a results row (``nfe``, ``guidance``, ``sampler``, plus
  ``width``, ``normalised_cost``, ``sampling_cost``) in ``--out/rows.jsonl`` and
  ``results/sampling_budget/``. The frontier is over sampling cost across sizes.
* **In-process** (no ``--config``; ``--quick``): tiny members on the embedded digits (pixels as
  latents, 3 channels), trained by this script's own loop; no distilled curve (that needs
  ``--config``). It writes CSVs, not rows.

FID uses the suite's digits-classifier features by default (``metrics.digits_classifier``; comparable
only with itself, not with the thesis's COCO FIDs); real runs pass ``--fid-features inception`` (and,
with ``--config``, the config's own ``EvaluationCallback`` is used when it has one).

Outputs in ``--out``: ``frontier.md`` and ``frontier.png``; with ``--config`` also ``rows.jsonl`` and
``points.json``; in-process also ``sweep.csv`` (every point) and ``best_cfg.csv`` (best CFG per point).

    python -m benchmarks.scaling_sweep --config ldm_scaling.yaml --widths 64 96 --checkpoints 64=a.ckpt 96=b.ckpt
    python -m benchmarks.scaling_sweep --config ldm_scaling.yaml --config tiny/ldm_scaling.yaml --widths 32 64 \
        --train-steps 20 --steps 2 4 --cfg-scales 1.5 3 --num-samples 32     # CPU minutes, through cli.py
    python -m benchmarks.scaling_sweep --config ldm_scaling.yaml --config tiny/ldm_scaling.yaml --widths 32 \
        --train-steps 2 --steps 2 --cfg-scales 1 3 --distill --distill-config ldm_scaling/distill.yaml \
        --distill-config tiny/ldm_scaling/distill.yaml --distill-steps 2 --num-samples 4   # + distilled curve
    python -m benchmarks.scaling_sweep --quick            # in-process: 3 tiny sizes, few steps
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import torch

from lightning_modules.ldm_scaling.cost import CostModel, best_over, frontier
from launch.argv import split_overrides

log = logging.getLogger("scaling_sweep")

PAPER_CFG_SCALES = (1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)  # Sec. 2.3.3
PAPER_SAMPLERS = ("ddim", "ddpm", "dpm_solver++")
DPM_MAX_STEPS = 20  # Sec. 2.3.4: DPM-Solver++ only up to 20 steps


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, few steps/scales/samples (CPU minutes)")
    p.add_argument("--widths", type=int, nargs="+", default=None, help="base widths c of the family members")
    p.add_argument("--reference", type=int, default=None, help="width whose FLOPs are one cost unit (default: largest)")
    p.add_argument("--levels", type=int, default=4)
    p.add_argument("--layers-per-block", type=int, default=2)
    p.add_argument("--context-dim", type=int, default=1024)
    p.add_argument("--image-size", type=int, default=32, help="embedded digits side (pixels = latents, no VAE)")
    p.add_argument("--config", action="append", default=None,
                   help="ScaledLDM config files as for cli.py (repeatable): sweep the suite's own runs")
    p.add_argument("--checkpoints", nargs="*", default=[], help="WIDTH=PATH ScaledLDM checkpoints (with --config)")
    p.add_argument("--runs-dir", default="runs/scaling_sweep", help="with --config: where members are trained")
    p.add_argument("--context-tokens", type=int, default=77, help="text tokens of the FLOP count (77: SD's CLIP)")
    p.add_argument("--results-dir", default="results", help="with --config: rows go to <dir>/sampling_budget/")
    p.add_argument("--train-steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--samplers", nargs="+", default=list(PAPER_SAMPLERS))
    p.add_argument("--steps", type=int, nargs="+", default=[4, 8, 12, 16, 20, 30, 50])
    p.add_argument("--cfg-scales", type=float, nargs="+", default=list(PAPER_CFG_SCALES))
    p.add_argument("--cfg-factor", type=float, default=1.0, help="1: cost formula as written; 2: count CFG's pass")
    p.add_argument("--num-samples", type=int, default=500)
    p.add_argument("--distill", action="store_true",
                   help="with --config: distil every member with the CoDi module (cli.py fit) and add its curve")
    p.add_argument("--distill-config", action="append", default=None,
                   help="the distillation overlays laid over --config (repeatable; default ldm_scaling/distill.yaml)")
    p.add_argument("--distill-steps", type=int, default=None, help="distillation steps (default: the overlay's max_steps)")
    p.add_argument("--distill-sampling-steps", type=int, nargs="+", default=[4], help="Sec. 2.3.5: 4 steps")
    p.add_argument("--fid-features", default="digits")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/scaling_sweep")
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, overrides = split_overrides(argv)
    args = p.parse_args(argv)
    args.overrides = overrides
    if args.checkpoints and not args.config:
        p.error("--checkpoints needs --config (the ScaledLDM config the checkpoints were trained with)")
    if args.distill and not args.config:  # the distilled members are CoDi runs of the suite (cli.py fit)
        p.error("--distill needs --config (the ScaledLDM config; members are distilled with configs/ldm_scaling/distill.yaml)")
    args.distill_config = args.distill_config or ["ldm_scaling/distill.yaml"]
    if args.quick:
        args.widths = args.widths or [16, 32, 64]
        args.levels, args.layers_per_block, args.context_dim = 2, 1, 32
        args.image_size = 16
        args.train_steps = min(args.train_steps, 60)
        args.steps = [s for s in args.steps if s <= 8] or [2, 4, 8]
        args.cfg_scales = [1.5, 3.0]
        args.num_samples = min(args.num_samples, 48)
        args.batch_size = min(args.batch_size, 16)
    if args.config and not args.widths and args.checkpoints:
        args.widths = sorted(parse_checkpoints(args.checkpoints))
    args.widths = args.widths or [64, 96, 128, 160, 192, 224, 256, 288, 320]
    args.latent_size = args.image_size  # embedded digits: pixels are the latents (no VAE)
    return args


def parse_checkpoints(items: Iterable[str]) -> dict[int, str]:
    out = {}
    for item in items:
        width, sep, path = item.partition("=")
        if not sep or not width.isdigit():
            raise ValueError(f"--checkpoints entries are WIDTH=PATH, got {item!r}")
        out[int(width)] = path
    return out


def sweep_points(widths: Sequence[int], samplers: Sequence[str], steps: Sequence[int],
                 cfg_scales: Sequence[float]) -> list[dict]:
    """The (model, sampler, steps, cfg) grid; DPM-Solver++ only up to 20 steps (Sec. 2.3.4)."""
    return [{"model": w, "sampler": s, "steps": n, "cfg": g}
            for w in widths for s in samplers for n in steps for g in cfg_scales
            if not (s == "dpm_solver++" and n > DPM_MAX_STEPS)]


def add_costs(points: list[dict], cost: CostModel) -> list[dict]:
    for p in points:
        guided = float(p.get("cfg", 1.0)) != 1.0
        p["cost"] = cost.sampling_cost(p["model"], int(p["steps"]), guided=guided)
    return points


def budget_table(undistilled: list[dict], distilled: list[dict]) -> list[dict]:
    """For every cost that appears, the best FID within that budget and its size, for both curves."""
    budgets = sorted({round(p["cost"], 6) for p in undistilled + distilled})
    rows = []
    for b in budgets:
        row: dict[str, Any] = {"budget": b}
        for name, pts in (("undistilled", undistilled), ("distilled", distilled)):
            within = [p for p in pts if p["cost"] <= b + 1e-6]
            if within:
                best = min(within, key=lambda p: p["fid"])
                row[f"{name}_fid"], row[f"{name}_winner"] = best["fid"], best["model"]
                row[f"{name}_setting"] = f"{best.get('sampler', 'consistency')}/{best['steps']} steps/cfg {best.get('cfg', 1.0)}"
        rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def frontier_markdown(rows: list[dict], cost_note: str) -> str:
    lines = [f"# FID vs sampling cost ({cost_note})", "",
             "| budget | best FID (undistilled) | winning c | setting | best FID (distilled, 4 steps) | winning c |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append("| {:.3f} | {} | {} | {} | {} | {} |".format(
            r["budget"], _fmt(r.get("undistilled_fid")), r.get("undistilled_winner", "-"),
            r.get("undistilled_setting", "-"), _fmt(r.get("distilled_fid")), r.get("distilled_winner", "-")))
    return "\n".join(lines) + "\n"


def _fmt(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.3f}"


def plot_frontier(path: Path, best: list[dict], distilled: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for width in sorted({p["model"] for p in best}):
        pts = sorted((p for p in best if p["model"] == width and p["sampler"] == "ddim"), key=lambda p: p["cost"])
        pts = pts or sorted((p for p in best if p["model"] == width), key=lambda p: p["cost"])
        ax.plot([p["cost"] for p in pts], [p["fid"] for p in pts], "o-", ms=3, label=f"c={width}")
    front = frontier(best)
    ax.step([p["cost"] for p in front], [p["fid"] for p in front], "k--", where="post", lw=1, label="frontier")
    if distilled:
        d = sorted(distilled, key=lambda p: p["cost"])
        ax.plot([p["cost"] for p in d], [p["fid"] for p in d], "s:", color="crimson", label="distilled (4 steps)")
    ax.set_xscale("log")
    ax.set_xlabel("sampling cost (normalised cost x steps)")
    ax.set_ylabel("FID (best CFG)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ models
def build_member(width: int, args: argparse.Namespace):
    from lightning_modules.ldm_scaling.module import ScaledLDM

    return ScaledLDM(width=width, levels=args.levels, layers_per_block=args.layers_per_block,
                     norm_num_groups=min(32, width), context_dim=args.context_dim, latent_size=args.latent_size,
                     latent_channels=3, text_encoder="stand_in", num_sampling_steps=50)


def train_member(model, data: dict, steps: int, args: argparse.Namespace) -> None:
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=args.lr)
    g = torch.Generator().manual_seed(args.seed)
    model.train()
    for step in range(steps):
        idx = torch.randint(len(data["image"]), (args.batch_size,), generator=g)
        batch = {"image": data["image"][idx].to(args.device), "label": data["label"][idx]}
        loss = model.diffusion_loss(batch["image"], model.context(model.prompts(batch, drop=True))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % max(1, steps // 5) == 0:
            log.info("  train c=%d step %d loss %.4f", model.width, step, float(loss))
    model.eval()


def fid_of(images: torch.Tensor, real: torch.Tensor, features: str) -> float:
    from metrics.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature_extractor=features)
    metric.update(real.cpu(), real=True)
    metric.update(images.cpu(), real=False)
    return float(metric.compute())


def load_data(args: argparse.Namespace) -> tuple[dict, dict]:
    from datamodules.scaling_text_images import TextImageDataModule

    dm = TextImageDataModule(root=None, size=args.image_size, seed=args.seed)
    train, val = dm.build_datasets()
    return train.tensors, val.tensors


# ------------------------------------------------------------------------------ the suite's own runs
def train_with_cli(configs: Sequence[str], width: int, args: argparse.Namespace) -> Path:
    """Train one member through ``cli.py fit`` (the config's module, datamodule and callbacks); its last.ckpt."""
    import cli
    from launch.from_config import config_args
    from launch.checkpoints import newest_complete_checkpoint

    name = f"scaling_c{width}"
    cli.main(["fit", *config_args(configs), "--model.init_args.width", str(width), "--trainer.max_steps",
              str(args.train_steps), "--runs_dir", args.runs_dir, "--run_name", name, *args.overrides])
    found = newest_complete_checkpoint(Path(os.path.realpath(args.runs_dir)) / name)
    if found is None:
        raise SystemExit(f"error: training c={width} wrote no checkpoint under {Path(args.runs_dir) / name}")
    return found


def distill_with_cli(args: argparse.Namespace, width: int, member_ckpt: Path, unet_config: str) -> Path:
    """Distil one member through ``cli.py fit``: the CoDi module (``task: t2i``) of the distill overlays, started
    from the member's checkpoint, its UNet config passed on (thesis 001 Sec. 2.3.5); its last.ckpt."""
    import cli
    from launch.from_config import config_args
    from launch.checkpoints import newest_complete_checkpoint

    name = f"scaling_c{width}_distilled"
    steps = [] if args.distill_steps is None else ["--trainer.max_steps", str(args.distill_steps)]
    cli.main(["fit", *config_args([*args.config, *args.distill_config]), "--model.init_args.init_checkpoint",
              str(member_ckpt), "--model.init_args.unet_config", unet_config, *steps, "--runs_dir", args.runs_dir,
              "--run_name", name, *args.overrides])
    found = newest_complete_checkpoint(Path(os.path.realpath(args.runs_dir)) / name)
    if found is None:
        raise SystemExit(f"error: distilling c={width} wrote no checkpoint under {Path(args.runs_dir) / name}")
    return found


def sweep_suite_runs(args: argparse.Namespace) -> dict:
    """``--config`` mode: every member through ``benchmarks.sampling_budget.run_sweep``; frontier over cost."""
    from types import SimpleNamespace

    from benchmarks.sampling_budget import run_sweep, write_outputs
    from lightning_modules.ldm_scaling.family import count_flops

    ckpts = {w: Path(p) for w, p in parse_checkpoints(args.checkpoints).items()}
    sweep_args = SimpleNamespace(num_samples=args.num_samples, batch_size=args.batch_size, metric=None,
                                 features=args.fid_features, paper=None, method=None, dataset=None)
    rows, points, gflops = [], [], {}
    distilled: list[dict] = []
    unet_configs: dict[int, str] = {}
    metric, higher = None, False
    for width in args.widths:
        ckpt = ckpts.get(width) or train_with_cli(args.config, width, args)
        for sampler in args.samplers:
            steps = [n for n in args.steps if not (sampler == "dpm_solver++" and n > DPM_MAX_STEPS)]
            if not steps:
                continue
            result = run_sweep(args.config, ckpt, [sampler], steps, args.cfg_scales, sweep_args,
                               ["--model.init_args.width", str(width), *args.overrides],
                               extra={"model": width, "width": width})
            rows += result["rows"]
            points += result["points"]
            metric, higher = result["metric"], result["higher_is_better"]
            if width not in gflops:
                module = result["module"]
                meta = copy.deepcopy(module.network).to("meta")
                gflops[width] = count_flops(meta, (1, *module.sample_shape), context_tokens=args.context_tokens) / 1e9
                unet_configs[width] = json.dumps({k: v for k, v in dict(module.network.config).items() if not k.startswith("_")})
        if args.distill:  # Sec. 2.3.5: the member distilled (same UNet, so same FLOPs), 4 steps, best CFG of the grid
            dckpt = distill_with_cli(args, width, ckpt, unet_configs[width])
            result = run_sweep([*args.config, *args.distill_config], dckpt, ["consistency"], args.distill_sampling_steps,
                               args.cfg_scales, sweep_args, ["--model.init_args.unet_config", unet_configs[width],
                                                             *args.overrides],
                               extra={"model": width, "width": width, "distilled": True, "member_checkpoint": str(ckpt)})
            rows += result["rows"]
            distilled += result["points"]
    reference = args.reference or max(args.widths)
    cost = CostModel(gflops, reference, args.cfg_factor)
    for p in points + distilled:
        p["cost"] = cost.sampling_cost(p["model"], int(p["steps"]), guided=float(p["guidance"]) != 1.0)
    by_point = {(p["model"], p["sampler"], p["steps"], p["guidance"]): p["cost"] for p in points + distilled}
    for r in rows:
        key = (r.extra["width"], r.extra["sampler"], r.extra["num_steps"], r.guidance)
        r.extra.update({"normalised_cost": cost.normalised(r.extra["width"]), "sampling_cost": by_point[key],
                        "cost_reference_width": reference, "cfg_factor": args.cfg_factor})
    out = Path(args.out)
    results = Path(args.results_dir) / "sampling_budget" / "scaling_sweep.jsonl"
    written = write_outputs(out, rows, points, metric, higher, f"{metric} vs sampling cost (unit: one c={reference} forward)",
                            results, cost_key="cost", distilled=distilled)
    print((out / "frontier.md").read_text())
    print("normalised costs: " + ", ".join(f"c={w}: {cost.normalised(w):.3f}" for w in args.widths))
    print(f"{len(rows)} rows written to {out}/rows.jsonl and {results}")
    return {"rows": rows, "points": points, "distilled": distilled, "gflops": gflops,
            "unet_configs": {w: json.loads(c) for w, c in unet_configs.items()}, **written}


def main(argv: Optional[Sequence[str]] = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    if args.config:
        return sweep_suite_runs(args)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, val = load_data(args)
    from lightning_modules.ldm_scaling.family import count_flops

    models, gflops = {}, {}
    for width in args.widths:
        model = build_member(width, args).to(args.device)
        t0 = time.time()  # in-process members are trained here; suite checkpoints go through --config
        train_member(model, train, args.train_steps, args)
        log.info("trained c=%d (%.1fM params) in %.0fs", width, sum(p.numel() for p in model.network.parameters()) / 1e6,
                 time.time() - t0)
        meta = copy.deepcopy(model.network).to("meta")
        gflops[width] = count_flops(meta, (1, 3, args.latent_size, args.latent_size), context_tokens=8) / 1e9
        models[width] = model
    reference = args.reference or max(args.widths)
    cost = CostModel(gflops, reference, args.cfg_factor)
    real = val["image"][: args.num_samples]
    prompts = [f"a handwritten digit {i % 10}" for i in range(args.num_samples)]
    points = []
    for p in sweep_points(args.widths, args.samplers, args.steps, args.cfg_scales):
        model = models[p["model"]]
        g = torch.Generator().manual_seed(args.seed)
        noise = torch.randn((args.num_samples, *model.sample_shape), generator=g).to(args.device)
        from lightning_modules.ldm_scaling.module import build_sampler_by_name

        images = model.sample(args.num_samples, prompts=prompts, num_steps=p["steps"], sampler=build_sampler_by_name(p["sampler"]),
                              guidance_scale=p["cfg"], generator=g, noise=noise)
        p["fid"] = fid_of(images, real, args.fid_features)
        points.append(p)
        log.info("c=%d %s %d steps cfg %.1f: FID %.3f", p["model"], p["sampler"], p["steps"], p["cfg"], p["fid"])
    add_costs(points, cost)
    best = best_over(points, ("model", "sampler", "steps"))
    distilled: list[dict] = []  # the distilled curve needs --config (CoDi runs through cli.py)
    rows = budget_table(best, distilled)
    write_csv(out / "sweep.csv", points)
    write_csv(out / "best_cfg.csv", best + distilled)
    note = f"unit = one forward of c={reference}; CFG factor {args.cfg_factor:g}; FID features: {args.fid_features}"
    (out / "frontier.md").write_text(frontier_markdown(rows, note))
    plot_frontier(out / "frontier.png", best, distilled)
    print(frontier_markdown(rows, note))
    print(f"normalised costs: " + ", ".join(f"c={w}: {cost.normalised(w):.3f}" for w in args.widths))
    print(f"written to {out}")
    return {"points": points, "best": best, "distilled": distilled, "table": rows, "gflops": gflops}


if __name__ == "__main__":
    main()

"""Sampling-efficiency sweep of the LDM scaling study (thesis 001, Ch. 2, Sec. 2.3.3-2.3.5, Figs. 2.8-2.13).

For every family member (base width ``c``): sample with each sampler (DDIM, DDPM, DPM-Solver++) x number
of steps x CFG scale, compute FID, keep the **best-FID CFG scale** per (model, sampler, steps), convert
steps to **sampling cost = normalised cost x steps** (:class:`lightning_modules.ldm_scaling.CostModel`,
normalised by the reference member's FLOPs; ``--cfg-factor 2`` counts guidance's second pass), and write
the FID-versus-cost frontier naming the **winning size at each budget**. With ``--distill`` each member
is also distilled with the CoDi objective (Eqs. 5.5-5.6, own PF-ODE + EMA target, no condition: the
text-to-image case of Sec. 2.3.5) and sampled in 4 consistency steps without CFG: the second curve.

Models come from ``--checkpoints WIDTH=PATH ...`` (ScaledLDM Lightning checkpoints) or are trained here
on the embedded digits (``--train-steps``). FID uses the suite's digits-classifier features on the
embedded data (``metrics.digits_classifier``; comparable only with itself, not with the thesis's
COCO FIDs); real runs pass ``--fid-features inception`` and a real validation set via the config.

Outputs in ``--out``: ``sweep.csv`` (every point), ``best_cfg.csv`` (best CFG per point),
``frontier.md`` (the frontier table with the winning size per budget) and ``frontier.png``.

    python -m benchmarks.scaling_sweep --quick            # minutes on a CPU: 3 tiny sizes, few steps
    python -m benchmarks.scaling_sweep --widths 64 96 128 320 --checkpoints 64=... 96=... (GPU)

Not run in the test suite (too slow); ``tests/test_scaling_sweep.py`` tests its pieces.
"""
from __future__ import annotations

import argparse
import copy
import csv
import logging
import math
import time
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import torch

from lightning_modules.ldm_scaling.cost import CostModel, best_over, frontier
from lightning_modules.components.safe_load import safe_torch_load

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
    p.add_argument("--checkpoints", nargs="*", default=[], help="WIDTH=PATH ScaledLDM checkpoints")
    p.add_argument("--train-steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--samplers", nargs="+", default=list(PAPER_SAMPLERS))
    p.add_argument("--steps", type=int, nargs="+", default=[4, 8, 12, 16, 20, 30, 50])
    p.add_argument("--cfg-scales", type=float, nargs="+", default=list(PAPER_CFG_SCALES))
    p.add_argument("--cfg-factor", type=float, default=1.0, help="1: cost formula as written; 2: count CFG's pass")
    p.add_argument("--num-samples", type=int, default=500)
    p.add_argument("--distill", action="store_true", help="add the CoDi-distilled 4-step curve")
    p.add_argument("--distill-steps", type=int, default=1000)
    p.add_argument("--fid-features", default="digits")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/scaling_sweep")
    args = p.parse_args(argv)
    if args.quick:
        args.widths = args.widths or [16, 32, 64]
        args.levels, args.layers_per_block, args.context_dim = 2, 1, 32
        args.image_size = 16
        args.train_steps = min(args.train_steps, 60)
        args.distill_steps = min(args.distill_steps, 30)
        args.steps = [s for s in args.steps if s <= 8] or [2, 4, 8]
        args.cfg_scales = [1.5, 3.0]
        args.num_samples = min(args.num_samples, 48)
        args.batch_size = min(args.batch_size, 16)
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


class DistilledMember:
    """A family member distilled with the CoDi objective (no condition), sampled by consistency steps."""

    def __init__(self, model, skip: int = 20) -> None:
        from lightning_modules.codi.boundary import ConsistencyBoundary

        self.model = model
        T = model.path.num_train_timesteps
        self.grid_k = torch.arange(T - 1, -1, -skip, dtype=torch.float64).flip(0)
        self.boundary = ConsistencyBoundary(model.path, float(model.path.t_from_timestep(self.grid_k[:1])[0]))

    def f(self, net, z, t, ctx):
        from diffusion.predictions import to_data_and_noise

        v = net(z, self.model.path.network_time(t), encoder_hidden_states=ctx).sample
        x_hat, _ = to_data_and_noise(v, self.model.prediction_type, z, t, self.model.path)
        return self.boundary.apply(z, x_hat, t)

    def distill(self, data: dict, steps: int, args: argparse.Namespace) -> None:
        model, path = self.model, self.model.path
        student = model.network
        target = copy.deepcopy(student).requires_grad_(False)
        opt = torch.optim.AdamW(student.parameters(), lr=args.lr * 0.2)
        g = torch.Generator().manual_seed(args.seed + 1)
        student.train()
        for step in range(steps):
            idx = torch.randint(len(data["image"]), (args.batch_size,), generator=g)
            x = data["image"][idx].to(args.device)
            ctx = model.context(model.prompts({"label": data["label"][idx]}))
            j = int(torch.randint(1, len(self.grid_k), (1,), generator=g))  # one t per batch (Fig. 5.6)
            t = path.t_from_timestep(self.grid_k[j:j + 1]).float().to(x.device).expand(x.shape[0])
            s = path.t_from_timestep(self.grid_k[j - 1:j]).float().to(x.device).expand(x.shape[0])
            eps = torch.randn(x.shape, generator=g).to(x.device)
            view = (-1, 1, 1, 1)
            z_t = path.data_coef(t).view(view) * x + path.noise_coef(t).view(view) * eps
            f_t = self.f(student, z_t, t, ctx)
            with torch.no_grad():
                z_s = path.data_coef(s).view(view) * f_t + path.noise_coef(s).view(view) * eps
                eps_s = self.boundary.noise(z_s, self.f(target, z_s, s, ctx), s)
            loss = (self.boundary.noise(z_t, f_t, t) - eps_s).pow(2).mean() + (f_t - x).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for pt, ps in zip(target.parameters(), student.parameters()):
                    pt.lerp_(ps, 0.05)  # EMA target, rate 0.95
        student.eval()

    @torch.no_grad()
    def sample(self, prompts: list[str], steps: int, generator: torch.Generator) -> torch.Tensor:
        from diffusion.grids import discrete_grid
        from lightning_modules.components.consistency_sampler import ConsistencyMultistepSampler

        model = self.model
        ctx = model.context(prompts)
        noise = torch.randn((len(prompts), *model.sample_shape), generator=generator).to(model.device)
        from lightning_modules.codi.base import ConditionalDenoiser

        den = ConditionalDenoiser(lambda z, t: self.f(model.network, z, t, ctx), "sample")
        grid = discrete_grid(model.path, steps, spacing="trailing").to(noise.device)
        return ConsistencyMultistepSampler().sample(den, model.path, noise, grid, generator=generator).clamp(-1, 1)


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


def main(argv: Optional[Sequence[str]] = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, val = load_data(args)
    ckpts = parse_checkpoints(args.checkpoints)
    from lightning_modules.ldm_scaling.family import count_flops

    models, gflops = {}, {}
    for width in args.widths:
        model = build_member(width, args).to(args.device)
        if width in ckpts:
            state = safe_torch_load(ckpts[width], key="--checkpoints")["state_dict"]
            model.load_state_dict(state, strict=False)
        else:
            t0 = time.time()
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
    distilled = []
    if args.distill:
        for width, model in models.items():
            member = DistilledMember(copy.deepcopy(model))
            member.distill(train, args.distill_steps, args)
            images = member.sample(prompts, 4, torch.Generator().manual_seed(args.seed))
            distilled.append({"model": width, "sampler": "consistency", "steps": 4, "cfg": 1.0,
                              "fid": fid_of(images, real, args.fid_features), "cost": cost.sampling_cost(width, 4)})
            log.info("distilled c=%d 4 steps: FID %.3f", width, distilled[-1]["fid"])
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

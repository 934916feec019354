"""Performance of LFG-Diffusion (thesis 001 Ch. 7), measured in one run.

1. Training steps/s (median step time of the fine-tuning objective, Eq. 7.11, with the optimizer step)
   and peak memory of the tiny config (``configs/tiny/lfg_shadow.yaml``), or with ``--full`` the thesis
   sizes (random weights, bf16 autocast on a GPU, 256x256, batch ``--batch``).
2. Sampling: DDIM-50 against ancestral DDPM-1000 on the same network and inputs, in the same process.
   Both are core samplers with one network call per step and the encoder runs once per image, so the
   time ratio should equal the NFE ratio (50 / 1000 = 0.05) if there is no per-step overhead; the
   script prints both and their relative difference (medians of interleaved repeats; on a CPU the
   ratio uses this process's CPU time, so other jobs on shared cores do not skew it).

    python -m benchmarks.perf_lfg_shadow [--steps 10] [--sample_batch 4] [--repeats 3] [--full] [--device cuda] [--batch 8]
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import yaml

from lightning_modules.lfg_shadow import LFGNetwork, LFGShadowRemoval

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def build(full: bool) -> LFGShadowRemoval:
    name = "lfg_shadow.yaml"
    cfg = yaml.safe_load(((CONFIGS if full else CONFIGS / "tiny") / name).read_text())["model"]["init_args"]
    base = yaml.safe_load((CONFIGS / name).read_text())["model"]["init_args"]
    net_args = {**base["network"]["init_args"], **cfg["network"]["init_args"]}
    size = cfg.get("image_size", base["image_size"])
    return LFGShadowRemoval(LFGNetwork(**net_args), image_size=size, hybrid_loss=True, p2_gamma=1.0)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _batch(size: int, batch: int, device: str) -> dict[str, torch.Tensor]:
    y0 = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    mask = (torch.rand(batch, 1, size, size, device=device) > 0.7).float()
    return {"image": y0, "shadow": y0 * (1 - 0.5 * mask), "mask": mask}


def train_steps(module: LFGShadowRemoval, batch: dict[str, torch.Tensor], steps: int, device: str) -> list[float]:
    optimizer = torch.optim.AdamW(module.parameters(), lr=2e-5)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else nullcontext()
    times = []
    for _ in range(steps + 1):
        _sync(device)
        start = time.perf_counter()
        with autocast:
            loss = module.losses(batch)["total"].mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        times.append(time.perf_counter() - start)
    return times[1:]  # the first step includes one-off allocations


def sampling_ratio(module: LFGShadowRemoval, batch: dict[str, torch.Tensor], device: str, repeats: int = 3) -> dict[str, Any]:
    """Median over ``repeats`` interleaved runs of each sampler: wall time, and on a CPU also process time
    (this process's own CPU seconds, insensitive to other jobs sharing the cores)."""
    module.eval()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else nullcontext()
    plan = (("ddim", 50), ("ddpm", 1000))
    walls: dict[str, list[float]] = {name: [] for name, _ in plan}
    cpus: dict[str, list[float]] = {name: [] for name, _ in plan}
    with autocast:
        for name, _ in plan:
            module.remove_shadows(batch["shadow"], batch["mask"], num_steps=2, sampler=name)  # warm-up
        for _ in range(repeats):
            for name, steps in plan:
                _sync(device)
                wall, cpu = time.perf_counter(), time.process_time()
                module.remove_shadows(batch["shadow"], batch["mask"], num_steps=steps, sampler=name)
                _sync(device)
                walls[name].append(time.perf_counter() - wall)
                cpus[name].append(time.process_time() - cpu)
    med = {k: statistics.median(v) for k, v in walls.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpus.items()}
    nfe_ratio = module.nfe(50, "ddim") / module.nfe(1000, "ddpm")
    clock = cpu_med if not device.startswith("cuda") else med
    ratio = clock["ddim"] / clock["ddpm"]
    return {"ddim50_s": med["ddim"], "ddpm1000_s": med["ddpm"], "wall_ratio": med["ddim"] / med["ddpm"],
            "clock": "process time" if not device.startswith("cuda") else "wall time", "ratio": ratio,
            "nfe_ratio": nfe_ratio, "relative_difference": abs(ratio - nfe_ratio) / nfe_ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--sample_batch", type=int, default=1,
                        help="images per sampling call; 4 makes the tiny network's call dominate Python overhead")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of each sampler (median)")
    parser.add_argument("--full", action="store_true", help="the thesis sizes at 256x256 (use a GPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip_sampling", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    module = build(args.full).to(args.device)
    params = sum(p.numel() for p in module.parameters())
    times = train_steps(module, _batch(module.image_size, args.batch, args.device), args.steps, args.device)
    median = statistics.median(times)
    print(f"LFG-Diffusion {'full' if args.full else 'tiny'} ({params / 1e6:.2f}M parameters, random weights), "
          f"{module.image_size}x{module.image_size}, batch {args.batch}, device {args.device}")
    print(f"train step (median of {args.steps}) : {median * 1e3:8.1f} ms  = {1 / median:7.2f} steps/s")
    print(f"peak memory                     : {_peak(args.device):8.0f} MiB")
    if not args.skip_sampling:
        res = sampling_ratio(module, _batch(module.image_size, args.sample_batch, args.device), args.device, args.repeats)
        print(f"DDIM-50   : {res['ddim50_s']:8.3f} s    DDPM-1000 : {res['ddpm1000_s']:8.3f} s  (median wall; "
              f"wall ratio {res['wall_ratio']:.4f})")
        print(f"{res['clock']} ratio {res['ratio']:.4f} vs NFE ratio {res['nfe_ratio']:.4f} "
              f"(relative difference {100 * res['relative_difference']:.1f}%; goal <= 5%)")


if __name__ == "__main__":
    main()

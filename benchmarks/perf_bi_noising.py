"""Per-step sampling cost of Bi-Noising vs SR3 (thesis 001 Ch. 8, §8.3.4, Table 8.4's running time), one run.

Bi-noising runs two network evaluations per step (f_phi, then eps_theta on the re-noised state) and
SR3 one, so with equal-sized networks the per-step time ratio should be the NFE ratio 2.0 if the
re-noising and clipping add nothing measurable. The script builds the tiny config's two networks
(``configs/tiny/bi_noising_colorization.yaml``; random stand-in weights, timing only), samples the same
conditions with both samplers, interleaved ``--repeats`` times, and prints the medians of CPU process
time (wall time on a GPU), the counted network calls, both ratios and their relative difference.
``--full`` uses the paper-size networks (93.6M each, 256x256) and is meant for a GPU. It also prints the
training steps/s of f_phi's L_simple (median of ``--train_steps`` optimizer steps, batch ``--batch``) and
the process's peak resident memory.

    python -m benchmarks.perf_bi_noising [--steps 20] [--batch 4] [--repeats 5] [--full] [--device cuda]
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

import torch
import yaml

from lightning_modules.bi_noising import BiNoisingRestoration, ConditionalADMUNet
from lightning_modules.components.adm_unet import ADMUNet

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def build(full: bool) -> BiNoisingRestoration:
    base = yaml.safe_load((CONFIGS / "bi_noising_colorization.yaml").read_text())["model"]["init_args"]
    cfg = base if full else {**base, **yaml.safe_load((CONFIGS / "tiny" / "bi_noising_colorization.yaml").read_text())["model"]["init_args"]}
    net, prior = dict(cfg["network"]["init_args"]), dict(cfg["prior"]["init_args"])
    return BiNoisingRestoration(ConditionalADMUNet(**net), prior=ADMUNet(**prior), image_size=cfg["image_size"])


def measure(module: BiNoisingRestoration, steps: int, batch: int, repeats: int, device: str) -> dict[str, float]:
    module = module.to(device).eval()
    cond = torch.rand(batch, 3, module.image_size, module.image_size, device=device) * 2 - 1
    clock = time.perf_counter if device != "cpu" else time.process_time
    times: dict[str, list[float]] = {"sr3": [], "bi_noising": []}
    calls: dict[str, int] = {}
    module.restore(cond, num_steps=2, sampler="bi_noising")  # warm-up
    for _ in range(repeats):
        for name in times:
            if device != "cpu":
                torch.cuda.synchronize()
            start = clock()
            module.restore(cond, num_steps=steps, sampler=name, generator=torch.Generator(device=device).manual_seed(0))
            if device != "cpu":
                torch.cuda.synchronize()
            times[name].append((clock() - start) / steps)
            calls[name] = module.last_network_calls
    sr3, bn = statistics.median(times["sr3"]), statistics.median(times["bi_noising"])
    nfe_ratio = calls["bi_noising"] / calls["sr3"]
    return {"sr3_s_per_step": sr3, "bi_noising_s_per_step": bn, "time_ratio": bn / sr3, "nfe_ratio": nfe_ratio,
            "relative_difference": abs(bn / sr3 - nfe_ratio) / nfe_ratio}


def train_speed(module: BiNoisingRestoration, steps: int, batch: int, device: str) -> float:
    """Optimizer steps per second of f_phi's L_simple (median step time)."""
    module = module.to(device).train()
    size = module.image_size
    data = {"image": torch.rand(batch, 3, size, size, device=device) * 2 - 1,
            "condition": torch.rand(batch, 3, size, size, device=device) * 2 - 1}
    optimizer = torch.optim.AdamW(module.network.parameters(), lr=1e-4)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = module.losses(data)["total"].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device != "cpu":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1.0 / statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--train_steps", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    module = build(args.full)
    result = measure(module, args.steps, args.batch, args.repeats, args.device)
    result["train_steps_per_s"] = train_speed(module, args.train_steps, args.batch, args.device)
    result["peak_rss_MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for key, value in result.items():
        print(f"{key}: {value:.4g}")


if __name__ == "__main__":
    main()

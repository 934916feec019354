"""Performance of D2SM (thesis 001, Ch. 9), measured in one run.

1. Step time of L1 + D2SM over L1 alone on the same restorer (one training step: forward, loss,
   backward, Adam), and how it grows with the queue size q.
2. Peak memory of a D2SM step at q = 0, q = N (one step's samples) and q = 256: the point of the
   memorised historic queue (§9.3.2) is more samples at no extra *activation* memory, since only
   detached features of earlier steps are stored. Each setting runs in its own spawned process, so
   the peak (process RSS on CPU, ``torch.cuda.max_memory_allocated`` on GPU) belongs to it alone;
   the CPU number includes the ~1 GiB Python/torch runtime, so the step's own share is the rise
   over the pre-step baseline (reported too).

Tiny: FFDNet (16 features, 4 layers), the random stand-in Phi, 64 px crops, 32 px windows with
stride 16 (9 patches per image). ``--full`` (GPU): published FFDNet (96 x 12), VGG-19 conv5_4 with
random weights, 512 crops, 224 / 56 windows (36 patches per image), fp32.

    python -m benchmarks.perf_d2sm [--steps 10] [--batch 8] [--queues 0 72 256] [--full] [--device cuda]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time
from typing import Any

import torch


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _build(full: bool, d2sm_weight: float, queue: int, device: str) -> Any:
    from lightning_modules.components.d2sm_loss import D2SMLoss
    from lightning_modules.components.semantic_features import TinyRandomFeatures, build_vgg19_features
    from lightning_modules.d2sm import D2SMRestorationModule, FFDNet

    restorer = FFDNet() if full else FFDNet(features=16, num_layers=4)
    module = D2SMRestorationModule(restorer=restorer, d2sm_weight=0.0).to(device)  # L1 only; D2SM attached below
    if d2sm_weight > 0:
        phi = (build_vgg19_features(None) if full else TinyRandomFeatures(8)).to(device)
        window, stride = (224, 56) if full else (32, 16)
        module.d2sm = D2SMLoss(phi, queue_size=queue, window=window, stride=stride).to(device)
        module.hparams.d2sm_weight = d2sm_weight
    return module


def measure(full: bool, d2sm_weight: float, queue: int, steps: int, batch: int, device: str,
            out: "mp.Queue[dict[str, Any]]") -> None:
    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    size = 512 if full else 64
    module = _build(full, d2sm_weight, queue, device)
    module.train()
    optimizer = torch.optim.Adam(module.trainable_parameters(), lr=1e-4)
    clean = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    batch_dict = {"image": clean, "input": clean + 0.2 * torch.randn_like(clean),
                  "sigma": torch.full((batch,), 50.0, device=device)}
    base = _rss_mib()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    times = []
    for step in range(steps + 2):  # 2 warm-up steps (they also fill the queue)
        start = time.perf_counter()
        loss = module.losses(batch_dict)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if step >= 2:
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else _rss_mib()
    samples = batch * (9 if not full else 36)
    out.put({"d2sm": d2sm_weight > 0, "queue": queue, "samples_per_step": samples,
             "step_ms": 1000 * statistics.median(times), "peak_mib": peak, "rise_mib": peak - base})


def run(full: bool, d2sm_weight: float, queue: int, steps: int, batch: int, device: str) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out: "mp.Queue[dict[str, Any]]" = ctx.Queue()
    proc = ctx.Process(target=measure, args=(full, d2sm_weight, queue, steps, batch, device, out))
    proc.start()
    result = out.get()
    proc.join()
    return result


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--queues", type=int, nargs="+", default=[0, 72, 256])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    rows = [run(args.full, 0.0, 0, args.steps, args.batch, args.device)]
    rows += [run(args.full, 1.0, q, args.steps, args.batch, args.device) for q in args.queues]
    l1 = rows[0]["step_ms"]
    print(f"| objective | queue q | samples N | step (ms) | x L1 | peak (MiB) | rise over baseline (MiB) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        name = "L1 + D2SM" if r["d2sm"] else "L1 only"
        q = r["queue"] if r["d2sm"] else "-"
        print(f"| {name} | {q} | {r['samples_per_step']} | {r['step_ms']:.1f} | {r['step_ms'] / l1:.2f} | "
              f"{r['peak_mib']:.0f} | {r['rise_mib']:.0f} |")
    return rows


if __name__ == "__main__":
    main()

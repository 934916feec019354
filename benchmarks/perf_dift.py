"""DiFT's headline in one run: view-wise sampling keeps the cost per step flat as the field grows (thesis 001 Ch. 4).

One training step (forward, epsilon loss, backward, AdamW) of the tiny DiFT transformer on
video fields of growing size (views x resolution), in the two sampling modes:

* ``view_wise``: n = 4 whole views per field (the DiFT default is 8; tiny here);
* ``uniform_pairs``: the DPF-style baseline, a uniform quarter of *all* the field's tokens.

Measured per setting: step time (median of ``--steps`` after one warm-up) and peak memory. On
CPU the memory is the bytes autograd saves for backward during the step (a
``saved_tensors_hooks`` count: the activation memory that grows with the token count; the
parameters and optimiser state are the same in both modes and left out). On CUDA it is
``torch.cuda.max_memory_allocated`` of the step. Writes ``benchmarks/perf_dift.png`` and prints a
table; ``--full`` (GPU) runs the DiT-XL-size network at 256 px with the f8 latent shape
(4 x 32 x 32, 256 tokens per view), the per-view setting of Table 4.3 (117 GMACs, 15.3 GB).

    python -m benchmarks.perf_dift [--steps 3] [--device cpu] [--full]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from lightning_modules.dift import DiFT, DiFTTransformer, ViewSampler

FIELDS = [(4, 8), (8, 8), (16, 8), (32, 8), (8, 16), (16, 16), (32, 16), (32, 32)]  # (views, pixels)


def _module(mode: str, size: int, full: bool, device: str) -> DiFT:
    if full:
        net = DiFTTransformer(in_channels=4, patch_size=2, latent_size=32, coordinates=("hw", "frame"), text_dim=None)
        size = 32
    else:
        net = DiFTTransformer(in_channels=3, patch_size=2, latent_size=size, hidden_size=64, depth=2, num_heads=4,
                              coordinates=("hw", "frame"), fourier_bands=4)
    sampler = ViewSampler(mode=mode, num_views=4, order="consecutive", pair_fraction=0.25)
    return DiFT(net, modality="video", image_size=size, view_sampler=sampler, use_text=False).to(device)


def measure(mode: str, views: int, size: int, steps: int, device: str, full: bool) -> dict:
    torch.manual_seed(0)
    module = _module(mode, size, full, device)
    channels = 4 if full else 3
    side = 32 if full else size
    batch = {"views": torch.rand(1, views, channels, side, side, device=device) * 2 - 1,
             "frame_index": torch.arange(views, device=device).float().unsqueeze(0)}
    optimizer = torch.optim.AdamW(module.network.parameters(), lr=1e-4)
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    times, peaks = [], []
    for step in range(steps + 1):
        saved[0] = 0
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = module.field_loss(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            peaks.append(torch.cuda.max_memory_allocated() / 2**20)
        else:
            peaks.append(saved[0] / 2**20)
        if step:
            times.append(time.perf_counter() - start)
    tokens = views * (side // 2) ** 2
    return {"mode": mode, "views": views, "size": size, "field_tokens": tokens, "step_s": statistics.median(times),
            "peak_mib": max(peaks)}


def plot(rows: list[dict], path: Path, device: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for mode, marker in (("view_wise", "o"), ("uniform_pairs", "s")):
        sel = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["field_tokens"])
        x = [r["field_tokens"] for r in sel]
        axes[0].plot(x, [r["peak_mib"] for r in sel], marker=marker, label=mode)
        axes[1].plot(x, [1000 * r["step_s"] for r in sel], marker=marker, label=mode)
    memory = "CUDA peak allocated (MiB)" if device.startswith("cuda") else "activations saved for backward (MiB)"
    for ax, label in ((axes[0], memory), (axes[1], "step time (ms)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("field size (tokens = views x (pixels / 2)^2)")
        ax.set_ylabel(label)
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("DiFT tiny transformer, one training step: view-wise (n = 4) vs DPF-style uniform pairs (25%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).with_name("perf_dift.png")))
    args = parser.parse_args()
    fields = [(8, 256)] if args.full else FIELDS
    rows = [measure(mode, v, s, args.steps, args.device, args.full) for v, s in fields for mode in ("view_wise", "uniform_pairs")]
    print(f"{'mode':14s} {'views':>5s} {'px':>4s} {'tokens':>7s} {'step ms':>8s} {'peak MiB':>9s}")
    for r in rows:
        print(f"{r['mode']:14s} {r['views']:5d} {r['size']:4d} {r['field_tokens']:7d} {1000 * r['step_s']:8.1f} {r['peak_mib']:9.2f}")
    if not args.full:
        plot(rows, Path(args.out), args.device)
        print(f"plot: {args.out}")


if __name__ == "__main__":
    main()

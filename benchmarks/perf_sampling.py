"""Sampler overhead benchmark: wall time of ``sample()`` over the network's own time.

For every sampler of :mod:`diffusion.samplers` on a tiny random diffusers UNet (default
batch 16, 3x32x32, 20 steps) this measures, in the same run and interleaved:

* ``sample``: one full ``sampler.sample(...)`` call,
* ``network``: a bare loop of the same number of network forwards on a same-shaped input,
* ``overhead``: ``sample()`` with a zero-cost stand-in network (returns a cached tensor)
  behind the same :class:`~diffusion.NetworkDenoiser`: everything the sampler adds
  (coefficients, conversions, noise draws, the wrapper's time input),

each repeated (after warm-up) and summarised by the median. Two ratios are printed:
``ratio`` = median of the paired ``sample / network`` (direct, but noisy on a shared CPU)
and ``ratio_oh`` = ``1 + overhead / network`` (same quantity from the low-noise overhead
measurement). The goal is <= 1.05.

Run: ``python -m benchmarks.perf_sampling [--device cuda] [--threads 1] [--steps 20]``.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from diffusion import (
    DiscreteDDPMPath,
    EDMPath,
    NetworkDenoiser,
    RectifiedFlowPath,
    build_sampler,
    discrete_grid,
    karras_grid,
    uniform_grid,
)

# sampler name -> (path factory, prediction type, grid builder, constructor kwargs)
CASES: dict[str, tuple[Callable[[], object], str, Callable[[object, int], torch.Tensor], dict]] = {
    "euler": (RectifiedFlowPath, "velocity", lambda p, n: uniform_grid(n), {}),
    "heun": (RectifiedFlowPath, "velocity", lambda p, n: uniform_grid(n), {}),
    "ddim": (DiscreteDDPMPath, "epsilon", lambda p, n: discrete_grid(p, n, "trailing"), {"eta": 0.0}),
    "ddpm": (DiscreteDDPMPath, "epsilon", lambda p, n: discrete_grid(p, n, "trailing"), {}),
    "euler_ancestral": (DiscreteDDPMPath, "epsilon", lambda p, n: discrete_grid(p, n, "trailing"), {}),
    "euler_maruyama": (RectifiedFlowPath, "velocity", lambda p, n: uniform_grid(n), {"diffusion_scale": 0.5}),
    "edm": (EDMPath, "v_prediction", lambda p, n: karras_grid(p, n), {"churn": 10.0, "s_tmin": 0.05, "s_tmax": 50.0}),
}


@dataclass
class Row:
    name: str
    nfe: int
    sample_s: float
    network_s: float

    ratio: float  # median over repeats of sample / network (adjacent pairs: robust to load drift)
    overhead_s: float

    @property
    def ratio_from_overhead(self) -> float:
        return 1.0 + self.overhead_s / self.network_s


def _tiny_unet(channels: int, size: int) -> torch.nn.Module:
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=size, in_channels=channels, out_channels=channels, block_out_channels=(16, 32),
        layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8,
    ).eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    unet: torch.nn.Module, name: str, batch: int, channels: int, size: int, steps: int,
    repeats: int, warmup: int, device: torch.device,
) -> Row:
    path_factory, prediction_type, grid_fn, kwargs = CASES[name]
    path = path_factory()
    grid = grid_fn(path, steps)
    sampler = build_sampler(name, **kwargs)
    denoiser = NetworkDenoiser(unet, path, prediction_type)
    nfe = sampler.num_evaluations(grid)
    gen = torch.Generator(device=device).manual_seed(0)
    noise = torch.randn(batch, channels, size, size, device=device, generator=gen)
    x = noise.clone()
    timestep = torch.full((batch,), 500.0, device=device)

    def network_loop() -> float:
        _sync(device)
        start = time.perf_counter()
        with torch.no_grad():
            for _ in range(nfe):
                unet(x, timestep)
        _sync(device)
        return time.perf_counter() - start

    def sample_once() -> float:
        _sync(device)
        start = time.perf_counter()
        sampler.sample(denoiser, path, noise, grid, generator=gen)
        _sync(device)
        return time.perf_counter() - start

    with torch.no_grad():
        cached = unet(x, timestep).sample

    class NullNetwork(torch.nn.Module):
        """Zero-cost stand-in: returns a precomputed output of the right shape."""

        def forward(self, sample: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return cached

    null_denoiser = NetworkDenoiser(NullNetwork(), path, prediction_type)

    def overhead_once() -> float:
        _sync(device)
        start = time.perf_counter()
        sampler.sample(null_denoiser, path, noise, grid, generator=gen)
        _sync(device)
        return time.perf_counter() - start

    for _ in range(warmup):
        network_loop()
        sample_once()
        overhead_once()
    net_times, sample_times, overheads = [], [], []
    for _ in range(repeats):  # interleaved so all see the same machine load
        net_times.append(network_loop())
        sample_times.append(sample_once())
        overheads.append(min(overhead_once() for _ in range(3)))
    ratios = [s / n for s, n in zip(sample_times, net_times)]
    return Row(
        name, nfe, statistics.median(sample_times), statistics.median(net_times), statistics.median(ratios),
        statistics.median(overheads),
    )


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch intra-op threads; 1 by default: OpenMP spin-waiting makes multi-thread timings of a tiny "
        "network on a shared CPU meaningless. 0 keeps torch's default.",
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--samplers", nargs="*", default=list(CASES))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    unet = _tiny_unet(args.channels, args.size).to(device)
    rows = [
        measure(unet, name, args.batch, args.channels, args.size, args.steps, args.repeats, args.warmup, device)
        for name in args.samplers
    ]
    print(
        f"device={device} threads={torch.get_num_threads()} batch={args.batch} "
        f"shape={args.channels}x{args.size}x{args.size} steps={args.steps} repeats={args.repeats} (medians; ratio = median of paired ratios)"
    )
    print(
        f"{'sampler':<16} {'NFE':>4} {'sample [s]':>11} {'NFE x fwd [s]':>14} {'overhead [s]':>13} "
        f"{'ratio':>7} {'ratio_oh':>9}"
    )
    for row in rows:
        print(
            f"{row.name:<16} {row.nfe:>4} {row.sample_s:>11.4f} {row.network_s:>14.4f} {row.overhead_s:>13.5f} "
            f"{row.ratio:>7.3f} {row.ratio_from_overhead:>9.4f}"
        )
    print(
        f"worst ratio {max(r.ratio for r in rows):.3f}, worst ratio_oh {max(r.ratio_from_overhead for r in rows):.4f} "
        "(goal <= 1.05)"
    )
    return rows


if __name__ == "__main__":
    main()

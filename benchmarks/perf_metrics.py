"""Throughput of our metric networks against the reference packages, and FID state memory, measured in one run.

    python -m benchmarks.perf_metrics [--images 8] [--size 64] [--repeats 5] [--threads N]

* FID feature pass (images/s): our :class:`metrics.inception.FIDInceptionV3`
  against pytorch-fid's ``InceptionV3`` (FID variant) and torchmetrics' FID
  extractor (torch-fidelity's Inception), all three holding the *same* weights
  (fid-helper's real FID Inception when installed, else one random state dict)
  and fed the same images.
* LPIPS (image pairs/s): our :class:`metrics.perceptual.LPIPSNetwork` against
  ``lpips.LPIPS`` and torchmetrics' LPIPS network, same random AlexNet backbone
  and the shipped heads.
* FID state memory: bytes held by :class:`metrics.fid.FrechetInceptionDistance`
  after streaming 1,000 and 10,000 2048-d feature rows (equal by design), and
  the peak RSS of a fresh process doing each (equal up to noise).

Each timing is the median of ``repeats`` runs after one warm-up, with the
contenders interleaved so that load from other processes hits them alike; the
ratio is reference time / our time (> 1 means we are faster), for wall-clock
time and for process CPU time (steadier on a shared machine).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Callable

import torch


def _interleaved(contenders: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall seconds, process CPU seconds) per contender, runs interleaved after one warm-up each.

    CPU time is reported too because on a shared machine other processes stretch wall time unevenly;
    the work a contender does shows in its CPU time.
    """
    for fn in contenders.values():
        fn()  # warm-up
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            samples[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {name: (statistics.median(v[0] for v in values), statistics.median(v[1] for v in values))
            for name, values in samples.items()}


def _report(times: dict[str, tuple[float, float]], count: int, unit: str, prefix: str) -> dict[str, float]:
    out = {}
    ours_wall, ours_cpu = times["ours"]
    for name, (wall, cpu) in times.items():
        ratio = "" if name == "ours" else f"  ratio wall {wall / ours_wall:.2f}, CPU time {cpu / ours_cpu:.2f}"
        print(f"  {name:<13} {count / wall:8.2f} {unit}/s (CPU {cpu:.3f} s per call){ratio}")
        out[f"{prefix}_{name}_{unit}_per_s"] = count / wall
        if name != "ours":
            out[f"{prefix}_{name}_ratio_wall"] = wall / ours_wall
            out[f"{prefix}_{name}_ratio_cpu"] = cpu / ours_cpu
    return out


def bench_fid_features(images: int, size: int, repeats: int) -> dict[str, float]:
    import pytorch_fid.inception as pfi

    from metrics.inception import FIDInceptionV3, fid_helper_available

    weights = "fid-helper" if fid_helper_available() else "random"
    ours = FIDInceptionV3(weights=weights, input_scaling="pytorch-fid")
    state = ours.state_dict()
    original = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda *args, **kwargs: state  # same weights, no download
    try:
        reference = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], use_fid_inception=True).eval()
    finally:
        pfi.load_state_dict_from_url = original
    x = torch.rand(images, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x01 = (x + 1) / 2
    contenders: dict[str, Callable[[], object]] = {
        "ours": lambda: ours(x),
        "pytorch-fid": lambda: reference(x01),
    }
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3

        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "weights-inception-2015-12-05.pth")
            torch.save(state, path)
            tm = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=path)
        x_uint8 = (x01 * 255).round().to(torch.uint8)
        contenders["torchmetrics"] = lambda: tm(x_uint8)
    except Exception as err:  # pragma: no cover - depends on torch-fidelity's layout
        print(f"  torchmetrics FID extractor skipped: {type(err).__name__}: {err}")
    with torch.no_grad():
        difference = float((ours(x) - reference(x01)[0].flatten(1)).abs().max())
        times = _interleaved(contenders, repeats)
    print(f"FID feature pass ({images} images {size}x{size} -> 299x299, weights: {weights}; "
          f"max |ours - pytorch-fid| = {difference:.2e})")
    return _report(times, images, "images", "fid")


def bench_lpips(images: int, size: int, repeats: int) -> dict[str, float]:
    import lpips
    from torchmetrics.functional.image.lpips import _LPIPS

    from metrics.perceptual import LPIPSNetwork

    reference = lpips.LPIPS(pnet_rand=True, net="alex", verbose=False).eval()
    ours = LPIPSNetwork("alex")
    state = {f"{k.split('.', 2)[1]}.{k.split('.', 2)[2]}": v for k, v in reference.net.state_dict().items()}
    ours.features.load_state_dict(state)
    tm = _LPIPS(pretrained=True, net="alex", pnet_rand=True).eval()
    tm.net.load_state_dict(reference.net.state_dict())
    g = torch.Generator().manual_seed(1)
    a = torch.rand(images, 3, size, size, generator=g) * 2 - 1
    b = torch.rand(images, 3, size, size, generator=g) * 2 - 1
    with torch.no_grad():
        difference = float((ours(a, b) - reference(a, b).flatten()).abs().max())
        times = _interleaved({"ours": lambda: ours(a, b), "lpips": lambda: reference(a, b), "torchmetrics": lambda: tm(a, b)}, repeats)
    print(f"LPIPS alex ({images} pairs {size}x{size}; max |ours - lpips| = {difference:.2e})")
    return _report(times, images, "pairs", "lpips")


_MEMORY_PROBE = """
import resource, sys, torch
from torch import nn
from metrics.fid import FrechetInceptionDistance
total, dims, chunk = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
class Identity(nn.Module):
    num_features = dims
    def forward(self, x):
        return x
metric = FrechetInceptionDistance(Identity(), input_range=None)
generator = torch.Generator().manual_seed(total)
for _ in range(total // chunk):
    metric.update_features(torch.randn(chunk, dims, generator=generator), real=True)
metric.update_features(torch.randn(chunk, dims, generator=generator), real=False)
value = float(metric.compute())
state = sum(getattr(metric, k).numel() * getattr(metric, k).element_size() for k in metric._defaults)
print(state, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def bench_fid_memory(dims: int = 2048, chunk: int = 500) -> dict[str, float]:
    """Stream 1,000 and 10,000 feature rows, each in a fresh process, and report state bytes and peak RSS."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    results: dict[int, tuple[int, int]] = {}
    for total in (1_000, 10_000):
        done = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(total), str(dims), str(chunk)], cwd=root,
                              capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": root})
        state, peak = (int(v) for v in done.stdout.split()[-2:])
        results[total] = (state, peak)
        print(f"FID state after {total:>6} samples of {dims}-d features (+{chunk} generated): "
              f"{state / 2**20:7.2f} MiB of states, process peak RSS {peak / 2**20:7.1f} MiB")
    print(f"  10,000 / 1,000: states {results[10_000][0] / results[1_000][0]:.3f}, "
          f"peak RSS {results[10_000][1] / results[1_000][1]:.3f}")
    return {"fid_state_bytes_1k": results[1_000][0], "fid_state_bytes_10k": results[10_000][0],
            "fid_peak_rss_1k": results[1_000][1], "fid_peak_rss_10k": results[10_000][1]}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 by default: steadier timings on a shared machine; 0 keeps torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")
    out: dict[str, float] = {}
    out.update(bench_fid_features(args.images, args.size, args.repeats))
    out.update(bench_lpips(args.images * 4, args.size, args.repeats))
    out.update(bench_fid_memory())
    return out


if __name__ == "__main__":
    main()

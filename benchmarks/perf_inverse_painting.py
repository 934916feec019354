"""Inverse Painting performance on the tiny configs: training steps/s and peak memory per network, and
rollout seconds per keyframe with its breakdown (text, mask, render).

Each measurement runs in its own child process so that the peak resident memory (CPU) or the peak
CUDA allocation (GPU) belongs to that network alone. Training: forward + backward + AdamW step on one
fixed batch of the tiny config's data, after ``--warmup`` steps, median over ``--steps``. Rollout:
the chained tiny model (``configs/inverse_painting.yaml`` + ``configs/tiny/inverse_painting.yaml``,
random weights, the stand-in text classifier) paints one embedded target for ``--keyframes``
keyframes with the paper's sampler (Euler ancestral, ``--sampling_steps`` 25, 4-condition CFG).

    python -m benchmarks.perf_inverse_painting [--steps 10] [--keyframes 3] [--device cpu|cuda] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
NETWORKS = {
    "renderer": "inverse_painting_renderer",
    "mask": "inverse_painting_mask",
    "text": "inverse_painting_text",
}


def merge(base: Any, overlay: Any) -> Any:
    """Deep-merge an overlay into a config dict (a different ``class_path`` replaces the whole entry)."""
    if not isinstance(base, dict) or not isinstance(overlay, dict):
        return overlay
    if "class_path" in overlay and overlay.get("class_path") != base.get("class_path"):
        return overlay
    out = dict(base)
    for key, value in overlay.items():
        out[key] = merge(base.get(key), value) if key in base else value
    return out


def load_config(name: str) -> dict[str, Any]:
    full = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    tiny = yaml.safe_load((CONFIGS / "tiny" / f"{name}.yaml").read_text())
    return merge(full, tiny)


def instantiate(config: dict[str, Any]) -> tuple[Any, Any]:
    from jsonargparse import ArgumentParser
    from lightning.pytorch import LightningDataModule, LightningModule

    parser = ArgumentParser()
    parser.add_argument("--model", type=LightningModule)
    parser.add_argument("--data", type=LightningDataModule)
    objects = parser.instantiate(parser.parse_object({"model": config["model"], "data": config["data"]}))
    return objects.model, objects.data


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def measure_training(network: str, steps: int, warmup: int, device: torch.device) -> dict[str, Any]:
    model, data = instantiate(load_config(NETWORKS[network]))
    data.setup("fit")
    batch = to_device(next(iter(data.train_dataloader())), device)
    model.to(device).train()
    loss_fn = (lambda: model.pair_loss(batch).mean()) if network == "renderer" else (lambda: model.loss(batch))
    params = model.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    times = []
    for step in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        loss = loss_fn()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "network": network, "batch_size": int(batch["canvas"].shape[0]), "steps_per_s": 1.0 / median,
        "s_per_step": median, "peak_memory_mb": peak_memory_mb(device),
        "trainable_M": sum(p.numel() for p in params) / 1e6,
    }


def measure_rollout(keyframes: int, sampling_steps: int, device: torch.device) -> dict[str, Any]:
    model, data = instantiate(load_config("inverse_painting"))
    data.setup("fit")
    sequence = next(iter(data.test_dataloader()))
    target = sequence["target"][:1].to(device)
    model.to(device).eval()
    model.max_keyframes, model.stop_eps, model.num_sampling_steps = keyframes, -1.0, sampling_steps  # never stop early
    model.paint(target, torch.Generator(device=device).manual_seed(0))  # warm-up
    result = model.paint(target, torch.Generator(device=device).manual_seed(1))
    made = len(result.times) - 1
    per = {k: v / made for k, v in result.seconds.items()}
    return {
        "keyframes": made, "sampling_steps": sampling_steps, "nfe_per_keyframe": model.renderer.nfe_per_step() * sampling_steps,
        "s_per_keyframe": sum(per.values()), "text_s": per["text"], "mask_s": per["mask"], "render_s": per["render"],
        "peak_memory_mb": peak_memory_mb(device),
    }


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads) if args.threads else None
    device = torch.device(args.device)
    if args.only == "rollout":
        out = measure_rollout(args.keyframes, args.sampling_steps, device)
    else:
        out = measure_training(args.only, args.steps, args.warmup, device)
    print("RESULT " + json.dumps(out))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--keyframes", type=int, default=3)
    parser.add_argument("--sampling_steps", type=int, default=25)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (1 avoids oversubscription on tiny models)")
    parser.add_argument("--only", choices=[*NETWORKS, "rollout"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only:
        child(args)
        return
    results = {}
    for name in [*NETWORKS, "rollout"]:
        command = [sys.executable, "-m", "benchmarks.perf_inverse_painting", "--only", name] + [
            f"--{k}={v}" for k, v in vars(args).items() if k != "only"
        ]
        proc = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(f"{name}: failed\n{proc.stderr[-2000:]}")
            continue
        results[name] = json.loads(lines[-1][len("RESULT "):])
    print(f"Inverse Painting tiny configs on {args.device} (threads={args.threads or torch.get_num_threads()})")
    for name in NETWORKS:
        if name in results:
            r = results[name]
            print(f"  train {name:<8} batch {r['batch_size']}: {r['steps_per_s']:.2f} steps/s ({r['s_per_step'] * 1e3:.0f} ms/step), "
                  f"peak memory {r['peak_memory_mb']:.0f} MB, {r['trainable_M']:.2f}M trainable")
    if "rollout" in results:
        r = results["rollout"]
        total = r["s_per_keyframe"]
        print(f"  rollout: {total:.3f} s/keyframe over {r['keyframes']} keyframes ({r['sampling_steps']} Euler-ancestral steps, "
              f"{r['nfe_per_keyframe']} UNet passes batched {r['nfe_per_keyframe'] // r['sampling_steps']}-wide): "
              f"text {r['text_s']:.3f} s ({100 * r['text_s'] / total:.0f}%), mask {r['mask_s']:.3f} s ({100 * r['mask_s'] / total:.0f}%), "
              f"render {r['render_s']:.3f} s ({100 * r['render_s'] / total:.0f}%); peak memory {r['peak_memory_mb']:.0f} MB")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

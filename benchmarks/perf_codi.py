"""Performance of CoDi (thesis 001, Ch. 5) and the Ch. 2 family, measured in one run.

1. Training steps/s and peak memory of the tiny configs: CoDi (``configs/tiny/codi_sr.yaml``) and each
   scaling family member (tiny widths, or ``--full`` sizes on a GPU with random weights in bf16 at
   64x64x4 latents = 512 px). Each measurement runs in its own spawned process so that the peak resident
   memory (CPU) or ``torch.cuda.max_memory_allocated`` (GPU) belongs to that model alone.
2. Sampling time of 4-step CoDi (consistency sampler, one network call per step) against 50-step DDIM of
   the teacher (the plain backbone), and their ratio, on the same network, in the same process.

    python -m benchmarks.perf_codi [--steps 10] [--widths 32 64 128] [--full] [--device cuda]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import yaml

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def tiny_codi_kwargs() -> dict[str, Any]:
    tiny = yaml.safe_load((CONFIGS / "tiny" / "codi_sr.yaml").read_text())["model"]["init_args"]
    keys = ("unet_config", "vae_config", "text_encoder", "image_size")
    return {k: tiny[k] for k in keys}


def full_codi_kwargs() -> dict[str, Any]:
    from lightning_modules.ldm_scaling.family import scaled_unet_config

    vae = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[128, 256, 512, 512],
               down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
               layers_per_block=2, norm_num_groups=32, sample_size=512)  # SD's VAE layout, random weights
    return {"unet_config": scaled_unet_config(320), "vae_config": vae, "text_encoder": "stand_in", "image_size": 512,
            "stand_in_tokens": 77, "gradient_checkpointing": True}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)


def _batch(model, batch_size: int, device: str) -> dict:
    side = model.image_size
    return {"image": torch.rand(batch_size, 3, side, side, device=device) * 2 - 1,
            "lr": torch.rand(batch_size, 3, side // 4, side // 4, device=device) * 2 - 1}


def measure_codi_training(kwargs: dict, steps: int, batch_size: int, device: str, bf16: bool) -> dict:
    from lightning_modules.codi import CoDi

    torch.manual_seed(0)
    model = CoDi(**kwargs).to(device)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-5)
    batch = _batch(model, batch_size, device)
    ema = {n[len("network."):]: p.detach().clone() for n, p in model.named_parameters()
           if n.startswith("network.") and p.requires_grad}
    times = []
    for i in range(steps + 2):
        _sync(device)
        start = time.perf_counter()
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            x, cond = model.encode(batch["image"]), model.condition(batch)
            loss = model.codi_loss(x, cond, model.context(batch, batch_size), params=ema)["loss"].mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return {"model": "CoDi", "steps_per_s": 1.0 / statistics.median(times), "peak_mib": _peak(device),
            "trainable_m": sum(p.numel() for p in model.trainable_parameters()) / 1e6}


def measure_member_training(width: int, full: bool, steps: int, batch_size: int, device: str, bf16: bool) -> dict:
    from lightning_modules.ldm_scaling import ScaledLDM

    torch.manual_seed(0)
    if full:
        model = ScaledLDM(width=width, text_encoder="stand_in", stand_in_tokens=77)
    else:
        model = ScaledLDM(width=width, levels=2, layers_per_block=1, context_dim=32, latent_size=8,
                          norm_num_groups=min(32, width), text_encoder="stand_in")
    model = model.to(device)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-4)
    x = torch.randn(batch_size, *model.sample_shape, device=device)
    ctx = model.context(["a handwritten digit 1"] * batch_size)
    times = []
    for i in range(steps + 2):
        _sync(device)
        start = time.perf_counter()
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            loss = model.diffusion_loss(x, ctx).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return {"model": f"c={width}", "steps_per_s": 1.0 / statistics.median(times), "peak_mib": _peak(device),
            "trainable_m": sum(p.numel() for p in model.trainable_parameters()) / 1e6}


@torch.no_grad()
def measure_sampling_ratio(kwargs: dict, batch_size: int, device: str, bf16: bool, repeats: int = 3) -> dict:
    from lightning_modules.codi import CoDi

    torch.manual_seed(0)
    model = CoDi(**kwargs).to(device).eval()
    batch = _batch(model, batch_size, device)

    def run(fn) -> float:
        fn()  # warm-up
        values = []
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            values.append(time.perf_counter() - start)
        return statistics.median(values)

    with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
        codi = run(lambda: model.sample_for_batch(batch, num_steps=4))
        from diffusion.samplers import DDIMSampler

        original = model.grid
        model.grid = "leading"
        teacher = run(lambda: model.sample_for_batch(batch, num_steps=50, sampler=DDIMSampler(), use_condition=False))
        model.grid = original
    return {"codi_4step_s": codi, "teacher_ddim50_s": teacher, "speedup": teacher / codi}


def _child(name: str, args: tuple, queue: Any) -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    queue.put(globals()[name](*args))


def isolated(name: str, *args: Any) -> dict:
    """Run ``name(*args)`` in a spawned process (its own peak memory)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(name, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main(argv: Optional[Sequence[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--widths", type=int, nargs="+", default=None)
    p.add_argument("--full", action="store_true", help="real sizes, random weights (GPU, bf16)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    bf16 = args.full and args.device.startswith("cuda")
    kwargs = full_codi_kwargs() if args.full else tiny_codi_kwargs()
    widths = args.widths or ([64, 96, 128, 320] if args.full else [32, 64, 128])
    rows = [isolated("measure_codi_training", kwargs, args.steps, args.batch, args.device, bf16)]
    for w in widths:
        rows.append(isolated("measure_member_training", w, args.full, args.steps, args.batch, args.device, bf16))
    ratio = isolated("measure_sampling_ratio", kwargs, args.batch, args.device, bf16)
    size = "full size (512 px, bf16)" if args.full else "tiny configs"
    print(f"# perf_codi: {size}, batch {args.batch}, device {args.device}, torch threads {torch.get_num_threads()}")
    print("| model | trainable (M) | train steps/s | peak memory (MiB) |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['model']} | {r['trainable_m']:.2f} | {r['steps_per_s']:.2f} | {r['peak_mib']:.0f} |")
    print(f"\nsampling, batch {args.batch}: CoDi 4 steps {ratio['codi_4step_s'] * 1e3:.1f} ms, teacher DDIM 50 steps "
          f"{ratio['teacher_ddim50_s'] * 1e3:.1f} ms, speed-up x{ratio['speedup']:.1f} (same run)")
    return {"training": rows, "sampling": ratio}


if __name__ == "__main__":
    main()

"""Fit-Check performance: tiny-config training steps/s and peak memory; MRA cost vs plain attention.

Two measurements, both taken in this one run:

1. **Training**: the tiny overlay's model (``configs/tiny/fitcheck.yaml``, random weights) on a
   fixed embedded batch of the tiny data shape: forward, EDM loss, backward and an AdamW step,
   by hand (no Trainer), median seconds per step after warm-up -> steps/s; peak memory (CUDA
   allocator peak on a GPU, peak resident set size on the CPU).
2. **Multi-reference attention cost** (issue goal: at most 3.2x): for every spatial
   self-attention layer of the tiny UNet, the layer's ``Attention`` module run on the hidden
   states it sees in a real forward pass, once with :class:`MultiReferenceAttnProcessor` and once
   with diffusers' plain ``AttnProcessor2_0``; interleaved repeats, the fastest of each, ratio of the sums.
   MRA's keys are 3x longer, so the attention product costs ~3x while the projections cost the
   same: the ratio stays below 3 whenever projections matter.

``--full-size`` (GPU only) also runs a few training steps of the full SVD-size network with
random weights in bf16 at the paper's 1024x576 (8 frames, batch 1), reporting memory and steps/s.

    python -m benchmarks.perf_fitcheck [--steps 10] [--repeats 30] [--full-size]
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parent.parent


def _tiny_module(**overrides):
    from lightning_modules.fitcheck import FitCheckVideoModule

    tiny = yaml.safe_load((REPO / "configs" / "tiny" / "fitcheck.yaml").read_text())["model"]["init_args"]
    keys = ("unet_config", "vae_config", "image_encoder_config", "pose_net_config", "vae_class")
    kwargs = {k: tiny[k] for k in keys}
    kwargs.update(overrides)
    return FitCheckVideoModule(**kwargs)


def _batch(frames: int, height: int, width: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    batch = {
        "video": torch.rand(1, frames, 3, height, width, generator=g) * 2 - 1,
        "pose": torch.rand(1, frames, 3, height, width, generator=g) * 2 - 1,
    }
    for key in ("front", "back", "background", "front_pose", "back_pose"):
        batch[key] = torch.rand(1, 3, height, width, generator=g) * 2 - 1
    return {k: v.to(device) for k, v in batch.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def training_speed(module, batch: dict, steps: int, warmup: int, device: torch.device, dtype=None) -> tuple[float, float]:
    """Median seconds per optimizer step and peak memory in MiB."""
    module.to(device)
    optimizer = torch.optim.AdamW(module.trainable_parameters(), lr=1e-5)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(warmup + steps):
        _sync(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = module._loss(batch, None, drop=True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync(device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return statistics.median(times), peak


def mra_cost_ratio(module, batch: dict, repeats: int) -> tuple[float, list[tuple[str, float, float]]]:
    """Ratio (MRA / plain) of the summed median times of every spatial self-attention layer."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    from lightning_modules.components.multi_reference_attention import MultiReferenceAttnProcessor, spatial_self_attention_names

    unet = module.network.unet
    names = spatial_self_attention_names(unet)
    captured: dict[str, torch.Tensor] = {}
    hooks = []
    for name in names:
        attn = unet.get_submodule(name.rsplit(".processor", 1)[0])
        hooks.append(attn.register_forward_pre_hook(
            lambda m, args, kwargs, n=name: captured.__setitem__(n, (args[0] if args else kwargs["hidden_states"]).detach()),
            with_kwargs=True,
        ))
    with torch.no_grad():
        video, poses = module.compose_clip(batch)
        x = module.vae_encode(video)
        cond = module.conditions(batch, poses)
        module.network(x, torch.zeros(1, device=x.device), **cond)
    for hook in hooks:
        hook.remove()
    plain, mra = AttnProcessor2_0(), MultiReferenceAttnProcessor(module.network.frames)
    rows = []
    with torch.no_grad():
        for name in names:
            attn = unet.get_submodule(name.rsplit(".processor", 1)[0])
            hidden = captured[name]
            for _ in range(3):
                plain(attn, hidden), mra(attn, hidden)  # warm-up
            t_plain, t_mra = [], []
            for _ in range(repeats):
                for proc, out in ((plain, t_plain), (mra, t_mra)):
                    _sync(hidden.device)
                    start = time.perf_counter()
                    proc(attn, hidden)
                    _sync(hidden.device)
                    out.append(time.perf_counter() - start)
            rows.append((name, min(t_plain), min(t_mra)))  # min: robust to other processes on the machine
    ratio = sum(r[2] for r in rows) / sum(r[1] for r in rows)
    return ratio, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--full-size", action="store_true", help="also time the SVD-size network in bf16 (GPU)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)

    module = _tiny_module()
    tiny_data = yaml.safe_load((REPO / "configs" / "tiny" / "fitcheck.yaml").read_text())["data"]["init_args"]
    height, width = tiny_data["size"]
    batch = _batch(tiny_data["num_frames"], height, width, device)
    seconds, peak = training_speed(module, batch, args.steps, args.warmup, device)
    print(f"device: {device} ({torch.get_num_threads()} threads)" if device.type == "cpu" else f"device: {torch.cuda.get_device_name()}")
    print(f"tiny fitcheck training: {1 / seconds:.2f} steps/s ({seconds * 1000:.0f} ms/step, "
          f"{tiny_data['num_frames']}+2 frames at {height}x{width}), peak memory {peak:.0f} MiB")

    ratio, rows = mra_cost_ratio(module, batch, args.repeats)
    for name, t_plain, t_mra in rows:
        print(f"  {name}: plain {t_plain * 1e6:.0f} us, MRA {t_mra * 1e6:.0f} us, x{t_mra / t_plain:.2f}")
    verdict = "OK" if ratio <= 3.2 else "ABOVE GOAL"
    print(f"multi-reference attention / plain spatial attention (tiny UNet, same layers, this run): x{ratio:.2f} "
          f"(goal <= 3.2: {verdict})")

    if args.full_size:
        if device.type != "cuda":
            print("--full-size needs a GPU; skipped")
        else:
            full = _full_size_module()
            full_batch = _batch(6, 1024, 576, device)
            seconds, peak = training_speed(full, full_batch, max(3, args.steps // 3), 1, device, dtype=torch.bfloat16)
            print(f"full-size (SVD UNet 1.52B, random weights, bf16 autocast, 8 frames 1024x576, batch 1, "
                  f"gradient checkpointing): {1 / seconds:.3f} steps/s, peak {peak / 1024:.1f} GiB")
    return 0 if ratio <= 3.2 else 1


def _full_size_module():
    """SVD-size UNet, PoseNet, an SD-size KL VAE and a ViT-H/14-size CLIP, all random (no download)."""
    from lightning_modules.fitcheck import FitCheckVideoModule
    from lightning_modules.fitcheck.module import SVD_UNET_CONFIG

    vae = {
        "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2,
        "down_block_types": ["DownEncoderBlock2D"] * 4, "block_out_channels": [128, 256, 512, 512],
    }
    clip = {"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 16,
            "image_size": 224, "patch_size": 14, "projection_dim": 1024}
    return FitCheckVideoModule(unet_config=SVD_UNET_CONFIG, vae_config=vae, image_encoder_config=clip,
                               vae_class="AutoencoderKLTemporalDecoder", gradient_checkpointing=True)


if __name__ == "__main__":
    sys.exit(main())

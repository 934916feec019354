"""Total Selfie performance: tiny-config training steps/s and peak memory; the background-preserving DDIM
(Eq. 3.4) step cost against plain DDIM (issue goal: at most 5 % more per step).

Measured in this one run:

1. **Training**: the tiny overlay's module (``configs/tiny/total_selfie.yaml``, random weights) on a fixed
   embedded batch: Eq. 3.1 loss, backward, AdamW step, by hand (no Trainer); median seconds per step after
   warm-up -> steps/s; peak memory (CUDA allocator peak on a GPU, peak RSS on the CPU).
2. **Eq. 3.4 cost**: the guided denoiser of the tiny module (CFG + ControlNet) sampled over the same grid
   with plain DDIM and with the background-preserving wrapper blending at *every* step (``s = 0``, the most
   expensive case); interleaved repeats, fastest of each, ratio per step. The blend adds one
   noise draw, one fused ``add_noise`` and one masked select per step (DDIM constants planned once per call).

``--mid-size``: the Eq. 3.4 ratio again on the same layout 4x wider (UNet / ControlNet widths 128, 256, two
layers per block) at 64 px (32x32 latents), where the network, not Python overhead, dominates a step.

``--full-size`` (GPU only): a few training steps of the full PbE-size 9-channel UNet (SD-1.x, 320 base width,
cross-attention 768) with random weights in bf16 at 512 px (64x64 latents), memory and steps/s.

    python -m benchmarks.perf_total_selfie [--steps 10] [--repeats 10] [--mid-size] [--full-size]
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
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


MID_WIDTHS = [128, 256]  # --mid-size: UNet / ControlNet widths (the tiny overlay has [32, 64])
MID_IMAGE = 64           # --mid-size: 64 px images -> 32x32 latents (the tiny overlay: 32 px -> 16x16)


def _tiny_module(mid_size: bool = False):
    from lightning_modules.total_selfie.module import TotalSelfieModule

    tiny = yaml.safe_load((REPO / "configs" / "tiny" / "total_selfie.yaml").read_text())["model"]["init_args"]
    keys = ("unet_config", "vae_config", "image_encoder_config", "controlnet_config", "num_sampling_steps", "image_size",
            "clip_size", "mask_dilation")
    args = {k: tiny[k] for k in keys}
    if mid_size:  # the same layout, 4x wider and 2x larger latents: the network dominates each step
        args["unet_config"] = {**args["unet_config"], "block_out_channels": MID_WIDTHS, "layers_per_block": 2,
                               "sample_size": MID_IMAGE // 2}
        args["controlnet_config"] = {**args["controlnet_config"], "block_out_channels": MID_WIDTHS, "layers_per_block": 2}
        args["vae_config"] = {**args["vae_config"], "sample_size": MID_IMAGE}
        args["image_size"] = MID_IMAGE
    return TotalSelfieModule(**args)


def _batch(device: torch.device, size: int = 32, batch: int = 2) -> dict:
    from datamodules.total_selfie.embedded import embedded_pair
    from datamodules._common import collate_dicts

    items = collate_dicts([embedded_pair(0, "train", i, size, 32) for i in range(batch)])
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in items.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def training_speed(module, batch, steps: int, device: torch.device) -> tuple[float, float]:
    optimizer = torch.optim.AdamW(module.trainable_parameters(), lr=1e-5)
    times = []
    for i in range(steps + 2):
        _sync(device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = module.selfie_loss(batch)
        loss.backward()
        optimizer.step()
        _sync(device)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return 1.0 / statistics.median(times), _peak_memory_mb(device)


@torch.no_grad()
def blend_cost_ratio(module, batch, repeats: int, steps: int = 20) -> float:
    """Per-step time of the Eq. 3.4 wrapper (blending every step) over plain DDIM on the same denoiser."""
    from lightning_modules.total_selfie.background_ddim import background_preserving_ddim, latent_mask

    device = module.device
    bg = batch["background"]
    masked_latent, keep = module.inpaint_inputs(bg, batch["mask"], module.sample_shape[1:])
    cond = {"context": module.selfie_context(batch["selfies"]), "masked_latent": masked_latent, "keep_mask": keep,
            "control": batch["pose"]}
    denoiser = module.denoiser_for(cond)
    noise = torch.randn(bg.shape[0], 4, *module.sample_shape[1:], device=device)
    grid = module.sampling_grid(steps, device)
    bg_latent, fg = module.encode(bg), latent_mask(batch["foreground"], noise.shape[-2:])
    plain, blended = [], []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        module.sampler.sample(denoiser, module.path, noise, grid)
        _sync(device)
        plain.append(time.perf_counter() - start)
        start = time.perf_counter()
        background_preserving_ddim(denoiser, module.path, noise, grid, bg_latent, fg, preserve_fraction=0.0,
                                   sampler=module.sampler)
        _sync(device)
        blended.append(time.perf_counter() - start)
    return min(blended) / min(plain)


def full_size(steps: int) -> None:
    from diffusers import UNet2DConditionModel

    from lightning_modules.total_selfie.module import PbEInpaintNetwork

    device = torch.device("cuda")
    unet = UNet2DConditionModel(in_channels=9, out_channels=4, cross_attention_dim=768, sample_size=64).to(device)
    network = PbEInpaintNetwork(unet).train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-5)
    batch = 4  # per GPU (§3.5.2: 12 over 3 GPUs)
    x = torch.randn(batch, 4, 64, 64, device=device)
    masked, keep = torch.randn_like(x), torch.ones(batch, 1, 64, 64, device=device)
    ctx = torch.randn(batch, 1, 768, device=device)
    torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps + 2):
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            eps = network(x, torch.randint(0, 1000, (batch,), device=device), masked_latent=masked, keep_mask=keep,
                          encoder_hidden_states=ctx)
            loss = (eps.float() - x).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
    params = sum(p.numel() for p in unet.parameters()) / 1e6
    print(f"full-size 9-channel PbE UNet ({params:.0f}M params), bf16 autocast, 512 px, batch {batch}: "
          f"{1 / statistics.median(times):.2f} steps/s, peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--full-size", action="store_true")
    parser.add_argument("--mid-size", action="store_true",
                        help="also measure the Eq. 3.4 ratio on a 4x wider UNet / ControlNet at 64 px (CPU is fine)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module = _tiny_module().to(device)
    batch = _batch(device)
    rate, memory = training_speed(module, batch, args.steps, device)
    print(f"tiny total_selfie training on {device.type}: {rate:.2f} steps/s, peak memory {memory:.0f} MB")
    ratio = blend_cost_ratio(module, batch, args.repeats)
    print(f"background-preserving DDIM (Eq. 3.4, blending every step) / plain DDIM per step: {ratio:.3f} "
          f"({(ratio - 1) * 100:+.1f} %; goal <= +5 %)")
    if args.mid_size:
        mid = _tiny_module(mid_size=True).to(device)
        mid_ratio = blend_cost_ratio(mid, _batch(device, size=MID_IMAGE), max(2, args.repeats // 3), steps=10)  # slow on CPU
        params = sum(p.numel() for p in mid.network.parameters()) / 1e6
        print(f"mid-size ({params:.1f}M-param UNet, widths {MID_WIDTHS}, {MID_IMAGE} px): background-preserving / plain "
              f"DDIM per step: {mid_ratio:.3f} ({(mid_ratio - 1) * 100:+.1f} %; goal <= +5 %)")
    if args.full_size:
        if device.type != "cuda":
            print("--full-size needs a GPU; skipped")
        else:
            full_size(args.steps)


if __name__ == "__main__":
    main()
